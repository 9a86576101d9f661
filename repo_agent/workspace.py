"""Per-rollout workspaces, and sealed test runs over them.

A workspace is a fresh temporary copy of a task's files; the source suite is never written to. The
model may do anything the tools let it do inside its workspace, but a test run never runs there: every
run (on_write, final, the end-of-episode verdict) gets a **fresh copy of the pristine task** with only
the model's changes to *editable* files laid over it (rules.py), its read-only files bound read-only,
and is checked afterwards: if a read-only file changed anyway, the run is not trusted.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .suites.rules import WriteRules
from .suites.task import Suite, TaskSpec
from .testrun import StrictConfig, run_tests
from .verdict import TestReport, distrust
from .warm import WorkerFailed
from .sandbox import Sandbox, resolve_sandbox, source_folders

SKIPPED_DIRS = {"__pycache__", ".pytest_cache"}
# Suites whose programs are whole repositories with classes of their own that define __eq__: there only
# the classes the model adds count as the program's in strict comparisons (testrun.StrictConfig).
REPOSITORY_KINDS = ("bugsinpy", "swebench")


@dataclass
class Workspace:
    root: Path
    task: TaskSpec

    def cleanup(self) -> None:
        shutil.rmtree(self.root.parent, ignore_errors=True)

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def materialize(suite: Suite, task: TaskSpec, parent: Path | None = None) -> Workspace:
    """Copy the task's files into a fresh temporary folder. Reference fixes are never copied."""
    source_root = (suite.root / task.base).resolve()
    reference_sources = {(suite.root / src).resolve() for _, src in task.reference}
    base = Path(tempfile.mkdtemp(prefix="repo-agent-", dir=parent))
    root = base / "ws"
    root.mkdir()
    for rel in task.files:
        src = source_root / rel
        if src.resolve() in reference_sources:
            raise ValueError(f"task {task.task_id}: reference file {rel} must not be part of the workspace")
        dst = root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dst, follow_symlinks=False)
    return Workspace(root=root, task=task)


def apply_reference(suite: Suite, workspace: Workspace) -> None:
    for ws_path, text in suite.reference_text(workspace.task).items():
        (workspace.root / ws_path).write_text(text, encoding="utf-8")


def _files_under(root: Path) -> dict[str, Path]:
    """Workspace-relative path -> path of every regular file (symlinks and special files excluded)."""
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
        for name in filenames:
            path = Path(dirpath) / name
            if name.endswith(".pyc"):
                continue
            try:
                mode = path.lstat().st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode):
                found[path.relative_to(root).as_posix()] = path
    return found


def file_states(root: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime in ns) of every regular file: enough to see which files a command touched."""
    states = {}
    for rel, path in _files_under(root).items():
        try:
            info = path.lstat()
        except OSError:
            continue
        states[rel] = (info.st_size, info.st_mtime_ns)
    return states


def _same(a: Path, b: Path) -> bool:
    sa, sb = a.stat(), b.stat()
    if sa.st_size != sb.st_size:
        return False
    if sa.st_mtime_ns == sb.st_mtime_ns:
        return True  # copy2 keeps times: an untouched copy (a change that keeps the time only hurts its author)
    return a.read_bytes() == b.read_bytes()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class TaskWorkspace:
    """The model's workspace for one task, the pristine files it came from and the task's write rules."""

    suite: Suite
    task: TaskSpec
    sandbox: Sandbox
    workspace: Workspace
    pristine: dict[str, Path] = field(default_factory=dict)  # rel -> file of the pristine task (a private copy)
    _pristine_ws: Workspace | None = None
    _readonly_digests: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, suite: Suite, task: TaskSpec, sandbox: Sandbox | str = "auto") -> "TaskWorkspace":
        box = resolve_sandbox(sandbox) if isinstance(sandbox, str) else sandbox
        pristine_ws = materialize(suite, task)  # our own copy: the suite may change under a long run
        try:
            workspace = materialize(suite, task)
        except BaseException:
            pristine_ws.cleanup()
            raise
        pristine = _files_under(pristine_ws.root)
        rules = task.rules
        readonly = {rel: _digest(path) for rel, path in pristine.items() if not rules.may_change(rel, True)}
        for rel, source in task.sealed_overlay:  # what a test run sees of the overlaid files
            readonly.pop(rel, None)
            if source is not None:
                readonly[rel] = _digest(suite.root / source)
        return cls(suite, task, box, workspace, pristine, pristine_ws, readonly)

    @property
    def root(self) -> Path:
        return self.workspace.root

    @property
    def rules(self) -> WriteRules:
        return self.task.rules

    def refusal(self, rel_path: str) -> tuple[str, str] | None:
        """(kind, message) when the model may not write `rel_path` (workspace-relative)."""
        return self.rules.refusal(Path(rel_path).as_posix(), rel_path in self.pristine)

    def changes(self) -> dict[str, Path | None]:
        """The model's changes that a test run will see: editable files that differ from the pristine
        task (None: deleted) and new files where the task allows them. Everything else is ignored."""
        current = _files_under(self.root)
        changed: dict[str, Path | None] = {}
        for rel, path in current.items():
            original = self.pristine.get(rel)
            if self.rules.may_change(rel, original is not None) and (original is None or not _same(path, original)):
                changed[rel] = path
        for rel in self.pristine:
            if rel not in current and self.rules.may_change(rel, True):
                changed[rel] = None
        return dict(sorted(changed.items()))

    def ignored_changes(self) -> list[str]:
        """Files the model changed that no test run will see (protected, or new where not allowed)."""
        current = _files_under(self.root)
        ignored = [rel for rel, path in current.items()
                   if not self.rules.may_change(rel, rel in self.pristine)
                   and (rel not in self.pristine or not _same(path, self.pristine[rel]))]
        ignored += [rel for rel in self.pristine if rel not in current and not self.rules.may_change(rel, True)]
        return sorted(ignored)

    def undo_ignored(self) -> list[tuple[str, str]]:
        """Put back what the model may not change (a shell can change anything): protected files get
        their pristine content, disallowed new files are removed. Returns (path, refusal kind) of each."""
        undone = []
        for rel in self.ignored_changes():
            kind = (self.rules.refusal(rel, rel in self.pristine) or ("protected", ""))[0]
            target = self.root / rel
            if rel in self.pristine:
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.is_symlink() or target.exists():
                    target.unlink()
                shutil.copy2(self.pristine[rel], target)
            else:
                target.unlink(missing_ok=True)
            undone.append((rel, kind))
        return undone

    def final_diff(self) -> str:
        """Unified diff (a/ b/ paths, git-apply compatible) of the changes a test run sees."""
        chunks = []
        for rel, path in self.changes().items():
            before = _text(self.pristine.get(rel))
            after = _text(path)
            old_name = f"a/{rel}" if rel in self.pristine else "/dev/null"
            new_name = f"b/{rel}" if path is not None else "/dev/null"
            chunks.append("".join(difflib.unified_diff(before, after, old_name, new_name)))
        return "".join(chunks)

    def sealed_copy(self) -> Workspace:
        """A fresh pristine copy with the model's allowed changes laid over it, then the task's sealed
        overlay (files only test runs see, e.g. a SWE-bench test_patch)."""
        base = Path(tempfile.mkdtemp(prefix="repo-agent-sealed-"))
        sealed = Workspace(root=base / "ws", task=self.task)
        assert self._pristine_ws is not None
        shutil.copytree(self._pristine_ws.root, sealed.root, symlinks=True)
        for rel, path in self.changes().items():
            target = sealed.root / rel
            if path is None:
                target.unlink(missing_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target, follow_symlinks=False)
        for rel, source in self.task.sealed_overlay:
            target = sealed.root / rel
            if target.is_symlink() or target.exists():
                target.unlink()
            if source is not None:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.suite.root / source, target)
        return sealed

    def run_tests(self, fail_fast: bool = False, stop_on_timeout: bool = False) -> TestReport:
        """A sealed test run of the workspace's current state (rerun cold on a fresh copy when a warm
        worker failed it: never guessed)."""
        try:
            return self._sealed_run(fail_fast, stop_on_timeout, warm_allowed=True)
        except WorkerFailed as exc:
            report = self._sealed_run(fail_fast, stop_on_timeout, warm_allowed=False)
            report.worker = f"cold (the warm worker failed: {exc})"[:300]
            return report

    def _sealed_run(self, fail_fast: bool, stop_on_timeout: bool, warm_allowed: bool) -> TestReport:
        with self.sealed_copy() as sealed:
            readonly = [sealed.root / rel for rel in self._readonly_digests]
            report = run_tests(sealed.root, self.task.test, fail_fast, sandbox=self.sandbox,
                               expected=self.task.expected_tests, readonly=readonly,
                               hide=hidden_folders(self.suite), resolution=self.task.resolution,
                               strict=self.strict_config(), stop_on_timeout=stop_on_timeout,
                               warm_allowed=warm_allowed)
            for rel, digest in self._readonly_digests.items():
                path = sealed.root / rel
                if not path.is_file() or _digest(path) != digest:
                    distrust(report, f"read-only file {rel} was changed or removed during the test run")
            for test_id, seen in report.collected.items():
                origin = seen.get("defined_in")
                if origin and origin != "<outside>" and self.rules.may_change(origin, origin in self.pristine):
                    distrust(report, f"test {test_id} runs code defined in {origin}, a file the model may change")
                    break
        return report

    def strict_config(self) -> StrictConfig:
        """What counts as the program's type in this task's strict comparisons."""
        if self.task.resolution is None and self.suite.kind not in REPOSITORY_KINDS:
            return StrictConfig()
        changed = {rel: _class_names(self.pristine[rel]) for rel in self.changes()
                   if rel.endswith(".py") and rel in self.pristine}
        return StrictConfig("repository", tuple(sorted(rel for rel in self.pristine if rel.endswith(".py"))),
                            tuple(sorted(changed.items())))

    def changed_texts(self) -> dict[str, tuple[str, str | None]]:
        """Workspace path -> (pristine text, text now; None: deleted) of every change a test run sees."""
        return {rel: ("".join(_text(self.pristine.get(rel))), None if path is None else "".join(_text(path)))
                for rel, path in self.changes().items()}

    def cleanup(self) -> None:
        self.workspace.cleanup()
        if self._pristine_ws is not None:
            self._pristine_ws.cleanup()

    def __enter__(self) -> "TaskWorkspace":
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def hidden_folders(suite: Suite) -> list[Path]:
    """What test runs and shell commands must not see: the suite root and its repository (they hold the
    reference fixes), and the folders the suite names in `source.hidden` (e.g. the upstream clones a
    SWE-bench suite was built from, whose history holds the fix and the new tests)."""
    extra = [Path(p) for p in (suite.source or {}).get("hidden", []) if isinstance(p, str)]
    return source_folders(suite.root) + [p if p.is_absolute() else (suite.root / p).resolve() for p in extra]


def _class_names(path: Path) -> tuple[str, ...]:
    """The names of every class a Python file defines (nested ones too); () when it does not parse."""
    try:
        tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError, OSError):
        return ()
    return tuple(sorted({node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}))


def _text(path: Path | None) -> list[str]:
    if path is None:
        return []
    return path.read_bytes().decode("utf-8", errors="replace").splitlines(keepends=True)
