"""The file tools (the `files` and `edit` tool sets). Each takes the workspace root and the validated
args and returns text.

Every path is confined to the workspace: `..`, absolute paths, symlinks that lead out, NUL bytes and
anything that is not a regular file or directory are refused with a `ToolError` (shown to the model).
"""

from __future__ import annotations

import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import regex

DEFAULT_MAX_FILES = 200
DEFAULT_MAX_CHARS = 4000
DEFAULT_MAX_MATCHES = 50
MAX_WRITE_CHARS = 1_000_000
MAX_GREP_FILE_BYTES = 2_000_000
MAX_GREP_LINE_CHARS = 300
SKIPPED_DIRS = {".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".venv", "node_modules"}
GREP_TIME_LIMIT_S = 2.0  # a model-written pattern can backtrack for ever: the whole search gets this long


class ToolError(Exception):
    """A refused or failed tool call; its message is shown to the model after `ERROR: `."""


class RefusedWrite(ToolError):
    """A write the task does not allow (a protected file, a new file where none may be created)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


# Given a workspace-relative path, says why it may not be written: (kind, message), or None.
WriteGuard = Callable[[str], "tuple[str, str] | None"]


def confine(root: Path, rel_path: Any, *, must_exist: bool = True) -> Path:
    """Resolve `rel_path` inside `root` or raise ToolError. Symlinks are resolved before the check."""
    if not isinstance(rel_path, str):
        raise ToolError("path must be a string")
    if "\x00" in rel_path:
        raise ToolError("path contains a NUL byte")
    if rel_path.startswith(("/", "\\", "~")) or os.path.isabs(rel_path) or re.match(r"^[A-Za-z]:", rel_path):
        raise ToolError(f"absolute paths are refused: {rel_path!r}; use a path relative to the workspace")
    root_real = Path(os.path.realpath(root))
    candidate = Path(os.path.realpath(root_real / (rel_path or ".")))
    if candidate != root_real and root_real not in candidate.parents:
        raise ToolError(f"path leads outside the workspace: {rel_path!r}")
    if must_exist and not candidate.exists():
        raise ToolError(f"no such file or directory: {rel_path!r}")
    if candidate.exists():
        mode = candidate.stat().st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise ToolError(f"not a regular file or directory (device, fifo or socket): {rel_path!r}")
    return candidate


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(os.path.realpath(root)).as_posix()


def _walk_files(root: Path, start: Path):
    """Regular files under `start`, sorted, never following symlinked directories."""
    for dirpath, dirnames, filenames in os.walk(start, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
        for name in sorted(filenames):
            if name.endswith(".pyc"):
                continue
            yield Path(dirpath) / name


def list_files(root: Path, rel_dir: str = ".", max_files: int = DEFAULT_MAX_FILES) -> str:
    start = confine(root, rel_dir)
    if not start.is_dir():
        raise ToolError(f"not a directory: {rel_dir!r}")
    files = [_rel(root, p) for p in _walk_files(root, start)]
    shown = files[:max_files]
    out = "\n".join(shown) if shown else "(no files)"
    if len(files) > max_files:
        out += f"\n... [truncated: showing {max_files} of {len(files)} files]"
    return out


def _looks_binary(data: bytes) -> bool:
    if b"\x00" in data[:8192]:
        return True
    try:
        data[:8192].decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start < len(data[:8192]) - 4  # a cut multi-byte char at the edge is still text
    return False


def read_file(root: Path, rel_path: str, max_chars: int = DEFAULT_MAX_CHARS, start_line: int | None = None,
              end_line: int | None = None) -> str:
    path = confine(root, rel_path)
    if path.is_dir():
        raise ToolError(f"{rel_path!r} is a directory; use list_files")
    data = path.read_bytes()
    if _looks_binary(data):
        return f"(binary file, {len(data)} bytes, not shown)"
    text = data.decode("utf-8", errors="replace")
    if start_line is not None or end_line is not None:
        text = _line_range(text, start_line or 1, end_line)
    if len(text) <= max_chars:
        return text
    return text[:max_chars] + f"\n... [truncated: showing {max_chars} of {len(text)} chars]"


def _line_range(text: str, start: int, end: int | None) -> str:
    """Lines start..end (1-based, inclusive), numbered, with a header saying where they are."""
    lines = text.splitlines()
    end = len(lines) if end is None else min(end, len(lines))
    if start > max(len(lines), 1) or (end < start):
        raise ToolError(f"no lines {start}-{end}: the file has {len(lines)} lines")
    width = len(str(end))
    shown = "\n".join(f"{n:>{width}}| {lines[n - 1]}" for n in range(start, end + 1))
    return f"[lines {start}-{end} of {len(lines)}]\n{shown}"


def grep(root: Path, pattern: str, rel_dir: str = ".", max_matches: int = DEFAULT_MAX_MATCHES) -> str:
    try:
        compiled = regex.compile(pattern)  # the `regex` module: Python syntax, and searches can time out
    except (regex.error, ValueError, OverflowError, RecursionError) as exc:
        raise ToolError(f"invalid regular expression: {exc}") from None
    deadline = time.monotonic() + GREP_TIME_LIMIT_S
    start = confine(root, rel_dir)
    paths = [start] if start.is_file() else list(_walk_files(root, start))
    matches: list[str] = []
    total = 0
    for path in paths:
        try:
            if path.is_symlink() or path.stat().st_size > MAX_GREP_FILE_BYTES:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        if _looks_binary(data):
            continue
        for lineno, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError
                found = compiled.search(line, timeout=remaining)
            except TimeoutError:
                raise ToolError(f"the pattern took longer than {GREP_TIME_LIMIT_S:g}s (catastrophic backtracking?); "
                                "use a simpler pattern") from None
            if found:
                total += 1
                if len(matches) < max_matches:
                    text = line if len(line) <= MAX_GREP_LINE_CHARS else line[:MAX_GREP_LINE_CHARS] + "..."
                    matches.append(f"{_rel(root, path)}:{lineno}: {text}")
    if not matches:
        return "(no matches)"
    out = "\n".join(matches)
    if total > max_matches:
        out += f"\n... [truncated: showing {max_matches} of {total} matches]"
    return out


def write_file(root: Path, rel_path: str, content: str, guard: WriteGuard | None = None) -> str:
    if len(content) > MAX_WRITE_CHARS:
        raise ToolError(f"content too large ({len(content)} chars > {MAX_WRITE_CHARS})")
    path = confine(root, rel_path, must_exist=False)
    if path.is_dir():
        raise ToolError(f"{rel_path!r} is a directory")
    refusal = guard(_rel(root, path)) if guard else None  # judged on the resolved path: no ./ or ../ tricks
    if refusal:
        raise RefusedWrite(*refusal)
    path.parent.mkdir(parents=True, exist_ok=True)
    confine(root, _rel(root, path.parent))  # the created parents must still be inside
    path.write_text(content, encoding="utf-8")
    return f"wrote {len(content)} chars to {_rel(root, path)}"


def replace_in_file(root: Path, rel_path: str, old: str, new: str, guard: WriteGuard | None = None) -> str:
    path = confine(root, rel_path)
    if path.is_dir():
        raise ToolError(f"{rel_path!r} is a directory")
    if old == new:  # reporting success here told a model that a line replaced by itself was an edit
        raise ToolError("`old` and `new` are the same: nothing would change; put the corrected text in `new`")
    refusal = guard(_rel(root, path)) if guard else None
    if refusal:
        raise RefusedWrite(*refusal)
    data = path.read_bytes()
    if _looks_binary(data):
        raise ToolError(f"{rel_path!r} is a binary file")
    text = data.decode("utf-8")
    count = text.count(old)
    if count != 1:
        where = "does not occur" if count == 0 else f"occurs {count} times"
        raise ToolError(f"`old` {where} in {rel_path}; it must occur exactly once (copy it exactly, with enough "
                        "surrounding lines to be unique)")
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return f"replaced 1 occurrence in {_rel(root, path)} ({len(old)} -> {len(new)} chars)"


TOOLS: dict[str, Callable[..., str]] = {
    "list_files": list_files,
    "read_file": read_file,
    "grep": grep,
    "write_file": write_file,
    "replace_in_file": replace_in_file,
}
WRITING_TOOLS = ("write_file", "replace_in_file")


@dataclass(frozen=True)
class ToolOutcome:
    ok: bool
    text: str
    refused: str | None = None  # RefusedWrite.kind when the task did not allow a write
    refused_paths: tuple[str, ...] = ()  # what was refused (or undone)
    changed: tuple[str, ...] = ()  # workspace files the call changed


def run_tool(root: Path, name: str, args: dict[str, Any], guard: WriteGuard | None = None) -> ToolOutcome:
    """Run a validated tool call. Never raises on tool failures."""
    try:
        if name in WRITING_TOOLS:
            return ToolOutcome(True, TOOLS[name](root, guard=guard, **args), changed=(args["rel_path"],))
        return ToolOutcome(True, TOOLS[name](root, **args))
    except RefusedWrite as exc:
        return ToolOutcome(False, f"ERROR: {exc}", refused=exc.kind, refused_paths=(str(args.get("rel_path")),))
    except ToolError as exc:
        return ToolOutcome(False, f"ERROR: {exc}")
    except (OSError, ValueError, RecursionError) as exc:
        return ToolOutcome(False, f"ERROR: {type(exc).__name__}: {exc}")
