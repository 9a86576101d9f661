"""pytest plugin of repo-agent's driver: streams each result to the driver as it happens (Python >= 3.6).

Registered by the bootstrap (`-p repo_agent_pytest`) after the result channel read its key and before
any conftest or test module is imported. Besides one signed record per collected test and per test
phase, it keeps three guards the program under test cannot switch off unnoticed:

* a witness around each test call (the outermost `pytest_runtest_call` wrapper) that sees whether the
  test raised, so a report that says `passed` for a test that raised is named, and a report for a test
  that never ran through the protocol is too;
* a CPU-time budget per test call (ITIMER_PROF: CPU seconds of this process, whatever the machine's
  load); a test over budget fails as a timeout even if the program caught the exception, and a timer
  the program disarmed is named;
* repo_agent_integrity's checks: after collection, after each test's teardown (once its own fixtures,
  monkeypatch among them, undid their patches) and at the end.
Problems go to the driver as `integrity` records; any makes the verdict `error`.
"""

import hashlib
import inspect
import json
import os
import resource
import signal
import time

import pytest

import repo_agent_integrity
import repo_agent_strict
from repo_agent_results import _send

_settings = {"per_test_cpu": None, "stop_on_timeout": False}
_witness = {}  # nodeid -> (exception type or None, cpu seconds, budget exceeded, timer disarmed)
_fired = [False]
_state = {"config": None, "captured": False}
_SKIP_EXCEPTIONS = (pytest.skip.Exception, pytest.xfail.Exception)


def configure(config):
    _settings["per_test_cpu"] = config.get("per_test_cpu")
    _settings["stop_on_timeout"] = bool(config.get("stop_on_timeout"))


def _cpu():
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _on_cpu_budget(signum, frame):
    _fired[0] = True
    pytest.fail("Timeout: the test used more than {} s of CPU time".format(_settings["per_test_cpu"]), pytrace=False)


def _short(report):
    crash = getattr(getattr(report, "longrepr", None), "reprcrash", None)
    text = getattr(crash, "message", None) or str(getattr(report, "longreprtext", "") or report.longrepr or "")
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return (lines[0] if crash is not None and lines else " | ".join(lines[-2:]))[:300]


def _params_digest(item):
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    try:
        text = json.dumps(callspec.params, sort_keys=True)
    except (TypeError, ValueError):
        return None  # objects whose repr may vary between runs: not fingerprinted
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _defined_in(item, root):
    function = getattr(item, "function", None) or getattr(item, "obj", None)
    try:
        function = inspect.unwrap(function)
    except Exception:
        pass
    function = getattr(function, "__func__", function)
    code = getattr(function, "__code__", None)
    if code is None:
        return None
    path = os.path.realpath(code.co_filename)
    if path.startswith(root + os.sep):
        return os.path.relpath(path, root).replace(os.sep, "/")
    return "<outside>"


def _report_integrity(full=False, extra=()):
    config = _state["config"]
    if not _state["captured"]:
        return
    problems = list(extra) + repo_agent_integrity.problems(config.pluginmanager if config else None, full=full)
    if signal.getsignal(signal.SIGPROF) is not _on_cpu_budget and _settings["per_test_cpu"]:
        problems.append("the CPU-time budget's signal handler was replaced")
    if problems:
        _send({"e": "integrity", "problems": problems})


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    _state["config"] = config
    if _settings["per_test_cpu"]:
        signal.signal(signal.SIGPROF, _on_cpu_budget)


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session):
    _state["session"] = session
    repo_agent_integrity.capture()  # nothing of the task has been imported yet
    _state["captured"] = True


def pytest_collectreport(report):
    if report.failed:
        _send({"e": "collect_error", "id": report.nodeid, "msg": _short(report)})


def pytest_collection_finish(session):
    root = os.path.realpath(str(session.config.rootdir))
    unrewritten = []
    for item in session.items:
        _send({"e": "collected", "id": item.nodeid, "params": _params_digest(item), "defined_in": _defined_in(item, root)})
        module = getattr(item, "module", None) if hasattr(item, "obj") else None
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and repo_agent_strict._real(path) not in repo_agent_strict.seen_files:
            unrewritten.append("test module {} did not go through the strict assert rewriter".format(module.__name__))
    _report_integrity(full=True, extra=sorted(set(unrewritten))[:5])


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_call(item):
    budget = _settings["per_test_cpu"]
    _fired[0] = False
    start = _cpu()
    if budget:
        signal.setitimer(signal.ITIMER_PROF, float(budget))
    outcome = yield
    remaining = signal.setitimer(signal.ITIMER_PROF, 0)[0] if budget else None
    fired = _fired[0]
    excinfo = outcome.excinfo
    _witness[item.nodeid] = (None if excinfo is None else excinfo[0], _cpu() - start, fired,
                             bool(budget) and not fired and remaining == 0)


def pytest_runtest_logreport(report):
    teardown = report.when == "teardown"
    extra = []
    record = {"e": "test", "id": report.nodeid, "when": report.when, "outcome": report.outcome}
    if hasattr(report, "wasxfail"):
        record["xfail"] = True
    if report.failed:
        record["msg"] = _short(report)
    if report.when == "call":
        witness = _witness.pop(report.nodeid, None)
        if witness is None:
            extra.append("a call report for {} came without the test running through pytest's protocol".format(report.nodeid))
        else:
            raised, cpu, over_budget, disarmed = witness
            record["cpu"] = round(cpu, 4)
            if over_budget:
                record["outcome"] = "failed"
                record["msg"] = "Timeout: the test used more than {} s of CPU time".format(_settings["per_test_cpu"])
            if disarmed:
                extra.append("the CPU-time budget of {} was disarmed".format(report.nodeid))
            if raised is not None and not issubclass(raised, _SKIP_EXCEPTIONS) and report.outcome == "passed":
                extra.append("{} raised {} but its report says passed".format(report.nodeid, raised.__name__))
    if report.when == "call" and _settings["stop_on_timeout"] and "Timeout" in record.get("msg", "") \
            and _state.get("session") is not None:
        _state["session"].shouldstop = "repo-agent: a test went over its time budget"
    if teardown:  # once per test, after its fixtures undid their patches (a call's forgery is caught here too:
        _report_integrity(full=False, extra=extra)  # any integrity record, wherever it is, makes the verdict error)
    elif extra:
        _send({"e": "integrity", "problems": extra})
    _send(record)


def pytest_sessionfinish(session, exitstatus):
    _report_integrity(full=True)
    _send({"e": "finish", "exitstatus": int(exitstatus)})
