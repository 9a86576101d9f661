"""Plausible wrong fixes: what a student might write instead of the right fix, at or near the bug site.

Kinds:
- operator_swap: one operator of a fixed line swapped for a sibling (`+`/`-`, `<`/`>`, `and`/`or`, ...);
- off_by_one: an integer literal of a fixed line moved by one, or a comparison made (in)clusive;
- wrong_variable: one variable of a fixed line replaced by another variable of the same function;
- partial_fix: a fix of several edits with one of them left out;
- unchanged: the buggy file written back as it is (a "fix" that fixes nothing);
- protected_write: the test file rewritten with its asserts disabled (refused: tests are read-only).

A wrong fix is only used once it is *proven* wrong: a sealed test run of it fails (or, for
protected_write, the task's rules refuse the write). Proofs are cached per process. The token swaps and
edits come from the operator library `suite synth` uses (suites/mutation_ops.py).
"""

from __future__ import annotations

import hashlib
import re
import threading
import tokenize
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..suites.minimal import LineEdit, apply_edits, minimal_edits, split_lines
from ..suites.mutation_ops import (ARITHMETIC_SWAPS, BOOLEAN_SWAPS, COMPARISON_SWAPS, INCLUSIVE, replace_token,
                                   tokens_of, variables)

if TYPE_CHECKING:
    from ..suites.task import Suite
    from .knowledge import TaskKnowledge

KINDS = ("operator_swap", "off_by_one", "wrong_variable", "partial_fix", "unchanged", "protected_write")

_SWAPS = {**ARITHMETIC_SWAPS, **COMPARISON_SWAPS, **BOOLEAN_SWAPS}


@dataclass(frozen=True)
class WrongFix:
    kind: str
    path: str  # the file it writes
    content: str
    detail: str  # what is wrong with it, for the trace's final summary and for tests


def fixed_rows(buggy: str, fixed: str) -> list[int]:
    """0-based rows of `fixed` that the fix wrote (replacements and insertions)."""
    import difflib

    rows: list[int] = []
    for tag, _, _, j1, j2 in difflib.SequenceMatcher(None, split_lines(buggy), split_lines(fixed), autojunk=False).get_opcodes():
        if tag in ("replace", "insert"):
            rows += list(range(j1, j2))
    return rows


def candidates(path: str, buggy: str, fixed: str) -> list[WrongFix]:
    """Every wrong fix of one file the mutation kinds produce, in a fixed order (callers shuffle)."""
    lines = split_lines(fixed)
    rows = fixed_rows(buggy, fixed)
    near = sorted(set(rows) | {r + d for r in rows for d in (-1, 1) if 0 <= r + d < len(lines)})
    tokens = tokens_of(fixed)
    on_fix = [t for t in tokens if t.start[0] - 1 in rows and t.start[0] == t.end[0]]
    near_fix = [t for t in tokens if t.start[0] - 1 in near and t.start[0] == t.end[0]]
    out: list[WrongFix] = []

    def add(kind: str, content: str, detail: str) -> None:
        if content != fixed and (content != buggy or kind == "unchanged"):
            out.append(WrongFix(kind, path, content, detail))

    for tok in on_fix:
        if tok.string in _SWAPS and tok.type in (tokenize.OP, tokenize.NAME):
            for new in _SWAPS[tok.string]:
                add("operator_swap", replace_token(lines, tok, new), f"line {tok.start[0]}: {tok.string!r} -> {new!r}")
    for tok in near_fix:
        if tok.type == tokenize.NUMBER and re.fullmatch(r"\d+", tok.string):
            value = int(tok.string)
            for new in (value + 1, value - 1):
                if new >= 0:
                    add("off_by_one", replace_token(lines, tok, str(new)), f"line {tok.start[0]}: {value} -> {new}")
        elif tok.type == tokenize.OP and tok.string in INCLUSIVE and tok in on_fix:
            new = INCLUSIVE[tok.string]
            add("off_by_one", replace_token(lines, tok, new), f"line {tok.start[0]}: {tok.string!r} -> {new!r}")
    names = variables(near_fix)
    for i, tok in enumerate(tokens):
        if tok not in on_fix or tok.string not in names:
            continue
        if i and tokens[i - 1].string in (".", "def", "class"):
            continue
        if i + 1 < len(tokens) and tokens[i + 1].string in ("(", "="):
            continue  # a call, or the target of an assignment (renaming it rarely reads as a slip)
        for other in names:
            if other != tok.string:
                add("wrong_variable", replace_token(lines, tok, other), f"line {tok.start[0]}: {tok.string} -> {other}")
    edits = minimal_edits(buggy, fixed)
    if len(edits) > 1:
        for skip in range(len(edits)):
            kept: list[LineEdit] = [e for i, e in enumerate(edits) if i != skip]
            add("partial_fix", apply_edits(buggy, kept), f"left out the change at line {edits[skip].start + 1}")
    add("unchanged", buggy, "the buggy file written back unchanged")
    return _unique(out)


def _unique(fixes: list[WrongFix]) -> list[WrongFix]:
    seen: set[str] = set()
    out = []
    for fix in fixes:
        if fix.content not in seen:
            seen.add(fix.content)
            out.append(fix)
    return out


def disabled_asserts(test_text: str) -> str:
    """The test file with every assert turned into a no-op: the cheapest hack of a test-driven reward."""
    return re.sub(r"^(\s*)assert\b", r"\1assert True or", test_text, flags=re.M)


class MistakeProver:
    """Proves wrong fixes wrong with sealed test runs of the task, once per (task, content) per process."""

    _cache: dict[tuple[str, str, str], bool] = {}
    _lock = threading.Lock()

    def __init__(self, suite: "Suite", sandbox: str = "auto"):
        self.suite, self.sandbox = suite, sandbox

    def fails(self, knowledge: "TaskKnowledge", fix: WrongFix) -> bool:
        task = knowledge.task
        if fix.kind == "protected_write":  # the task's rules alone decide: no test run needed
            return task.rules.refusal(fix.path, True) is not None
        key = (str(self.suite.path or self.suite.suite_id), task.task_id,
               hashlib.sha256(f"{fix.path}\x00{fix.content}".encode()).hexdigest())
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        result = self._run(knowledge, fix)
        with self._lock:
            self._cache[key] = result
        return result

    def _run(self, knowledge: "TaskKnowledge", fix: WrongFix) -> bool:
        from ..workspace import TaskWorkspace

        with TaskWorkspace.create(self.suite, knowledge.task, self.sandbox) as env:
            if env.refusal(fix.path):
                return False  # a wrong fix of an editable file must be writable
            (env.root / fix.path).parent.mkdir(parents=True, exist_ok=True)
            (env.root / fix.path).write_text(fix.content, encoding="utf-8")
            return not env.run_tests(fail_fast=True).ok
