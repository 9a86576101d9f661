"""Held-out programs that reach the training side under another id: `suite check --against`.

The split rule keeps every task on its split key's side, but ids are not enough: the bundled `gcd` is
held out while QuixBugs' near-identical `gcd` is on the train side. A training task leaks when its
program matches the program of a held-out task of any suite given.

The similarity rule: a program is reduced to the token stream of its code (comments, docstrings and
other string-only statements, blank lines and layout dropped; names and literals kept), and two
programs match when difflib's SequenceMatcher ratio of their streams is at least SIMILARITY (0.8). A
training task's program is its reference (the correct program: for a synthesized task, the program its
mutants came from); a held-out task's programs are its reference and its buggy version.
"""

from __future__ import annotations

import difflib
import io
import tokenize
from dataclasses import dataclass

from .minimal import code_keys
from .split import suite_side_of
from .task import Suite

SIMILARITY = 0.8
_LAYOUT = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING,
           tokenize.ENDMARKER}


def code_tokens(text: str) -> tuple[str, ...]:
    """The program's code as tokens, without comments, docstrings and layout."""
    code = "".join(line + "\n" for line in (k for k in code_keys(text) if k is not None))
    try:
        return tuple(t.string for t in tokenize.generate_tokens(io.StringIO(code).readline) if t.type not in _LAYOUT)
    except (tokenize.TokenError, SyntaxError, ValueError):
        return tuple(code.split())


def similarity(a: tuple[str, ...], b: tuple[str, ...]) -> float:
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    if matcher.real_quick_ratio() < SIMILARITY or matcher.quick_ratio() < SIMILARITY:
        return matcher.quick_ratio()
    return matcher.ratio()


@dataclass(frozen=True)
class Leak:
    task_id: str  # the training task
    held_out: str  # the held-out task whose program it matches
    suite_id: str
    score: float

    def __str__(self) -> str:
        return (f"training task {self.task_id}: its program matches held-out task {self.held_out} of {self.suite_id} "
                f"(similarity {self.score:.2f} >= {SIMILARITY})")


def _programs(suite: Suite, task, buggy_too: bool) -> list[str]:
    texts = []
    try:
        texts += list(suite.reference_text(task).values())
        if buggy_too:
            texts += list(suite.buggy_text(task).values())
    except (OSError, UnicodeDecodeError):
        pass
    return texts


def leaks(suite: Suite, against: list[Suite]) -> list[Leak]:
    """Every training task of `suite` whose program matches a held-out task's program in `against`."""
    held: list[tuple[str, str, tuple[str, ...]]] = []
    for other in against:
        for task in other.tasks:
            if suite_side_of(other, task.task_id) == "test":
                for text in _programs(other, task, buggy_too=True):
                    held.append((other.suite_id, task.task_id, code_tokens(text)))
    found: list[Leak] = []
    verdicts: dict[tuple[str, ...], tuple[str, str, float] | None] = {}  # synthesized tasks share programs
    for task in suite.tasks:
        if suite_side_of(suite, task.task_id) != "train":
            continue
        for text in _programs(suite, task, buggy_too=False):
            tokens = code_tokens(text)
            if tokens not in verdicts:
                best = max(((s, t, similarity(tokens, h)) for s, t, h in held), key=lambda x: x[2], default=None)
                verdicts[tokens] = best if best is not None and best[2] >= SIMILARITY else None
            match = verdicts[tokens]
            if match is not None:
                found.append(Leak(task.task_id, match[1], match[0], match[2]))
                break
    return found
