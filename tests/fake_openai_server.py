"""A local OpenAI-compatible chat-completions server for tests and benchmarks (stdlib only).

    with FakeOpenAIServer(replies=[...], delay_s=0.5) as server:
        ... --llm-provider openai --base-url {server.base_url} --model fake ...

Replies are chosen per conversation, not per request: the reply for a request is
`replies[number of assistant messages already in it]` (the last one repeats), so many concurrent
rollouts each get the same script whatever the interleaving. A reply is a string (the assistant
content) or a dict with "content" and/or "tool_calls" (OpenAI shape). For anything else pass
`reply_fn(request_json) -> str | dict`.

Edges worth testing are built in: `delay_s` (fixed latency per request, slept without holding a lock,
so concurrent requests overlap like a real server), `fail_first` (the first N requests get HTTP
`fail_status`, e.g. 500 or 429, to exercise client retries) and `requests` (every request body seen,
for assertions). Token usage is reported as len(text) // 4 + 1, deterministic.

`gate` paces a client by progress instead of by the clock: `gate.limit(n)` lets n more requests
through and holds the rest, `gate.wait_answered(n)` blocks until n requests were let through in
all, and `gate.drop_held()` closes the held requests without an answer (their client was killed).
So a test can stop a client at an exact point and know it cannot have finished, however fast it is.
Streaming: a request with `"stream": true` is answered with server-sent events like vLLM's: the
content in chunks of `stream_chunk_chars` characters (one "token" each), `stream_delay_s` apart, then
a chunk with the finish reason, a usage chunk when `stream_options.include_usage` asks for one, and
`data: [DONE]`. `streams[n]` says how request n's stream went: chunks it had, chunks written, and
whether the client hung up before the end (a client that stops early closes the connection).

Run it standalone for manual tries or benchmarks:
    python tests/fake_openai_server.py --port 8765 --delay 0.5 --replies replies.json
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

ReplyFn = Callable[[dict[str, Any]], "str | dict[str, Any]"]

FINAL_REPLY = '{"type":"final","summary":"done"}'


def approx_tokens(text: str) -> int:
    return len(text) // 4 + 1


class RequestGate:
    """Admission control for the fake server's requests (unlimited until `limit` is called)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._budget: int | None = None
        self._generation = 0
        self.answered = 0

    def limit(self, more: int) -> None:
        with self._cond:
            self._budget = more
            self._cond.notify_all()

    def unlimited(self) -> None:
        with self._cond:
            self._budget = None
            self._cond.notify_all()

    def drop_held(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def enter(self, client_alive: Callable[[], bool] = lambda: True) -> bool:
        """Wait for admission; False when the request was dropped while held, or its client is gone
        (a request of a killed client that reaches the gate late never takes the next client's budget)."""
        with self._cond:
            generation = self._generation
            while True:
                if self._generation != generation:  # checked first: a dropped request never takes new budget
                    return False
                if self._budget is None or self._budget > 0:
                    break
                self._cond.wait()
            if self._budget is not None and not client_alive():  # only a paced run needs the check
                return False
            if self._budget is not None:
                self._budget -= 1
            self.answered += 1
            self._cond.notify_all()
            return True

    def wait_answered(self, count: int, timeout_s: float, alive: Callable[[], bool] = lambda: True) -> None:
        """Block until `count` requests were let through in all; raises if `alive()` turns False first."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self.answered < count:
                if not alive():
                    raise AssertionError(f"the client ended after {self.answered} of {count} requests")
                if time.monotonic() > deadline:
                    raise AssertionError(f"only {self.answered} of {count} requests within {timeout_s}s")
                self._cond.wait(timeout=0.1)
class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up (a closed stream) is normal here; anything else is still printed."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


class FakeOpenAIServer:
    def __init__(self, replies: list[Any] | None = None, *, delay_s: float = 0.0, reply_fn: ReplyFn | None = None,
                 fail_first: int = 0, fail_status: int = 500, host: str = "127.0.0.1", port: int = 0,
                 stream_chunk_chars: int = 4, stream_delay_s: float = 0.0):
        self.replies = list(replies) if replies else [FINAL_REPLY]
        self.delay_s = delay_s
        self.stream_chunk_chars = stream_chunk_chars
        self.stream_delay_s = stream_delay_s
        self.streams: dict[int, dict[str, Any]] = {}
        self.reply_fn = reply_fn
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.requests: list[dict[str, Any]] = []
        self.gate = RequestGate()
        self._lock = threading.Lock()
        self._httpd = _QuietServer((host, port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> "FakeOpenAIServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.gate.drop_held()
        self.gate.unlimited()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "FakeOpenAIServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def record(self, body: dict[str, Any]) -> int:
        """Store a request; returns its 0-based number."""
        with self._lock:
            self.requests.append(body)
            return len(self.requests) - 1

    def choose_reply(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.reply_fn is not None:
            reply = self.reply_fn(body)
        else:
            turn = sum(1 for m in body.get("messages", []) if m.get("role") == "assistant")
            reply = self.replies[min(turn, len(self.replies) - 1)]
        return {"content": reply} if isinstance(reply, str) else dict(reply)


def completion_body(body: dict[str, Any], reply: dict[str, Any], number: int) -> dict[str, Any]:
    content = reply.get("content")
    tool_calls = reply.get("tool_calls")
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    prompt_text = json.dumps(body.get("messages", []))
    completion_text = (content or "") + (json.dumps(tool_calls) if tool_calls else "")
    prompt_tokens, completion_tokens = approx_tokens(prompt_text), approx_tokens(completion_text)
    return {
        "id": f"chatcmpl-fake-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fake"),
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if tool_calls else "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def _peer_alive(sock: socket.socket) -> bool:
    """False once the client closed its end (a killed process's sockets are closed by the kernel); a
    live client waiting for its answer sends nothing, so its socket is not readable."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return True
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except OSError:
        return False
def stream_events(body: dict[str, Any], reply: dict[str, Any], number: int, chunk_chars: int) -> list[dict[str, Any]]:
    """The chat.completion.chunk events of one streamed reply (content only; usage last if asked for)."""
    full = completion_body(body, reply, number)
    content = reply.get("content") or ""
    base = {"id": full["id"], "object": "chat.completion.chunk", "created": full["created"], "model": full["model"]}
    events = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
    for start in range(0, len(content), max(1, chunk_chars)):
        piece = content[start:start + chunk_chars]
        events.append({**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append({**base, "choices": [], "usage": full["usage"]})
    return events


def _handler_for(server: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like a real server

        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read stderr
            pass

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/models"):
                self._send(200, {"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "tests"}]})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self._send(400, {"error": {"message": "request body is not JSON"}})
                return
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            if not server.gate.enter(lambda: _peer_alive(self.connection)):
                self.close_connection = True  # held, then dropped: its client is gone
                return
            number = server.record(body)
            if server.delay_s:
                time.sleep(server.delay_s)
            if number < server.fail_first:
                self._send(server.fail_status, {"error": {"message": f"injected failure {number + 1}/{server.fail_first}"}})
                return
            if body.get("stream"):
                self._stream(stream_events(body, server.choose_reply(body), number, server.stream_chunk_chars), number)
            else:
                self._send(200, completion_body(body, server.choose_reply(body), number))

        def _stream(self, events: list[dict[str, Any]], number: int) -> None:
            """Server-sent events in chunked transfer encoding; stops when the client hangs up."""
            record = server.streams[number] = {"events": len(events) + 1, "written": 0, "client_closed": False}
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for event in [*(f"data: {json.dumps(e)}\n\n" for e in events), "data: [DONE]\n\n"]:
                    data = event.encode("utf-8")
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()
                    record["written"] += 1
                    if server.stream_delay_s:
                        time.sleep(server.stream_delay_s)
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                record["client_closed"] = True
                self.close_connection = True

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before every answer")
    parser.add_argument("--replies", type=Path, help="JSON list of replies (default: always final)")
    args = parser.parse_args()
    replies = json.loads(args.replies.read_text(encoding="utf-8")) if args.replies else None
    server = FakeOpenAIServer(replies, delay_s=args.delay, host=args.host, port=args.port)
    print(f"serving {server.base_url} (delay {args.delay}s); Ctrl-C stops", flush=True)
    try:
        server._httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
