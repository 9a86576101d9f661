"""The driver's test runner and the verdict rule.

pytest runs in a subprocess (inside the sandbox when there is one), in its own process group, with a
per-test timeout (pytest-timeout, signal method), a whole-run timeout, memory/CPU/file-size/process
limits and an environment scrubbed of credentials. Its stdout/stderr go to a file capped in size, never
whole into memory. Results come from our plugin (`_child/repo_agent_results.py`) as authenticated
records over a pipe, one per test phase as it finishes; the parent checks them (sequence, HMAC, no
duplicates, nothing after the end, against the task's expected tests) and decides the outcome:

    passed         every expected test ran and passed (with no expected list: >= 1 ran, none failed)
    failed         a test failed or timed out (with fail-fast, decided at the first failure)
    tests_missing  nothing failed but not every expected test ran and passed (collection errors,
                   exits, skips, tests that vanished)
    error          the run itself broke: whole-run timeout, a crash, forged/inconsistent records, a
                   protected file changed during the run
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .sandbox import Sandbox, interpreter_folders, new_pids_cgroup, resolve_sandbox
from .secrets import scrubbed_environ
from .suites import grading
from .suites.task import Resolution, TestSpec

MEMORY_LIMIT_BYTES = int(os.environ.get("REPO_AGENT_TEST_MEMORY_BYTES", 4 * 1024**3))
OUTPUT_LIMIT_BYTES = int(os.environ.get("REPO_AGENT_TEST_OUTPUT_BYTES", 8 * 1024**2))
SUMMARY_MAX_CHARS = 600
MAX_RECORD_BYTES = 64 * 1024
MAX_RECORDS = 200_000
CHILD_DIR = Path(__file__).resolve().parent / "_child"
MAX_FILE_BINDS = 2000  # bubblewrap refuses more than 9000 arguments; each bind takes three
CONFIG_ARG_LIMIT = 64 * 1024  # a longer bootstrap config (thousands of protected files) goes through a file
OUTCOMES = ("passed", "failed", "tests_missing", "error")

ExpectedTests = tuple[tuple[str, "str | None", "str | None"], ...]


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
    outcome: str = "error"
    expected: int | None = None  # how many tests the task expects (None: unknown)
    missing: list[str] = field(default_factory=list)  # expected tests that did not run and pass
    integrity: list[str] = field(default_factory=list)  # why the run's own record cannot be trusted
    tests: dict[str, str] = field(default_factory=dict)  # test id -> passed | failed | skipped | error
    collected: dict[str, dict[str, Any]] = field(default_factory=dict)  # test id -> {params, defined_in}
    sandbox: str = "none"
    output_tail: str = ""
    # SWE-bench-style tasks only: {status, FAIL_TO_PASS: {success, failure}, PASS_TO_PASS: {...}} (grading.py)
    resolution: dict[str, Any] | None = None

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.errors

    @property
    def ok(self) -> bool:
        return self.outcome == "passed"

    def snippet(self) -> str:
        """The line the driver appends to a write_file result (test policy on_write/final)."""
        if self.ok:
            return f"[TESTS PASS] {self.passed} passed"
        return f"[TESTS FAIL] {self.summary}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed_verdict": self.ok,
            "outcome": self.outcome,
            "sealed": True,
            "sandbox": self.sandbox,
            "passed": self.passed,
            "failed": self.failed,
            "errors": self.errors,
            "skipped": self.skipped,
            "timeouts": self.timeouts,
            "run_timed_out": self.run_timed_out,
            "exit_code": self.exit_code,
            "duration_s": round(self.duration_s, 3),
            "expected_tests": self.expected,
            "missing_tests": self.missing[:50],
            "integrity": self.integrity,
            "tests": dict(list(self.tests.items())[:500]),
            "summary": self.summary,
            **({"resolution": self.resolution} if self.resolution is not None else {}),
        }


def scrubbed_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = scrubbed_environ()
    for key in ("PYTEST_ADDOPTS", "PYTHONSTARTUP", "PYTHONINSPECT", "PYTHONUSERBASE", "PYTHONHOME",
                "VIRTUAL_ENV", "PYTHONPATH"):
        env.pop(key, None)
    env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
               PYTHONNOUSERSITE="1")
    env.update(extra or {})
    return env


def _user_process_count() -> int:
    uid, count = os.getuid(), 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                count += entry.stat().st_uid == uid
            except OSError:
                pass
    return count


def pytest_command(spec: TestSpec, fail_fast: bool, protected: Iterable[Path] = ()) -> list[str]:
    """The test process's command: our bootstrap, then pytest (or, for `runner: unittest`, the task's
    runner script or module, whose unittest results our hook streams instead of the pytest plugin)."""
    python = spec.python or sys.executable
    config = {
        "runner": spec.runner,
        "per_test_timeout": spec.per_test_timeout,
        "memory_bytes": MEMORY_LIMIT_BYTES,
        "cpu_seconds": int(spec.total_timeout) + 10,
        "file_bytes": OUTPUT_LIMIT_BYTES,
        # root is exempt from RLIMIT_NPROC (a pids cgroup contains it instead); others get headroom
        "max_processes": None if os.geteuid() == 0 else _user_process_count() + 256,
        "protected": [str(p) for p in protected],
    }
    launcher = (f"import sys; sys.path.append({str(CHILD_DIR)!r}); import repo_agent_bootstrap")
    if spec.runner == "unittest":
        return [python, "-c", launcher, json.dumps(config), *spec.args]
    if spec.runner != "pytest":
        raise ValueError(f"unknown test runner {spec.runner!r} (pytest or unittest)")
    args = [python, "-c", launcher, json.dumps(config),
            "-q", "-p", "pytest_timeout", "-p", "no:cacheprovider", "-p", "no:junitxml", "--rootdir=.",
            "-o", "addopts=", f"--timeout={spec.per_test_timeout}", "--timeout-method=signal"]
    if fail_fast:
        args.append("-x")
    return args + list(spec.args)


# Test runs are CPU-bound while model calls are I/O-bound: many rollout threads may wait on a model at
# once, but at most one test run per core runs at a time.
_TEST_SLOTS = threading.BoundedSemaphore(os.cpu_count() or 1)


def set_test_concurrency(slots: int) -> None:
    global _TEST_SLOTS
    _TEST_SLOTS = threading.BoundedSemaphore(max(1, slots))


def run_tests(root: Path, spec: TestSpec, fail_fast: bool = False, *, sandbox: Sandbox | str = "auto",
              expected: ExpectedTests | None = None, readonly: Iterable[Path] = (), hide: Iterable[Path] = (),
              resolution: Resolution | None = None) -> TestReport:
    """Run `spec` in `root`. Never raises for test failures, crashes or hangs. `readonly` files are
    bound read-only in the sandbox and write-guarded without one (the caller checks them afterwards);
    `hide` folders (the suite's, which hold the reference fixes) are empty inside the sandbox. With a
    `resolution` only its tests decide (SWE-bench's rule), and the run never stops at a first failure."""
    box = resolve_sandbox(sandbox) if isinstance(sandbox, str) else sandbox
    with _TEST_SLOTS:
        return _run_tests(Path(root), spec, fail_fast and resolution is None, box, expected,
                          [Path(p) for p in readonly], list(hide), resolution)


class _RecordReader(threading.Thread):
    """Drains the result pipe as records arrive (so the child never blocks on a full pipe)."""

    def __init__(self, fd: int):
        super().__init__(daemon=True)
        self.fd, self.lines, self.overflow = fd, [], False

    def run(self) -> None:
        buffer = b""
        with open(self.fd, "rb", buffering=0, closefd=True) as pipe:
            while True:
                chunk = pipe.read(65536)
                if not chunk:
                    break
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                for line in complete:
                    if len(self.lines) >= MAX_RECORDS:
                        self.overflow = True
                    else:
                        self.lines.append(line[:MAX_RECORD_BYTES])
                if len(buffer) > MAX_RECORD_BYTES:
                    self.lines.append(buffer[:MAX_RECORD_BYTES])
                    buffer = b""
        if buffer:
            self.lines.append(buffer[:MAX_RECORD_BYTES] + b"\x00torn")


def _run_tests(root: Path, spec: TestSpec, fail_fast: bool, box: Sandbox, expected: ExpectedTests | None,
               readonly: list[Path], hide: list[Path], resolution: Resolution | None = None) -> TestReport:
    started = time.monotonic()
    key = secrets.token_bytes(32)
    result_r, result_w = os.pipe()
    key_r, key_w = os.pipe()
    os.write(key_w, key)  # 32 bytes fit in any pipe buffer
    os.close(key_w)
    env = scrubbed_env(dict(spec.env))
    env.update(REPO_AGENT_RESULT_FD=str(result_w), REPO_AGENT_KEY_FD=str(key_r))
    if spec.pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(str(root / folder) for folder in spec.pythonpath)
    if box.isolated:
        env["HOME"] = "/tmp/home"
    cmd = pytest_command(spec, fail_fast, readonly)
    python = spec.python or sys.executable
    binds = _fewer_binds(root, [p for p in readonly if p.exists()])
    config_dir = _config_through_file(cmd, binds)
    try:
        return _run_wrapped(root, spec, box.wrap(cmd, workdir=root, readonly=binds, hide=hide,
                                                 visible=[*interpreter_folders(python), CHILD_DIR]),
                            box, env, (result_r, result_w, key_r), key, expected, resolution, started)
    finally:
        if config_dir is not None:
            shutil.rmtree(config_dir, ignore_errors=True)


def _fewer_binds(root: Path, files: list[Path], limit: int = MAX_FILE_BINDS) -> list[Path]:
    """bubblewrap takes at most 9000 arguments, so thousands of read-only files (a large repository's
    test tree) are bound as the highest folders all of whose files are read-only; files beside writable
    ones keep their own bind. (Tests then cannot create files inside such a folder either.)"""
    if len(files) <= limit:
        return files
    readonly = set(files)
    whole: dict[Path, bool] = {}
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        folder = Path(dirpath)
        whole[folder] = bool(filenames or dirnames) and all(folder / f in readonly for f in filenames) \
            and all(whole.get(folder / d, False) for d in dirnames)
    chosen: dict[Path, None] = {}
    for path in files:
        top = None
        for parent in path.parents:
            if parent == root or root not in parent.parents:
                break
            if whole.get(parent):
                top = parent
        chosen[top or path] = None
    return list(chosen)


def _config_through_file(cmd: list[str], binds: list[Path]) -> Path | None:
    """One argument holds at most 128 KiB (MAX_ARG_STRLEN): a longer bootstrap config (thousands of
    protected files) goes into a private file, bound read-only into the sandbox, named as `@path`."""
    if len(cmd[3]) <= CONFIG_ARG_LIMIT:
        return None
    folder = Path(tempfile.mkdtemp(prefix="repo-agent-config-"))
    (folder / "config.json").write_text(cmd[3], encoding="utf-8")
    os.chmod(folder, 0o755)
    os.chmod(folder / "config.json", 0o644)
    cmd[3] = "@" + str(folder / "config.json")
    binds.append(folder / "config.json")
    return folder


def _run_wrapped(root: Path, spec: TestSpec, cmd: list[str], box: Sandbox, env: dict[str, str], fds: tuple[int, int, int],
                 key: bytes, expected: ExpectedTests | None, resolution: Resolution | None, started: float) -> TestReport:
    result_r, result_w, key_r = fds
    cgroup = new_pids_cgroup()
    if cgroup is not None:
        cmd = cgroup.wrap(cmd)
    reader = _RecordReader(result_r)
    timed_out = False
    with tempfile.TemporaryFile(prefix="repo-agent-output-") as output:
        try:
            proc = subprocess.Popen(cmd, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=output,
                                    stderr=subprocess.STDOUT, start_new_session=True, pass_fds=(result_w, key_r))
        finally:
            os.close(result_w)
            os.close(key_r)
        reader.start()
        try:
            proc.wait(timeout=spec.total_timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            _kill_group(proc.pid)  # tests may leave children behind
            if cgroup is not None:
                cgroup.close()
            proc.wait()
        reader.join(timeout=10)
        tail = _tail(output)
    records, problems = verify_records(reader.lines, key)
    if reader.overflow:
        problems.append(f"more than {MAX_RECORDS} result records")
    report = decide(records, problems, exit_code=proc.returncode, run_timed_out=timed_out,
                    total_timeout=spec.total_timeout, expected=expected, output_tail=tail, resolution=resolution)
    report.sandbox = box.kind
    report.duration_s = time.monotonic() - started
    return report


def _tail(output: Any, limit: int = 4000) -> str:
    size = output.seek(0, os.SEEK_END)
    output.seek(max(0, size - limit))
    return output.read().decode("utf-8", errors="replace")


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def verify_records(lines: list[bytes], key: bytes) -> tuple[list[dict[str, Any]], list[str]]:
    """The authentic records in order, and every reason to distrust the stream."""
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    expected_seq = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            envelope = json.loads(line)
            seq, mac, record = envelope["seq"], envelope["mac"], envelope["r"]
            body = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)
        except (ValueError, KeyError, TypeError):
            problems.append("unreadable result record (written by something other than the driver's plugin)")
            continue
        want = hmac.new(key, f"{seq}:{body}".encode("utf-8"), hashlib.sha256).hexdigest()
        if not isinstance(mac, str) or not hmac.compare_digest(mac, want):
            problems.append("result record with a bad signature (forged)")
            continue
        if seq != expected_seq:
            problems.append(f"result record out of sequence ({seq}, expected {expected_seq})")
            continue
        expected_seq += 1
        records.append(record)
    return records, problems


def _test_statuses(records: list[dict[str, Any]], problems: list[str]) -> tuple[dict[str, str], dict[str, str], int]:
    """Per test id: passed | failed | skipped | error, the first failure message, and timeouts."""
    status: dict[str, str] = {}
    messages: dict[str, str] = {}
    seen: set[tuple[str, str]] = set()
    timeouts = 0
    for r in records:
        if r.get("e") != "test":
            continue
        test_id, when, outcome = str(r.get("id")), str(r.get("when")), r.get("outcome")
        if (test_id, when) in seen:
            problems.append(f"two results for the {when} of {test_id}")
            continue
        seen.add((test_id, when))
        current = status.get(test_id)
        if outcome == "failed":
            message = str(r.get("msg") or "")
            if "Timeout" in message and when == "call":
                timeouts += 1
                message = "timeout"
            messages.setdefault(test_id, message)
            status[test_id] = "failed" if when == "call" else "error"
        elif outcome == "skipped" and current is None:
            status[test_id] = "skipped"
        elif outcome == "passed" and when == "call" and current is None:
            status[test_id] = "skipped" if r.get("xfail") else "passed"
    return status, messages, timeouts


def swebench_statuses(records: list[dict[str, Any]]) -> dict[str, str]:
    """Test name -> SWE-bench status (grading.py) from authentic records, under every name SWE-bench may
    use for it: the id, the first line of a unittest docstring (what Django's verbose runner prints in its
    place), and both Python forms of a unittest name. A non-strict xpass gets no status, as in SWE-bench
    (its log parser knows no XPASS)."""
    phases: dict[str, dict[str, dict[str, Any]]] = {}
    for r in records:
        if r.get("e") == "test":
            phases.setdefault(str(r.get("id")), {}).setdefault(str(r.get("when")), r)
    statuses: dict[str, str] = {}
    rank = {grading.PASSED: 0, grading.XFAIL: 0, grading.SKIPPED: 1, grading.FAILED: 2, grading.ERROR: 2}
    for test_id, by_when in phases.items():
        call = by_when.get("call")
        if any(r.get("outcome") == "failed" for w, r in by_when.items() if w != "call"):
            status = grading.ERROR
        elif call is not None and call.get("outcome") == "failed":
            status = grading.ERROR if call.get("kind") == "error" else grading.FAILED
        elif call is not None and call.get("outcome") == "passed":
            if call.get("xfail"):
                continue
            status = grading.PASSED
        elif any(r.get("outcome") == "skipped" for r in by_when.values()):
            status = grading.XFAIL if any(r.get("xfail") for r in by_when.values()) else grading.SKIPPED
        else:
            continue
        names = {test_id, grading.canonical_name(test_id), *grading.other_forms(test_id)}
        alias = next((r.get("alias") for r in by_when.values() if r.get("alias")), None)
        if alias:
            names.add(str(alias))
        for name in names:  # two tests printed under one name: the worse status stands
            if name not in statuses or rank[status] > rank[statuses[name]]:
                statuses[name] = status
    return statuses


def _resolve(report: TestReport, records: list[dict[str, Any]], resolution: Resolution) -> tuple[list[str], list[str]]:
    """Fill `report.resolution`; (listed tests that failed, listed tests that did not run or were skipped)."""
    statuses = swebench_statuses(records)
    graded = grading.tests_report(statuses, resolution.fail_to_pass, resolution.pass_to_pass)
    report.resolution = {"status": grading.resolution_status(graded), **graded,
                         "tests": {name: grading.status_of(name, statuses) for name in resolution.tests}}
    report.expected = len(resolution.tests)
    failures = graded[grading.F2P]["failure"] + graded[grading.P2P]["failure"]
    failing = [n for n in failures if grading.status_of(n, statuses) in (grading.FAILED, grading.ERROR)]
    missing = [n for n in dict.fromkeys(failures) if n not in failing]
    report.missing = missing + [n for n in failing if n not in missing]
    return list(dict.fromkeys(failing)), missing


def decide(records: list[dict[str, Any]], problems: list[str], *, exit_code: int | None, run_timed_out: bool,
           total_timeout: float, expected: ExpectedTests | None, output_tail: str = "",
           resolution: Resolution | None = None) -> TestReport:
    """The verdict from authentic records: a pure function, so each rule is testable on its own.

    With a `resolution` (SWE-bench-style tasks) only its FAIL_TO_PASS and PASS_TO_PASS tests decide:
    `passed` iff the run is trustworthy, finished, and SWE-bench would grade it RESOLVED_FULL; other
    tests may fail."""
    problems = list(problems)
    finish = [r for r in records if r.get("e") == "finish"]
    if finish and records[-1] is not finish[0]:
        problems.append("result records after the end of the session")
    statuses, messages, timeouts = _test_statuses(records, problems)
    collected = {str(r.get("id")): {"params": r.get("params"), "defined_in": r.get("defined_in")}
                 for r in records if r.get("e") == "collected"}
    collect_errors = [r for r in records if r.get("e") == "collect_error"]
    report = TestReport(run_timed_out=run_timed_out, exit_code=exit_code, tests=statuses, collected=collected,
                        output_tail=output_tail[-2000:])
    report.passed = sum(s == "passed" for s in statuses.values())
    report.failed = sum(s == "failed" for s in statuses.values())
    report.errors = sum(s == "error" for s in statuses.values())
    report.skipped = sum(s == "skipped" for s in statuses.values())
    report.timeouts = timeouts
    if expected is not None:
        report.expected = len(expected)
        for test_id, params, defined_in in expected:
            seen = collected.get(test_id)
            if seen is not None and params is not None and seen.get("params") != params:
                problems.append(f"{test_id}: its parameters differ from the task's (test data changed in memory)")
            if seen is not None and defined_in is not None and seen.get("defined_in") != defined_in:
                problems.append(f"{test_id}: the test function now comes from {seen.get('defined_in')}, not {defined_in}")
        report.missing = [t for t, _, _ in expected if statuses.get(t) != "passed"]
    counts = _counts_text(report)
    failures = [f"{_short_id(t)}: {messages.get(t, '')}".rstrip(": ") for t, s in statuses.items() if s in ("failed", "error")]
    if resolution is not None:
        return _decide_resolution(report, records, problems, resolution, finish, exit_code, total_timeout)
    if run_timed_out:
        report.outcome, why = "error", f"test run killed after {total_timeout:g}s (whole-run timeout)"
    elif problems:
        report.outcome, why = "error", "the run's results cannot be trusted: " + "; ".join(dict.fromkeys(problems))
    elif report.failed or report.errors:
        report.outcome, why = "failed", "; ".join(failures[:3]) + (f"; +{len(failures) - 3} more" if len(failures) > 3 else "")
    elif not finish and (exit_code or 0) < 0:
        report.outcome, why = "error", f"the test process was killed by signal {-(exit_code or 0)} ({_signal_name(exit_code)})"
    elif not finish:
        report.outcome, why = "tests_missing", f"the test process exited (code {exit_code}) before pytest finished"
    elif collect_errors:
        names = ", ".join(str(r.get("id")) or "?" for r in collect_errors[:3])
        report.outcome, why = "tests_missing", f"collection error in {names}: {collect_errors[0].get('msg', '')}"
    elif expected is not None and report.missing:
        report.outcome, why = "tests_missing", (f"only {report.expected - len(report.missing)} of {report.expected} "
                                                 f"expected tests ran and passed (missing: {', '.join(_short_id(t) for t in report.missing[:3])})")
    elif report.passed == 0:
        report.outcome, why = "tests_missing", "no test ran"
    elif finish[0].get("exitstatus") != 0 or exit_code != 0:
        report.outcome, why = "tests_missing", f"pytest exit status {finish[0].get('exitstatus')}, process exit code {exit_code}"
    else:
        report.outcome, why = "passed", ""
    report.integrity = list(dict.fromkeys(problems))
    report.summary = (counts + (f": {why}" if why else ""))[:SUMMARY_MAX_CHARS]
    if report.outcome != "passed" and not records and output_tail.strip():
        report.summary = (report.summary + " | " + " | ".join(output_tail.strip().splitlines()[-3:]))[:SUMMARY_MAX_CHARS]
    return report


def _decide_resolution(report: TestReport, records: list[dict[str, Any]], problems: list[str], resolution: Resolution,
                       finish: list[dict[str, Any]], exit_code: int | None, total_timeout: float) -> TestReport:
    failing, missing = _resolve(report, records, resolution)
    graded = report.resolution or {}
    shares = "; ".join(f"{part} {len(graded[part]['success'])}/{len(graded[part]['success']) + len(graded[part]['failure'])}"
                       for part in (grading.F2P, grading.P2P))
    counts = f"{_counts_text(report)}; {shares}"
    if report.run_timed_out:
        report.outcome, why = "error", f"test run killed after {total_timeout:g}s (whole-run timeout)"
    elif problems:
        report.outcome, why = "error", "the run's results cannot be trusted: " + "; ".join(dict.fromkeys(problems))
    elif not resolution.tests:
        report.outcome, why = "tests_missing", "the task names no FAIL_TO_PASS or PASS_TO_PASS test"
    elif failing:
        report.outcome, why = "failed", "failing: " + ", ".join(failing[:3]) + (f" +{len(failing) - 3} more" if len(failing) > 3 else "")
    elif not finish and (exit_code or 0) < 0:
        report.outcome, why = "error", f"the test process was killed by signal {-(exit_code or 0)} ({_signal_name(exit_code)})"
    elif not finish:
        report.outcome, why = "tests_missing", f"the test process exited (code {exit_code}) before the runner finished"
    elif missing:
        report.outcome, why = "tests_missing", ("did not run (or skipped): " + ", ".join(missing[:3])
                                                 + (f" +{len(missing) - 3} more" if len(missing) > 3 else ""))
    else:
        report.outcome, why = "passed", ""
    report.integrity = list(dict.fromkeys(problems))
    report.summary = (counts + (f": {why}" if why else ""))[:SUMMARY_MAX_CHARS]
    if report.outcome != "passed" and not records and report.output_tail.strip():
        report.summary = (report.summary + " | " + " | ".join(report.output_tail.strip().splitlines()[-3:]))[:SUMMARY_MAX_CHARS]
    return report


def _counts_text(report: TestReport) -> str:
    text = f"{report.passed} passed, {report.failed} failed"
    if report.errors:
        text += f", {report.errors} errors"
    if report.skipped:
        text += f", {report.skipped} skipped"
    if report.timeouts:
        text += f" ({report.timeouts} timed out)"
    return text


def _short_id(test_id: str) -> str:
    return test_id.split("::", 1)[-1] if "::" in test_id else test_id


def _signal_name(code: int | None) -> str:
    try:
        name = signal.Signals(-(code or 0)).name
    except ValueError:
        return "unknown"
    return {"SIGXFSZ": f"SIGXFSZ: output or a file exceeded {OUTPUT_LIMIT_BYTES // 1024**2} MB",
            "SIGXCPU": "SIGXCPU: CPU time limit", "SIGKILL": "SIGKILL: killed, e.g. out of memory or processes"}.get(name, name)


def distrust(report: TestReport, problem: str) -> TestReport:
    """Mark a finished run untrustworthy (e.g. a protected file changed while it ran)."""
    report.integrity.append(problem)
    if report.outcome != "error":
        report.outcome = "error"
        report.summary = f"{_counts_text(report)}: the run's results cannot be trusted: {problem}"[:SUMMARY_MAX_CHARS]
    return report


def verdict_outcome(verdict: dict[str, Any] | None) -> str:
    """passed | failed | tests_missing | error; traces written before sealed verdicts had only a flag."""
    if not verdict:
        return "error"
    if verdict.get("outcome"):
        return str(verdict["outcome"])
    return "passed" if verdict.get("passed_verdict") else "failed"
