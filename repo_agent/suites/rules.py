"""What a model may change in a task's workspace.

Each task lists `protected` patterns (gitignore syntax, matched with `pathspec` against
workspace-relative paths) and `editable` patterns; a path may be written iff it is editable and not
protected, and a path that does not exist in the pristine task may be created only if it also matches
`new_files`. Tests, test data, test configuration and interpreter start-up hooks are protected by
default for every suite kind; builders add their own (QuixBugs: its test and data folders; BugsInPy:
the bug's test files).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import PurePosixPath

# Whatever the suite says, these never reach a test run from the model: test code, test data and the
# files that configure pytest or run code when an interpreter starts.
DEFAULT_PROTECTED: tuple[str, ...] = (
    "test_*.py",
    "*_test.py",
    "tests/",
    "test/",
    "conftest.py",
    "pytest.ini",
    "tox.ini",
    "setup.cfg",
    "pyproject.toml",
    "sitecustomize.py",
    "usercustomize.py",
    "*.pth",
    ".git/",
    ".hg/",
    ".svn/",
)
DEFAULT_EDITABLE: tuple[str, ...] = ("*",)

# The QuixBugs layout (QuixBugs itself, the bundled suite, synthesized tasks): only the programs are
# editable; the tests, their JSON data and the root conftest are not. Suite files written before tasks
# recorded their own patterns get these by kind.
QUIXBUGS_EDITABLE: tuple[str, ...] = ("python_programs/",)
QUIXBUGS_PROTECTED: tuple[str, ...] = ("python_testcases/", "json_testcases/", "conftest.py")

REFUSED_PROTECTED = "protected"
REFUSED_NEW_FILE = "new_file"
PROTECTED_MESSAGE = "tests and test configuration are read-only in this task"


@lru_cache(maxsize=256)
def _spec(patterns: tuple[str, ...]):
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(patterns)


def matches(patterns: tuple[str, ...], rel_path: str) -> bool:
    return bool(patterns) and _spec(tuple(patterns)).match_file(rel_path)


@lru_cache(maxsize=1)
def _stdlib_names() -> frozenset[str]:
    names = getattr(sys, "stdlib_module_names", None)  # Python >= 3.10
    return frozenset(names or ())


@dataclass(frozen=True)
class WriteRules:
    editable: tuple[str, ...] = DEFAULT_EDITABLE
    protected: tuple[str, ...] = DEFAULT_PROTECTED
    new_files: tuple[str, ...] = ()

    def is_protected(self, rel_path: str) -> bool:
        return matches(self.protected, rel_path) or matches(DEFAULT_PROTECTED, rel_path)

    def refusal(self, rel_path: str, exists_in_task: bool) -> tuple[str, str] | None:
        """(kind, message) when the model may not write `rel_path`, else None."""
        rel_path = PurePosixPath(rel_path).as_posix()
        if self.is_protected(rel_path) or not matches(self.editable, rel_path):
            return REFUSED_PROTECTED, f"{PROTECTED_MESSAGE}: {rel_path} may not be changed"
        if not exists_in_task:
            if not matches(self.new_files, rel_path):
                return REFUSED_NEW_FILE, (f"this task does not allow new files: {rel_path} does not exist; "
                                          "change the existing source files")
            module = PurePosixPath(rel_path)
            if module.suffix == ".py" and module.stem in _stdlib_names():
                return REFUSED_NEW_FILE, f"a new module may not shadow the standard library module {module.stem!r}"
        return None

    def may_change(self, rel_path: str, exists_in_task: bool) -> bool:
        return self.refusal(rel_path, exists_in_task) is None

    def to_dict(self) -> dict:
        return {"editable": list(self.editable), "protected": list(self.protected), "new_files": list(self.new_files)}
