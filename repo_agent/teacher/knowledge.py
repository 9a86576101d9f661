"""What the oracle teacher knows about one task before it acts: the files to fix and their right
content (the proven minimal fix, else the full reference), the buggy content, the test file, and what
a reader of the task could search for (the function around the fix, the file name; never the task id).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from ..suites.minimal import split_lines
from ..suites.task import Suite, TaskSpec


@dataclass(frozen=True)
class TaskKnowledge:
    task: TaskSpec
    fixes: dict[str, str]  # workspace path -> the content the teacher writes (in target order)
    buggy: dict[str, str]  # workspace path -> its content in the pristine task
    reference: dict[str, str]  # the full reference fix (a second try when the minimal fix fails)
    minimal: bool  # `fixes` is the proven minimal fix
    test_file: str | None  # the test file the task runs, when it names one
    test_text: str | None
    names: tuple[str, ...]  # functions/classes around the fix, innermost first; then the file stems

    @classmethod
    def of(cls, suite: Suite, task: TaskSpec) -> "TaskKnowledge":
        fixes, is_minimal = suite.teacher_fix(task)
        order = [p for p in task.target_files if p in fixes] + [p for p in fixes if p not in task.target_files]
        buggy = suite.buggy_text(task)
        test_file = next((a.split("::")[0] for a in task.test.args if not a.startswith("-")
                          and a.split("::")[0].endswith(".py")), None)
        test_path = suite.root / task.base / test_file if test_file else None
        test_text = test_path.read_text(encoding="utf-8", errors="replace") if test_path and test_path.is_file() else None
        names: list[str] = []
        for path in order:
            names += enclosing_names(buggy.get(path, ""), changed_rows(buggy.get(path, ""), fixes[path]))
        names += [PurePosixPath(p).stem for p in order]
        return cls(task, {p: fixes[p] for p in order}, buggy, suite.reference_text(task), is_minimal, test_file,
                   test_text, tuple(dict.fromkeys(n for n in names if n)))

    @property
    def targets(self) -> list[str]:
        return list(self.fixes)

    def search_patterns(self) -> list[str]:
        """Regular expressions a reader would try, best first: the definition of the function around
        the fix, then the bare name."""
        patterns = []
        for name in self.names:
            word = re.escape(name)
            patterns += [f"def {word}", f"def {word}\\(", f"class {word}", f"{word}\\("]
        return list(dict.fromkeys(patterns))


def changed_rows(before: str, after: str) -> list[int]:
    """0-based rows of `before` that `after` replaces or deletes (for an insertion: the row it precedes)."""
    import difflib

    a, b = split_lines(before), split_lines(after)
    rows: list[int] = []
    for tag, i1, i2, _, _ in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            rows += list(range(i1, max(i2, i1 + 1)))
    return rows


def enclosing_names(text: str, rows: list[int]) -> list[str]:
    """Names of the functions and classes that contain `rows`, innermost first (none if unparsable)."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            first, last = node.lineno - 1, (node.end_lineno or node.lineno) - 1
            if any(first <= row <= last for row in rows):
                found.append((first, node.name))
    return [name for _, name in sorted(found, reverse=True)]
