"""pytest plugin of repo-agent's driver: streams each result to the driver as it happens (Python >= 3.6).

The driver, not the test process, decides the verdict. Records go through a pipe opened before
pytest started (not a file the tests could find and rewrite afterwards), each with a sequence number
and an HMAC under a key read from a second pipe when this module is imported, which happens before
any conftest or test module (hence before any code the model wrote) runs. Code that later writes to
the pipe cannot sign its records, so forged, replayed or late records are detected by the driver.
"""

import fcntl
import hashlib
import hmac
import inspect
import json
import os
import random


def _take_fd(variable):
    value = os.environ.pop(variable, None)
    if value is None:
        return None
    fd = int(value)
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, random.randint(300, 900))
    os.close(fd)
    return moved


def _read_key():
    fd = _take_fd("REPO_AGENT_KEY_FD")
    if fd is None:
        return None
    chunks = []
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def _make_sender():
    key = _read_key()
    fd = _take_fd("REPO_AGENT_RESULT_FD")
    counter = [0]

    def send(record):
        if fd is None:
            return
        body = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)
        seq = counter[0]
        counter[0] += 1
        mac = hmac.new(key or b"", "{}:{}".format(seq, body).encode("utf-8"), hashlib.sha256).hexdigest()
        data = '{{"seq":{},"mac":"{}","r":{}}}\n'.format(seq, mac, body).encode("utf-8")
        while data:
            written = os.write(fd, data)
            data = data[written:]

    return send


_send = _make_sender()
del _make_sender, _read_key, _take_fd


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


def pytest_collectreport(report):
    if report.failed:
        _send({"e": "collect_error", "id": report.nodeid, "msg": _short(report)})


def pytest_collection_finish(session):
    root = os.path.realpath(str(session.config.rootdir))
    for item in session.items:
        _send({"e": "collected", "id": item.nodeid, "params": _params_digest(item), "defined_in": _defined_in(item, root)})


def pytest_runtest_logreport(report):
    record = {"e": "test", "id": report.nodeid, "when": report.when, "outcome": report.outcome}
    if hasattr(report, "wasxfail"):
        record["xfail"] = True
    if report.failed:
        record["msg"] = _short(report)
    _send(record)


def pytest_sessionfinish(session, exitstatus):
    _send({"e": "finish", "exitstatus": int(exitstatus)})
