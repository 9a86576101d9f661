"""Reading a BugsInPy checkout: project.info, bug.info, run_test.sh, bug_patch.txt (pure parsing).

Everything here turns benchmark text into records or raises `BugDefect` with a message a user can act
on; the builder (bugsinpy.py) reports such bugs and skips them instead of building a wrong task.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from .venvs import decode_text


class BugDefect(ValueError):
    """This bug cannot become a valid task; the message says why."""


@dataclass(frozen=True)
class BugRecord:
    project: str
    bug_id: str
    folder: Path
    python_version: str
    buggy_commit: str
    fixed_commit: str
    test_files: tuple[str, ...]
    run_test: str
    patch: str
    requirements: bytes
    setup_sh: str


def parse_info(text: str) -> dict[str, str]:
    """`key="value"` lines (project.info, bug.info); quotes optional, later keys win."""
    info = {}
    for line in text.replace("\r\n", "\n").split("\n"):
        match = re.match(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"?(.*?)"?\s*$', line)
        if match:
            info[match.group(1)] = match.group(2)
    return info


def read_project_info(root: Path, project: str) -> dict[str, str]:
    path = root / "projects" / project / "project.info"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {root} a BugsInPy checkout with project {project!r}?")
    return parse_info(decode_text(path.read_bytes()))


def bug_ids(root: Path, project: str) -> list[str]:
    bugs = root / "projects" / project / "bugs"
    ids = [p.name for p in bugs.iterdir() if p.is_dir()] if bugs.is_dir() else []
    return sorted(ids, key=lambda s: (len(s), s))  # 1, 2, ..., 10 in numeric order


def read_bug(root: Path, project: str, bug_id: str) -> BugRecord:
    folder = root / "projects" / project / "bugs" / bug_id

    def text(name: str, required: bool = True) -> str:
        path = folder / name
        if not path.is_file():
            if required:
                raise BugDefect(f"{name} is missing")
            return ""
        return decode_text(path.read_bytes())

    info = parse_info(text("bug.info"))
    missing = [k for k in ("buggy_commit_id", "fixed_commit_id", "test_file") if not info.get(k)]
    if missing:
        raise BugDefect(f"bug.info lacks {', '.join(missing)}")
    patch = text("bug_patch.txt")
    if not patch.strip():
        raise BugDefect("bug_patch.txt is empty: there is no reference fix")
    requirements = folder / "requirements.txt"
    return BugRecord(
        project=project, bug_id=bug_id, folder=folder,
        python_version=info.get("python_version", ""),
        buggy_commit=info["buggy_commit_id"], fixed_commit=info["fixed_commit_id"],
        test_files=tuple(t.strip() for t in re.split(r"[;,]", info["test_file"]) if t.strip()),
        run_test=text("run_test.sh"), patch=patch,
        requirements=requirements.read_bytes() if requirements.is_file() else b"",
        setup_sh=text("setup.sh", required=False),
    )


@dataclass(frozen=True)
class FileChange:
    path: str
    kind: str  # modified | added | deleted


def patch_changes(patch: str) -> list[FileChange]:
    """Files a unified git diff touches, from its ---/+++ headers."""
    changes, old, seen_old = [], None, False
    for line in patch.split("\n"):
        if line.startswith("--- "):
            old, seen_old = _header_path(line[4:]), True
        elif line.startswith("+++ ") and seen_old:
            new = _header_path(line[4:])
            if new is None:
                changes.append(FileChange(old or "", "deleted"))
            else:
                changes.append(FileChange(new, "added" if old is None else "modified"))
            seen_old = False
    if not changes:
        raise BugDefect("bug_patch.txt holds no file diff")
    return changes


def _header_path(raw: str) -> str | None:
    raw = raw.split("\t")[0].strip()
    if raw == "/dev/null":
        return None
    return raw[2:] if raw[:2] in ("a/", "b/") else raw


_PYTEST = ({"pytest", "py.test"}, {("-m", "pytest")})
_FLAGS = re.compile(r"^(-q|-qq|-v|-vv|-s|-x|-rA|-ra|--tb=\w+|--disable-warnings|-p\s*no:\w+|--capture=\w+)$")


def run_test_node_ids(run_test: str, exists: "callable[[str], bool]") -> tuple[str, ...]:
    """pytest node ids for the test commands of run_test.sh (pytest node ids, `python -m unittest a.b.C.t`).

    `exists(rel_path)` tells whether a file exists in the buggy workspace; unittest dotted names are
    resolved against it. Anything else (tox, -k expressions, cd) is a defect: guessing would let the
    wrong tests decide validity.
    """
    ids: list[str] = []
    for raw in run_test.split("\n"):
        line = raw.strip()
        if not line or line.startswith("#") or line in ("set -e", "set -ex", "set -x"):
            continue
        for command in re.split(r"\s*(?:&&|;)\s*", line):
            if command:
                ids += _command_ids(command, exists)
    if not ids:
        raise BugDefect("run_test.sh names no test")
    for node in ids:
        if not exists(node.split("::")[0]):
            raise BugDefect(f"test file {node.split('::')[0]} named in run_test.sh is missing")
    return tuple(dict.fromkeys(ids))


def _command_ids(command: str, exists) -> list[str]:
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise BugDefect(f"run_test.sh line not understood ({exc}): {command}") from None
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        words = words[1:]  # FOO=bar pytest ...
    if not words:
        return []
    program = Path(words[0]).name
    if program in _PYTEST[0]:
        return _pytest_ids(words[1:], command)
    if re.match(r"^python[0-9.]*$", program) and len(words) > 2 and words[1] == "-m":
        if words[2] == "pytest":
            return _pytest_ids(words[3:], command)
        if words[2] == "unittest":
            return [_unittest_id(w, exists) for w in words[3:] if not w.startswith("-")]
    raise BugDefect(f"run_test.sh command not supported (only pytest and python -m unittest): {command}")


def _pytest_ids(args: list[str], command: str) -> list[str]:
    ids = []
    for arg in args:
        if arg.startswith("-"):
            if not _FLAGS.match(arg):
                raise BugDefect(f"run_test.sh uses pytest option {arg}, which would change which tests decide: {command}")
            continue
        ids.append(arg)
    return ids


def _unittest_id(dotted: str, exists) -> str:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module = "/".join(parts[:cut]) + ".py"
        if exists(module):
            return "::".join([module, *parts[cut:]])
    raise BugDefect(f"unittest name {dotted} does not match a file in the workspace")
