"""The verdict rule: from the authenticated records of a test run to an outcome.

The runner (testrun.py) streams one signed record per test phase from our pytest plugin; here the
records are checked (sequence, HMAC, no duplicates, nothing after the end, against the task's expected
tests or its FAIL_TO_PASS / PASS_TO_PASS lists) and the outcome decided:

    passed         every expected test ran and passed (with no expected list: >= 1 ran, none failed)
    failed         a test failed or timed out (with fail-fast, decided at the first failure)
    tests_missing  nothing failed but not every expected test ran and passed (collection errors,
                   exits, skips, tests that vanished)
    error          the run itself broke: whole-run timeout, a crash, forged/inconsistent records, a
                   protected file changed during the run, or the test process reported that what the
                   verdict depends on was tampered with (`integrity` records: pytest, pluggy, our plugin
                   or the builtins changed, a hook registered from the program's code, a report that
                   contradicts what the test did); `tampered` is then true

`suspicious_constructs` is the static second line: constructs a fix has no business adding (new
comparison dunders, imports of pytest or gc, frame access, writes to sys.modules or builtins, ...),
named from the final texts of the changed files and the reference fix. It never changes the outcome.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
from dataclasses import dataclass, field
from typing import Any

from .suites import grading
from .suites.task import Resolution

SUMMARY_MAX_CHARS = 600
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
    worker: str = "cold"  # warm (a forked run of a warm worker, warm.py) | cold | cold (why)
    output_tail: str = ""
    cpu: dict[str, float] = field(default_factory=dict)  # test id -> CPU seconds of its call
    budget: dict[str, Any] | None = None  # the time budget the run had (testrun.budget_of)
    # SWE-bench-style tasks only: {status, FAIL_TO_PASS: {success, failure}, PASS_TO_PASS: {...}} (grading.py)
    resolution: dict[str, Any] | None = None

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.errors

    @property
    def ok(self) -> bool:
        return self.outcome == "passed"

    @property
    def tampered(self) -> bool:
        return bool(self.integrity)

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
            "worker": self.worker,
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
            "tampered": self.tampered,
            **({"budget": self.budget} if self.budget is not None else {}),
            "tests": dict(list(self.tests.items())[:500]),
            "summary": self.summary,
            **({"resolution": self.resolution} if self.resolution is not None else {}),
        }



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
    for r in records:
        if r.get("e") == "integrity":
            problems += [f"tampering: {p}" for p in (r.get("problems") or ["(unspecified)"])][:20]
    cpu = {str(r.get("id")): float(r["cpu"]) for r in records
           if r.get("e") == "test" and r.get("when") == "call" and isinstance(r.get("cpu"), (int, float))}
    report = TestReport(run_timed_out=run_timed_out, exit_code=exit_code, tests=statuses, collected=collected,
                        output_tail=output_tail[-2000:], cpu=cpu)
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
    return {"SIGXFSZ": "SIGXFSZ: output or a file exceeded the size limit",
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
