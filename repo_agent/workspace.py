"""Per-rollout workspaces and the driver's test runner.

A workspace is a fresh temporary copy of a task's files; the source suite is never written to.
Tests run with pytest in a subprocess: own process group (killed as a group), per-test timeout
(pytest-timeout, signal method so one hanging test does not lose the others), a whole-run timeout,
memory/CPU rlimits, and an environment scrubbed of credentials. Verdicts come from JUnit XML.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from .suites.task import Suite, TaskSpec, TestSpec

MEMORY_LIMIT_BYTES = int(os.environ.get("REPO_AGENT_TEST_MEMORY_BYTES", 4 * 1024**3))
SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|SESSION)", re.I)
SUMMARY_MAX_CHARS = 600


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


@dataclass
class TestReport:
    __test__ = False

    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    timeouts: int = 0
    run_timed_out: bool = False
    exit_code: int | None = None
    duration_s: float = 0.0
    summary: str = ""

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.errors

    @property
    def ok(self) -> bool:
        """The verdict: at least one test ran and none failed, errored or timed out."""
        return self.total > 0 and self.failed == 0 and self.errors == 0 and not self.run_timed_out

    def snippet(self) -> str:
        """The short line the driver appends to a write_file result (test policy on_write/final)."""
        if self.ok:
            return f"[TESTS PASS] {self.passed} passed"
        return f"[TESTS FAIL] {self.summary}"

    def to_dict(self) -> dict:
        return {
            "passed_verdict": self.ok,
            "passed": self.passed,
            "failed": self.failed,
            "errors": self.errors,
            "skipped": self.skipped,
            "timeouts": self.timeouts,
            "run_timed_out": self.run_timed_out,
            "exit_code": self.exit_code,
            "duration_s": round(self.duration_s, 3),
            "summary": self.summary,
        }


def scrubbed_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not SECRET_ENV.search(k)}
    env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    env.pop("PYTEST_ADDOPTS", None)
    env.update(extra or {})
    return env


# Sets rlimits inside the child and hands over to pytest: no preexec_fn, which is unsafe with threads.
_BOOTSTRAP = (
    "import resource, sys\n"
    "mem, cpu = int(sys.argv[1]), int(sys.argv[2])\n"
    "resource.setrlimit(resource.RLIMIT_AS, (mem, mem))\n"
    "resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))\n"
    "import pytest\n"
    "sys.exit(pytest.main(sys.argv[3:]))\n"
)


def pytest_command(spec: TestSpec, junit_path: Path, fail_fast: bool) -> list[str]:
    python = spec.python or sys.executable
    cpu_seconds = int(spec.total_timeout) + 10
    args = [
        python, "-c", _BOOTSTRAP, str(MEMORY_LIMIT_BYTES), str(cpu_seconds),
        "-q", "-p", "pytest_timeout", "-p", "no:cacheprovider", "--rootdir=.",
        f"--junitxml={junit_path}", "-o", "junit_family=xunit1",
        f"--timeout={spec.per_test_timeout}", "--timeout-method=signal",
    ]
    if fail_fast:
        args.append("-x")
    return args + list(spec.args)


# Test runs are CPU-bound while model calls are I/O-bound: many rollout threads may wait on a model at
# once, but at most one test run per core runs at a time.
_TEST_SLOTS = threading.BoundedSemaphore(os.cpu_count() or 1)


def set_test_concurrency(slots: int) -> None:
    global _TEST_SLOTS
    _TEST_SLOTS = threading.BoundedSemaphore(max(1, slots))


def run_tests(root: Path, spec: TestSpec, fail_fast: bool = False) -> TestReport:
    """Run the task's tests in `root`. Never raises for test failures, crashes or hangs."""
    with _TEST_SLOTS:
        return _run_tests(root, spec, fail_fast)


def _run_tests(root: Path, spec: TestSpec, fail_fast: bool) -> TestReport:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="repo-agent-junit-") as tmp:
        junit = Path(tmp) / "junit.xml"
        cmd = pytest_command(spec, junit, fail_fast)
        proc = subprocess.Popen(
            cmd, cwd=root, env=scrubbed_env(dict(spec.env)), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        timed_out = False
        try:
            output, _ = proc.communicate(timeout=spec.total_timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc.pid)
            output, _ = proc.communicate()
        finally:
            _kill_group(proc.pid)  # tests may leave children behind
        report = parse_junit(junit) if junit.exists() else TestReport()
    report.exit_code = proc.returncode
    report.run_timed_out = timed_out
    report.duration_s = time.monotonic() - started
    if timed_out:
        report.summary = f"test run killed after {spec.total_timeout:g}s (whole-run timeout). " + report.summary
    elif report.total == 0 and not report.summary:
        tail = output.decode("utf-8", errors="replace").strip().splitlines()[-5:]
        report.summary = "no test ran: " + " | ".join(tail)
    report.summary = report.summary.strip()[:SUMMARY_MAX_CHARS]
    return report


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def parse_junit(path: Path) -> TestReport:
    report = TestReport()
    try:
        tree = ET.parse(path)
    except ET.ParseError as exc:
        report.summary = f"unreadable JUnit XML: {exc}"
        return report
    problems: list[str] = []
    for case in tree.iter("testcase"):
        name = case.get("name", "?")
        failure = case.find("failure")
        error = case.find("error")
        if case.find("skipped") is not None:
            report.skipped += 1
        elif failure is not None or error is not None:
            node = failure if failure is not None else error
            message = (node.get("message") or node.text or "").strip().splitlines()
            first = message[0] if message else ""
            if "Timeout" in first:
                report.timeouts += 1
                report.failed += 1
                problems.append(f"{name}: timeout")
            elif failure is not None:
                report.failed += 1
                problems.append(f"{name}: {first[:160]}")
            else:
                report.errors += 1
                problems.append(f"{name}: error: {first[:160]}")
        else:
            report.passed += 1
    counts = f"{report.passed} passed, {report.failed} failed"
    if report.errors:
        counts += f", {report.errors} errors"
    if report.timeouts:
        counts += f" ({report.timeouts} timed out)"
    shown = "; ".join(problems[:3])
    more = f"; +{len(problems) - 3} more" if len(problems) > 3 else ""
    report.summary = f"{counts}" + (f": {shown}{more}" if problems else "")
    return report
