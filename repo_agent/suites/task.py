"""Task and suite records: frozen data, separate from the code that builds and checks them.

A suite file is JSON:
    {"schema": "repo-agent/suite", "schema_version": 1, "suite_id": "...", "kind": "quixbugs",
     "root": "<folder, relative to the suite file or absolute>", "source": {...},
     "derived_from": null | {"suite_id", "path", "sha256", "rule", "side", "train_pct"},
     "tasks": [TaskSpec, ...]}
Each task names the files copied into its workspace (relative to the suite root) and, separately, the
reference fix, which is never copied into a workspace.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text
from . import minimal
from .minimal import MinimalFix
from .rules import DEFAULT_EDITABLE, QUIXBUGS_PROTECTED, WriteRules

SUITE_SCHEMA = "repo-agent/suite"
SUITE_SCHEMA_VERSION = 2  # 2: per-task editable/protected/new_files rules and expected_tests


@dataclass(frozen=True)
class TestSpec:
    """How the driver runs a task's tests (always with pytest, which also runs unittest cases)."""

    __test__ = False  # not a pytest test class

    args: tuple[str, ...]  # pytest arguments: files or node ids, relative to the workspace
    # Time budgets in CPU seconds (the same verdict on a quiet and a loaded machine); a test or run that
    # sleeps or blocks is cut after testrun.WALL_BACKSTOP times as long in wall-clock time.
    per_test_timeout: float = 5.0
    total_timeout: float = 120.0
    python: str | None = None  # interpreter with pytest + pytest-timeout; None = the one running repo-agent
    env: tuple[tuple[str, str], ...] = ()  # extra environment variables
    # How the tests run: "pytest" (args are pytest arguments) or "unittest" (args are a runner script
    # or `-m module` and its arguments, e.g. Django's tests/runtests.py; results come from unittest's
    # own result objects). Stored only when not pytest.
    runner: str = "pytest"
    # Workspace folders put first on the test process's import path, as absolute paths of the run's
    # copy (e.g. "src" for a src-layout project). Stored only when set.
    pythonpath: tuple[str, ...] = ()


@dataclass(frozen=True)
class Resolution:
    """SWE-bench's rule instead of "every test passes": resolved iff every FAIL_TO_PASS test passes and
    every PASS_TO_PASS test still passes; no other test decides (verdict.decide, suites/grading.py)."""

    fail_to_pass: tuple[str, ...]
    pass_to_pass: tuple[str, ...] = ()

    @property
    def tests(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.fail_to_pass + self.pass_to_pass))


@dataclass(frozen=True)
class TaskSpec:
    task_id: str
    goal: str
    files: tuple[str, ...]  # copied into the workspace, relative to `base` (files or whole folders)
    target_files: tuple[str, ...]  # where the bug lives (workspace-relative)
    reference: tuple[tuple[str, str], ...]  # (workspace path, file under the suite root holding its fix)
    test: TestSpec
    split: str | None = None
    meta: tuple[tuple[str, Any], ...] = ()
    base: str = "."  # folder under the suite root whose contents become the workspace root
    # What the model may change (gitignore-style patterns; see rules.py). Protected always includes
    # rules.DEFAULT_PROTECTED and the files named by the test arguments.
    editable: tuple[str, ...] = DEFAULT_EDITABLE
    protected: tuple[str, ...] = ()
    new_files: tuple[str, ...] = ()
    # (test id, parameter digest or None, file defining the test or None), from the reference run
    # (`suite validate --record-tests`); None when unknown. A verdict passes only if all of them pass.
    expected_tests: tuple[tuple[str, str | None, str | None], ...] | None = None
    # The reference's code changes alone, applied to the buggy file (minimal.py), as proven by
    # `suite validate --record-minimal`; None when never recorded. Optional in the file: older suites load.
    minimal_fix: MinimalFix | None = None
    # Set for SWE-bench-style tasks: which tests decide, and how (see Resolution). Optional in the file.
    resolution: Resolution | None = None
    # (workspace path, file under the suite root, or None to delete): laid over every sealed test run
    # after the model's changes, never into the model's workspace (a SWE-bench test_patch: the new tests
    # decide the verdict but the model never sees them). Paths must be ones the model may not change.
    sealed_overlay: tuple[tuple[str, str | None], ...] = ()
    # The id that decides the task's side of the split (split.py): a derived task's (`suite synth`) is the
    # id of the task its program came from; None means the task's own id. Optional in the file.
    split_key: str | None = None

    @property
    def name(self) -> str:
        return self.task_id.split("/")[-1]

    @property
    def rules(self) -> WriteRules:
        if self.test.runner == "unittest":  # a runner script and its own arguments: only the script is a file
            test_files = tuple(self.test.args[:1]) if self.test.args and not self.test.args[0].startswith("-") else ()
        else:
            test_files = tuple(a.split("::")[0] for a in self.test.args if not a.startswith("-"))
        overlay = tuple(path for path, _ in self.sealed_overlay)  # what the verdict brings in is never the model's
        return WriteRules(editable=self.editable, protected=tuple(dict.fromkeys(self.protected + test_files + overlay)),
                          new_files=self.new_files)


@dataclass(frozen=True)
class Suite:
    suite_id: str
    kind: str
    root: Path  # absolute, resolved
    tasks: tuple[TaskSpec, ...]
    path: Path | None = None
    source: dict[str, Any] = field(default_factory=dict)
    derived_from: dict[str, Any] | None = None

    def task(self, task_id: str) -> TaskSpec:
        for task in self.tasks:
            if task.task_id == task_id or task.name == task_id:
                return task
        raise KeyError(f"no task {task_id!r} in suite {self.suite_id!r}; tasks: {', '.join(t.task_id for t in self.tasks)}")

    def reference_text(self, task: TaskSpec) -> dict[str, str]:
        """Workspace path -> fixed content. Reference sources are relative to the suite root."""
        return {ws_path: (self.root / src).read_text(encoding="utf-8") for ws_path, src in task.reference}

    def buggy_text(self, task: TaskSpec) -> dict[str, str]:
        """Workspace path -> the buggy content of each file the reference fixes ("" for a file it creates)."""
        base = self.root / task.base
        return {ws_path: (base / ws_path).read_text(encoding="utf-8") if (base / ws_path).is_file() else ""
                for ws_path, _ in task.reference}

    def teacher_fix(self, task: TaskSpec) -> tuple[dict[str, str], bool]:
        """(workspace path -> content a teacher writes, whether it is a minimal fix). The proven minimal
        fix when `suite validate --record-minimal` recorded one; when none was ever recorded, the minimal
        fix proposed now (unproven: a teacher whose write fails the tests falls back to the reference);
        the full reference when the recorded one is a fallback, when the buggy files changed since it was
        recorded, or when no code-line edit reproduces the reference."""
        fix = task.minimal_fix
        try:
            buggy = self.buggy_text(task)
            if fix is None:
                fix = minimal.propose(buggy, self.reference_text(task))
            if fix.proven:
                return minimal.fixed_texts(fix, buggy), True  # a file whose reference changes no code line is not written
        except (ValueError, OSError):
            pass
        return self.reference_text(task), False

    @property
    def task_ids(self) -> list[str]:
        return [t.task_id for t in self.tasks]


def task_to_dict(task: TaskSpec) -> dict[str, Any]:
    data = asdict(task)
    data["reference"] = [list(pair) for pair in task.reference]
    data["meta"] = dict(task.meta)
    data["test"]["env"] = dict(task.test.env)
    data["editable"], data["protected"], data["new_files"] = list(task.editable), list(task.protected), list(task.new_files)
    data["expected_tests"] = None if task.expected_tests is None else {
        test_id: {"params": params, "defined_in": defined_in} for test_id, params, defined_in in task.expected_tests}
    data.pop("minimal_fix")
    if task.minimal_fix is not None:  # omitted when unknown, so files written before the field keep their bytes
        data["minimal_fix"] = minimal.to_dict(task.minimal_fix)
    # Fields newer than schema version 2's first files are omitted at their defaults, for the same reason.
    for key, default in (("runner", "pytest"), ("pythonpath", ())):
        if getattr(task.test, key) == default:
            data["test"].pop(key)
    if data["test"].get("pythonpath"):
        data["test"]["pythonpath"] = list(task.test.pythonpath)
    data.pop("resolution")
    if task.resolution is not None:
        data["resolution"] = {"fail_to_pass": list(task.resolution.fail_to_pass),
                              "pass_to_pass": list(task.resolution.pass_to_pass)}
    data.pop("sealed_overlay")
    if task.sealed_overlay:
        data["sealed_overlay"] = [list(pair) for pair in task.sealed_overlay]
    if data.get("split_key") is None:
        data.pop("split_key")
    return data


def _expected_tests(value: Any) -> tuple[tuple[str, str | None, str | None], ...] | None:
    if value is None:
        return None
    return tuple((str(test_id), (info or {}).get("params"), (info or {}).get("defined_in"))
                 for test_id, info in value.items())


def task_from_dict(data: dict[str, Any], default_protected: tuple[str, ...] = ()) -> TaskSpec:
    """`default_protected` fills in `protected` for records written before the field existed."""
    test = dict(data["test"])
    test["args"] = tuple(test["args"])
    test["env"] = tuple(sorted((test.get("env") or {}).items()))
    test["pythonpath"] = tuple(test.get("pythonpath") or ())
    resolution = data.get("resolution")
    return TaskSpec(
        task_id=data["task_id"],
        goal=data["goal"],
        files=tuple(data["files"]),
        target_files=tuple(data["target_files"]),
        reference=tuple((a, b) for a, b in data["reference"]),
        test=TestSpec(**test),
        split=data.get("split"),
        meta=tuple(sorted((data.get("meta") or {}).items())),
        base=data.get("base", "."),
        editable=tuple(data.get("editable") or DEFAULT_EDITABLE),
        protected=tuple(data["protected"]) if "protected" in data else default_protected,
        new_files=tuple(data.get("new_files") or ()),
        expected_tests=_expected_tests(data.get("expected_tests")),
        minimal_fix=minimal.from_dict(data.get("minimal_fix")),
        resolution=None if resolution is None else Resolution(
            fail_to_pass=tuple(resolution["fail_to_pass"]), pass_to_pass=tuple(resolution.get("pass_to_pass") or ())),
        sealed_overlay=tuple((a, b) for a, b in data.get("sealed_overlay") or ()),
        split_key=data.get("split_key"),
    )


def suite_to_dict(suite: Suite, relative_to: Path | None = None) -> dict[str, Any]:
    root: str = str(suite.root)
    if relative_to is not None:
        root = os.path.relpath(suite.root, relative_to)
    return {
        "schema": SUITE_SCHEMA,
        "schema_version": SUITE_SCHEMA_VERSION,
        "suite_id": suite.suite_id,
        "kind": suite.kind,
        "root": Path(root).as_posix(),
        "source": suite.source,
        "derived_from": suite.derived_from,
        "tasks": [task_to_dict(t) for t in suite.tasks],
    }


class SuiteError(ValueError):
    pass


def load_suite(path: str | Path) -> Suite:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SuiteError(f"suite file not found: {path}") from None
    except ValueError as exc:
        raise SuiteError(f"suite file {path} is not valid JSON: {exc}") from None
    if data.get("schema") != SUITE_SCHEMA:
        raise SuiteError(f"{path} is not a repo-agent suite file (schema={data.get('schema')!r})")
    if data.get("schema_version", 0) > SUITE_SCHEMA_VERSION:
        raise SuiteError(f"{path} has schema_version {data['schema_version']}; this repo-agent reads <= {SUITE_SCHEMA_VERSION}")
    root = Path(data["root"])
    if not root.is_absolute():
        root = (path.parent / root).resolve()
    defaults = kind_default_protected(data.get("kind", "unknown"))
    try:
        tasks = tuple(task_from_dict(t, defaults) for t in data["tasks"])
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise SuiteError(f"{path}: malformed task record ({exc})") from None
    return Suite(
        suite_id=data["suite_id"],
        kind=data.get("kind", "unknown"),
        root=root,
        tasks=tasks,
        path=path.resolve(),
        source=data.get("source") or {},
        derived_from=data.get("derived_from"),
    )


def kind_default_protected(kind: str) -> tuple[str, ...]:
    """The builder's protected patterns for suite files written before tasks recorded their own."""
    if kind == "quixbugs":
        return QUIXBUGS_PROTECTED
    return ()


def suite_bytes(suite: Suite, out_path: Path) -> bytes:
    data = suite_to_dict(suite, relative_to=out_path.resolve().parent)
    return (json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False) + "\n").encode("utf-8")


def save_suite(suite: Suite, out_path: str | Path) -> Path:
    """Write atomically; the root is stored relative to the file so a checkout can move."""
    out_path = Path(out_path)
    atomic_write_text(out_path, suite_bytes(suite, out_path).decode("utf-8"))
    return out_path




def with_tasks(suite: Suite, tasks: tuple[TaskSpec, ...], **changes: Any) -> Suite:
    return replace(suite, tasks=tasks, **changes)
