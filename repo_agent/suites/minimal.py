"""Minimal fixes: the buggy file with only the reference's changes that change code.

A reference fix often differs from the buggy file in more than the fix: QuixBugs' correct programs drop
the buggy file's trailing docstring and are reformatted, so a teacher that writes the whole reference
teaches the student to emit text it never read. The minimal fix keeps every line of the buggy file
except the code lines the reference changes.

"Code" is decided per physical line with `tokenize`: a line holds code unless it is blank, holds only a
comment, or belongs to a statement that is nothing but a string (a docstring, wherever it stands).
A code line is compared by its text without comments and trailing blanks. The code lines of both files
are aligned with difflib, never whole diff hunks: in the bundled `gcd` the fix and the deletion of the
docstring fall in one hunk, and only the fix is wanted.

The edits are recorded in the suite (`TaskSpec.minimal_fix`), positional on the buggy file and
anchored by its sha256, once `suite validate` has proven in sealed runs that the result passes.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import re
import tokenize
from dataclasses import dataclass
from typing import Any

PROVEN = "proven"
FALLBACK = "fallback"

_SIGNIFICANT_SKIP = {tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT,
                     tokenize.ENCODING, tokenize.ENDMARKER}


@dataclass(frozen=True)
class LineEdit:
    """Replace `delete` lines of the buggy file starting at 0-based line `start` with `insert`."""

    start: int
    delete: int
    insert: tuple[str, ...]

    @property
    def size(self) -> int:
        """Changed lines: a one-line replacement is 1, not 2."""
        return max(self.delete, len(self.insert))


@dataclass(frozen=True)
class FileFix:
    path: str  # workspace-relative
    base_sha256: str  # of the buggy file the edits apply to
    edits: tuple[LineEdit, ...]


@dataclass(frozen=True)
class MinimalFix:
    """What `suite validate` learnt: the proven minimal fix, or why the full reference is used instead."""

    status: str  # proven | fallback
    files: tuple[FileFix, ...] = ()
    reason: str | None = None

    @property
    def proven(self) -> bool:
        return self.status == PROVEN and bool(self.files)

    @property
    def changed_lines(self) -> int:
        return sum(edit.size for f in self.files for edit in f.edits)


def split_lines(text: str) -> list[str]:
    """Lines with their endings, split on "\\n" only (str.splitlines also splits on form feeds etc.)."""
    return [line for line in re.split(r"(?<=\n)", text) if line]


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def code_keys(text: str) -> list[str | None]:
    """Per line of `text` (split_lines): the code it holds without comments and trailing blanks, or None
    when it holds no code (blank, comment only, or part of a string-only statement such as a docstring).
    Text that does not tokenize is judged line by line (blank or `#` lines hold no code)."""
    lines = split_lines(text)
    try:
        return _token_keys(text, lines)
    except (tokenize.TokenError, SyntaxError, ValueError):
        return [None if not line.strip() or line.lstrip().startswith("#") else line.rstrip() for line in lines]


def _token_keys(text: str, lines: list[str]) -> list[str | None]:
    has_code = [False] * len(lines)
    docstring = [False] * len(lines)
    comment_at: dict[int, int] = {}  # 0-based row -> column where its comment starts
    statement: list[tokenize.TokenInfo] = []
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            comment_at[token.start[0] - 1] = token.start[1]
        if token.type == tokenize.NEWLINE or token.type == tokenize.ENDMARKER:
            if statement and all(t.type == tokenize.STRING for t in statement):
                for row in range(statement[0].start[0] - 1, statement[-1].end[0]):
                    docstring[row] = True
            statement = []
            continue
        if token.type in _SIGNIFICANT_SKIP:
            continue
        statement.append(token)
        for row in range(token.start[0] - 1, min(token.end[0], len(lines))):
            has_code[row] = True
    keys: list[str | None] = []
    for row, line in enumerate(lines):
        if not has_code[row] or docstring[row]:
            keys.append(None)
            continue
        code = line[: comment_at[row]] if row in comment_at else line
        keys.append(code.rstrip())
    return keys


def minimal_edits(buggy: str, reference: str) -> tuple[LineEdit, ...]:
    """The edits that turn `buggy` into a file whose code lines equal `reference`'s, touching nothing else."""
    a_lines, b_lines = split_lines(buggy), split_lines(reference)
    a_keys, b_keys = code_keys(buggy), code_keys(reference)
    a_code = [i for i, k in enumerate(a_keys) if k is not None]
    b_code = [j for j, k in enumerate(b_keys) if k is not None]
    matcher = difflib.SequenceMatcher(None, [a_keys[i] for i in a_code], [b_keys[j] for j in b_code], autojunk=False)
    edits: list[LineEdit] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        insert = tuple(b_lines[b_code[j1]: b_code[j2 - 1] + 1]) if j1 < j2 else ()
        if i1 < i2:
            start, end = a_code[i1], a_code[i2 - 1] + 1
        else:  # a pure insertion goes right before the next code line (after any docstring or comment)
            start = end = a_code[i1] if i1 < len(a_code) else (a_code[-1] + 1 if a_code else len(a_lines))
        edits.append(LineEdit(start, end - start, insert))
    return tuple(edits)


def apply_edits(text: str, edits: tuple[LineEdit, ...] | list[LineEdit]) -> str:
    """`text` with `edits` applied (they never overlap; applied from the end so positions hold)."""
    lines = split_lines(text)
    for edit in sorted(edits, key=lambda e: e.start, reverse=True):
        if edit.start + edit.delete > len(lines):
            raise ValueError(f"edit at line {edit.start + 1} runs past the end of the file ({len(lines)} lines)")
        lines[edit.start: edit.start + edit.delete] = list(edit.insert)
    for i, line in enumerate(lines[:-1]):  # an inserted last line without a newline must not merge
        if not line.endswith("\n"):
            lines[i] = line + "\n"
    return "".join(lines)


def same_code(a: str, b: str) -> bool:
    return [k for k in code_keys(a) if k is not None] == [k for k in code_keys(b) if k is not None]


def propose(buggy: dict[str, str], reference: dict[str, str]) -> MinimalFix:
    """The minimal fix of every reference file, not yet proven (status proven means "to be tested" here;
    the caller downgrades it to a fallback if a sealed run fails)."""
    files = []
    for path, fixed in reference.items():
        before = buggy.get(path, "")
        edits = minimal_edits(before, fixed)
        if not edits:
            continue
        result = apply_edits(before, edits)
        if not same_code(result, fixed):
            return MinimalFix(FALLBACK, reason=f"{path}: the line edits do not reproduce the reference's code")
        files.append(FileFix(path, sha256_text(before), edits))
    if not files:
        return MinimalFix(FALLBACK, reason="the reference changes no code line (only docstrings, comments or blank lines)")
    return MinimalFix(PROVEN, tuple(files))


def fixed_texts(fix: MinimalFix, buggy: dict[str, str]) -> dict[str, str]:
    """Workspace path -> the minimally fixed content. Raises ValueError if a buggy file changed since."""
    out = {}
    for file in fix.files:
        before = buggy.get(file.path, "")
        if sha256_text(before) != file.base_sha256:
            raise ValueError(f"{file.path} is not the file the minimal fix was recorded for (sha256 differs)")
        out[file.path] = apply_edits(before, file.edits)
    return out


def to_dict(fix: MinimalFix) -> dict[str, Any]:
    return {
        "status": fix.status,
        "reason": fix.reason,
        "changed_lines": fix.changed_lines if fix.proven else None,
        "files": {f.path: {"base_sha256": f.base_sha256,
                           "edits": [{"line": e.start + 1, "delete": e.delete, "insert": list(e.insert)} for e in f.edits]}
                  for f in fix.files},
    }


def from_dict(data: Any) -> MinimalFix | None:
    if data is None:
        return None
    files = tuple(
        FileFix(path, info["base_sha256"],
                tuple(LineEdit(int(e["line"]) - 1, int(e["delete"]), tuple(e["insert"])) for e in info["edits"]))
        for path, info in (data.get("files") or {}).items())
    return MinimalFix(str(data["status"]), files, data.get("reason"))
