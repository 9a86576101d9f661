"""The result channel of repo-agent's driver: signed records to the driver, one per event (Python >= 3.6).

The driver, not the test process, decides the verdict. Records go through a pipe opened before
pytest started (not a file the tests could find and rewrite afterwards), each with a sequence number
and an HMAC under a key read from a second pipe when this module is imported, which happens before
any conftest or test module (hence before any code the model wrote) runs. Code that later writes to
the pipe cannot sign its records, so forged, replayed or late records are detected by the driver.
Everything the sender calls is bound when this module is imported (a program that later patches
json, hmac or os does not change what is sent), and the key itself lives only inside the keyed MAC
object. The pytest hooks live in repo_agent_pytest, the unittest hooks in repo_agent_unittest.
"""

import fcntl
import hashlib
import hmac
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
    mac = hmac.new(_read_key() or b"", digestmod=hashlib.sha256)
    fd = _take_fd("REPO_AGENT_RESULT_FD")
    encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)

    def send(record, _fd=fd, _copy=mac.copy, _encode=encoder.encode, _write=os.write, _counter=[0]):
        if _fd is None:
            return
        body = _encode(record)
        seq = _counter[0]
        _counter[0] += 1
        signer = _copy()
        signer.update("{}:{}".format(seq, body).encode("utf-8"))
        data = '{{"seq":{},"mac":"{}","r":{}}}\n'.format(seq, signer.hexdigest(), body).encode("utf-8")
        while data:
            written = _write(_fd, data)
            data = data[written:]

    return send


_send = _make_sender()
del _make_sender, _read_key, _take_fd
