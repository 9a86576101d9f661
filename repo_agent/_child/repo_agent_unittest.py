"""unittest results of a repository's own runner, streamed to the driver (Python >= 3.6).

For tasks whose tests run under the repository's runner script (Django's `tests/runtests.py`) or
`python -m unittest`, this module takes the place of the pytest plugin: it wraps the methods of
`unittest.result.TestResult` (every result class a runner uses derives from it) and sends one signed
record per test through repo_agent_results' sender, which read its key before any code of the
repository was imported. A test is named as unittest names it (`str(test)`); the first line of its
docstring, which a verbose runner prints in its place, travels along as `alias`. A test over its
CPU-time budget (ITIMER_PROF) or over the wall-clock backstop (ITIMER_REAL) gets an exception raised
inside it, which unittest records as an error. repo_agent_integrity's checks run after every test and
at the end, as with pytest.
"""

import os
import resource
import runpy
import signal
import sys
import time
from unittest import result as _result

import repo_agent_integrity
import repo_agent_results

_send = repo_agent_results._send
_pending = {}  # id(test) -> record being built between startTest and stopTest
_timeout = [None, None]  # CPU seconds, wall-clock seconds (the backstop)
_fired = [False]


class TestTimeout(Exception):
    """Raised inside a test that went over its CPU-time budget or its wall-clock backstop."""


def _on_cpu(signum, frame):
    _fired[0] = True
    raise TestTimeout("Timeout: the test used more than {} s of CPU time".format(_timeout[0]))


def _on_alarm(signum, frame):
    _fired[0] = True
    raise TestTimeout("Timeout: the test ran longer than {} s (wall-clock backstop)".format(_timeout[1]))


def _cpu():
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _alias(test):
    try:
        doc = test.shortDescription()
    except Exception:
        return None
    return doc.strip() if isinstance(doc, str) and doc.strip() else None


def _message(err):
    if not err:
        return ""
    kind, value = err[0], err[1]
    text = "{}: {}".format(getattr(kind, "__name__", "Exception"), value)
    return " | ".join(line for line in text.splitlines() if line.strip())[:300]


def _mark(test, outcome, err=None, kind=None, xfail=False):
    record = _pending.get(id(test))
    if record is None:  # no startTest: an error of a class or module fixture (setUpClass ...)
        _send({"e": "test", "id": str(test), "when": "setup", "outcome": outcome, "msg": _message(err)})
        return
    if record["outcome"] == "failed" and outcome != "failed":
        return  # a failing subtest, then the test's own success: it failed
    record["outcome"] = outcome
    if err is not None:
        record["msg"] = _message(err)
    if kind:
        record["kind"] = kind
    if xfail:
        record["xfail"] = True


def _wrap(name, after):
    original = getattr(_result.TestResult, name)

    def method(self, *args, **kwargs):
        value = original(self, *args, **kwargs)
        after(self, *args)
        return value

    method.__name__ = name
    setattr(_result.TestResult, name, method)


def _start(self, test):
    _pending[id(test)] = {"e": "test", "id": str(test), "when": "call", "outcome": None, "_cpu": _cpu()}
    alias = _alias(test)
    if alias:
        _pending[id(test)]["alias"] = alias
    _fired[0] = False
    if _timeout[0]:
        signal.setitimer(signal.ITIMER_PROF, float(_timeout[0]))
    if _timeout[1]:
        signal.setitimer(signal.ITIMER_REAL, float(_timeout[1]))


def _stop(self, test):
    if _timeout[0]:
        signal.setitimer(signal.ITIMER_PROF, 0)
    if _timeout[1]:
        signal.setitimer(signal.ITIMER_REAL, 0)
    record = _pending.pop(id(test), None)
    if record is None:
        return
    record["cpu"] = round(_cpu() - record.pop("_cpu"), 4)
    if record["outcome"] is None:
        record["outcome"] = "failed"
        record["msg"] = "the runner reported no result for this test"
    if _fired[0] and record["outcome"] != "failed":  # the test caught the timeout and went on
        record["outcome"], record["msg"] = "failed", "Timeout: the test went over its time budget"
    _check(full=False)
    _send(record)


def _check(full):
    problems = repo_agent_integrity.problems(None, full=full)
    if problems:
        _send({"e": "integrity", "problems": problems})


def _is_failure(self, test, err):
    return err is not None and issubclass(err[0], getattr(test, "failureException", AssertionError))


def install(per_test_cpu=None, per_test_timeout=None):
    _timeout[0], _timeout[1] = per_test_cpu, per_test_timeout
    if per_test_cpu:
        signal.signal(signal.SIGPROF, _on_cpu)
    if per_test_timeout:
        signal.signal(signal.SIGALRM, _on_alarm)
    _wrap("startTest", _start)
    _wrap("stopTest", _stop)
    _wrap("addSuccess", lambda self, test: _mark(test, "passed"))
    _wrap("addFailure", lambda self, test, err: _mark(test, "failed", err))
    _wrap("addError", lambda self, test, err: _mark(test, "failed", err, kind="error"))
    _wrap("addSkip", lambda self, test, reason: _mark(test, "skipped"))
    _wrap("addExpectedFailure", lambda self, test, err: _mark(test, "skipped", xfail=True))
    _wrap("addUnexpectedSuccess", lambda self, test: _mark(test, "passed", xfail=True))
    _wrap("addSubTest", lambda self, test, subtest, err: None if err is None else _mark(
        test, "failed", err, kind=None if _is_failure(self, test, err) else "error"))


def run(argv, per_test_cpu=None, per_test_timeout=None):
    """Run `argv` (`-m module args...` or `script args...`) as `python argv...` would, then send the end."""
    install(per_test_cpu, per_test_timeout)
    repo_agent_integrity.capture()
    code = 0
    try:
        if argv[:1] == ["-m"] and len(argv) > 1:
            sys.argv = [argv[1]] + list(argv[2:])
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        elif argv:
            script = os.path.abspath(argv[0])
            sys.argv = list(argv)
            sys.path.insert(0, os.path.dirname(script))
            runpy.run_path(script, run_name="__main__")
        else:
            raise SystemExit("repo-agent: no runner script given")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    _check(full=True)
    _send({"e": "finish", "exitstatus": int(code)})
    sys.exit(code)
