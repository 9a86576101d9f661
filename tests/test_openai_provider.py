"""The openai provider against a real HTTP server on 127.0.0.1 that misbehaves on purpose."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import BUNDLED_SUITE
from repo_agent.traces import read_trace

FIX = "def gcd(a, b):\n    if b == 0:\n        return a\n    return gcd(b, a % b)\n"
ACTIONS = [
    {"type": "tool_call", "name": "read_file", "args": {"rel_path": "python_programs/gcd.py", "max_chars": 4000}},
    {"type": "tool_call", "name": "write_file", "args": {"rel_path": "python_programs/gcd.py", "content": FIX}},
    {"type": "final", "summary": "swapped the arguments of the recursive call"},
]


class FlakyChatServer(ThreadingHTTPServer):
    """Answers chat completions with the next scripted action; `faults` is consumed one per request."""

    daemon_threads = True

    def __init__(self, faults):
        super().__init__(("127.0.0.1", 0), Handler)
        self.faults = list(faults)
        self.requests = []
        self.lock = threading.Lock()

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server = self.server
        with server.lock:
            server.requests.append({"body": body, "auth": self.headers.get("Authorization")})
            fault = server.faults.pop(0) if server.faults else None
        if fault == "drop":
            self.connection.close()  # no response at all: the client sees a dropped connection
            return
        if fault == "slow":
            time.sleep(3)
        if isinstance(fault, int):
            self._send(fault, {"error": {"message": f"injected {fault}", "type": "server_error"}}, {"retry-after-ms": "20"})
            return
        step = sum(1 for m in body["messages"] if m["role"] == "assistant")
        content = json.dumps(ACTIONS[min(step, len(ACTIONS) - 1)], separators=(",", ":"))
        self._send(200, {
            "id": "cmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100 + step, "completion_tokens": 20, "total_tokens": 120 + step},
        })

    def _send(self, status, payload, headers=None):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server_factory():
    servers = []

    def start(faults=()):
        server = FlakyChatServer(faults)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def run_against(cli, tmp_path, server, *extra):
    result = cli("run", "--suite", BUNDLED_SUITE, "--task", "gcd", "--llm-provider", "openai", "--model", "test-model",
                 "--base-url", server.base_url, "--trace-dir", tmp_path, "--request-timeout", "1", *extra)
    assert result.exit_code == 0, result.output
    return read_trace(tmp_path / "traces" / "bundled__gcd__r0.json")


def test_episode_survives_429_500_drop_and_slow_reply(cli, tmp_path, server_factory, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local-test-key-123456")
    server = server_factory([429, 500, "drop", "slow"])
    trace = run_against(cli, tmp_path, server, "--max-retries", "4")
    assert trace["metrics"]["passed"] and trace["stop_reason"] == "final"
    assert trace["metrics"]["steps"] == 3
    assert len(server.requests) == 3 + 4  # every injected fault was retried
    assert trace["metrics"]["tokens_in"] == 100 + 101 + 102 and trace["metrics"]["tokens_out"] == 60
    assert server.requests[0]["auth"] == "Bearer sk-local-test-key-123456"
    assert server.requests[0]["body"]["seed"] == 0 and server.requests[0]["body"]["temperature"] == 0.0
    assert "sk-local-test-key" not in (tmp_path / "traces" / "bundled__gcd__r0.json").read_text()


def test_final_failure_is_a_recorded_episode_error(cli, tmp_path, server_factory):
    server = server_factory([500] * 10)
    trace = run_against(cli, tmp_path, server, "--max-retries", "2")
    assert trace["stop_reason"] == "model_error"
    assert "500" in trace["error"]
    assert len(server.requests) == 3
    assert trace["verdict"] is not None and not trace["metrics"]["passed"]  # the driver still measured it
