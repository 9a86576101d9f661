"""A local stand-in for the Together API: exactly the endpoints the `together` SDK (3.x) calls for
file upload, fine-tuning and chat completions, on 127.0.0.1 with a random port. No network.

What the SDK does (read from its source, together/lib/resources/files.py and resources/fine_tuning.py):
- upload: POST /v1/files (multipart form: purpose, file_name, file_type, checksum) -> 302 with a
  `Location` to PUT the bytes to and an `X-Together-File-Id` header; PUT <Location>; then
  POST /v1/files/{id}/preprocess -> FileResponse.
- create: GET /v1/fine-tunes/models/limits?model_name=..., POST /v1/fine-tunes/estimate-price,
  POST /v1/fine-tunes -> job.
- follow: GET /v1/fine-tunes/{id}, GET /v1/fine-tunes/{id}/events.
- chat: POST /v1/chat/completions (the SDK uses this path only when base_url is overridden).

Jobs advance one status per retrieve along `state.job_plan`, so a watcher sees a realistic sequence.
Every request is logged (method, path, Authorization header, parsed body) for tests to inspect.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

SUCCESS_PLAN = ("queued", "running", "running", "completed")
FAILURE_PLAN = ("queued", "running", "error")
TERMINAL = {"completed", "error", "user_error", "cancelled"}
FAKE_USER = "fakeuser"


@dataclass
class Recorded:
    method: str
    path: str
    authorization: str | None
    body: Any


@dataclass
class FakeState:
    job_plan: tuple[str, ...] = SUCCESS_PLAN
    failure_message: str = "Training failed: CUDA out of memory at step 2"
    file_processing_status: str = "COMPLETED"  # what preprocess reports; INVALID_FORMAT simulates a server-side reject
    chat_replies: list[Any] = field(default_factory=list)  # str = content; dict = a native function call
    chat_failures: int = 0  # this many chat requests answer 429 before any succeeds
    fail_next: dict[str, int] = field(default_factory=dict)  # "POST /v1/fine-tunes" -> answer 500 this many times
    requests: list[Recorded] = field(default_factory=list)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    uploads: dict[str, bytes] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    job_steps: dict[str, int] = field(default_factory=dict)
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def paths(self, method: str | None = None) -> list[str]:
        return [r.path for r in self.requests if method is None or r.method == method]


class FakeTogether:
    """Start with `with FakeTogether() as fake:`; `fake.url` is the base URL (no /v1, as the SDK wants)."""

    def __init__(self) -> None:
        self.state = FakeState()
        self._ids = itertools.count(1)
        handler = type("Handler", (_Handler,), {"fake": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeTogether":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids):04d}-fake"


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _event(kind: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"object": "fine-tune-event", "created_at": _now_iso(), "type": kind, "message": message,
            "level": "error" if kind == "job_error" else "info", **extra}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeTogether
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    # -- plumbing ---------------------------------------------------------------------------------
    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, payload: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _record(self, body: Any) -> None:
        with self.fake.state.lock:
            self.fake.state.requests.append(Recorded(self.command, urlparse(self.path).path, self.headers.get("Authorization"), body))

    def _parsed_body(self, raw: bytes) -> Any:
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            message = BytesParser(policy=email_policy).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
            return {part.get_param("name", header="content-disposition"): part.get_content() for part in message.iter_parts()}
        if content_type.startswith("application/json") and raw:
            return json.loads(raw)
        return raw

    def _dispatch(self) -> None:
        raw = self._body()
        path = urlparse(self.path).path
        body = raw if path.startswith("/upload/") else self._parsed_body(raw)
        self._record(body if not isinstance(body, bytes) else f"<{len(body)} bytes>")
        if not (self.headers.get("Authorization") or "").startswith("Bearer ") and not path.startswith("/upload/"):
            return self._send(401, {"error": {"message": "missing API key"}})
        failing = f"{self.command} {path}"
        with self.fake.state.lock:
            inject = self.fake.state.fail_next.get(failing, 0) > 0
            if inject:
                self.fake.state.fail_next[failing] -= 1
        if inject:  # like a careless proxy, the error echoes the request's credentials
            return self._send(500, {"error": {"message": f"internal error; request had {self.headers.get('Authorization')}"}})
        for method, pattern, name in _ROUTES:
            match = re.fullmatch(pattern, path)
            if method == self.command and match:
                return getattr(self, name)(body, *match.groups())
        self._send(404, {"error": {"message": f"no route {self.command} {path}"}})

    do_GET = do_POST = do_PUT = _dispatch

    # -- files --------------------------------------------------------------------------------------
    def files_create(self, form: dict[str, str]) -> None:
        file_id = self.fake.new_id("file")
        state = self.fake.state
        with state.lock:
            state.files[file_id] = {"id": file_id, "object": "file", "filename": form.get("file_name", ""),
                                    "FileType": form.get("file_type", "jsonl"), "purpose": form.get("purpose", "fine-tune"),
                                    "bytes": 0, "created_at": int(time.time()), "processing_status": "PENDING"}
        self._send(302, None, {"Location": f"{self.fake.url}/upload/{file_id}", "X-Together-File-Id": file_id})

    def files_put(self, raw: bytes, file_id: str) -> None:
        state = self.fake.state
        if file_id not in state.files:
            return self._send(404, {"error": {"message": "unknown upload"}})
        with state.lock:
            state.uploads[file_id] = raw
            state.files[file_id]["bytes"] = len(raw)
        self._send(200, {})

    def files_preprocess(self, _body: Any, file_id: str) -> None:
        state = self.fake.state
        if file_id not in state.uploads:
            return self._send(400, {"error": {"message": "file content was never uploaded"}})
        record = state.files[file_id]
        record["processing_status"] = state.file_processing_status
        valid = state.file_processing_status == "COMPLETED"
        record["validation_report"] = {"valid": valid, "file_id": file_id, "nlines": state.uploads[file_id].count(b"\n"),
                                       **({} if valid else {"error_type": "INVALID_FORMAT", "error": "server-side validation failed"})}
        self._send(200, record)

    def files_retrieve(self, _body: Any, file_id: str) -> None:
        record = self.fake.state.files.get(file_id)
        self._send(200, record) if record else self._send(404, {"error": {"message": "no such file"}})

    # -- fine-tuning ----------------------------------------------------------------------------------
    def model_limits(self, _body: Any) -> None:
        model = parse_qs(urlparse(self.path).query).get("model_name", [""])[0]
        self._send(200, {
            "model_name": model, "default_gradient_accumulation_steps": 1, "max_learning_rate": 1.0,
            "min_learning_rate": 0.0, "max_num_checkpoints": 10, "max_num_epochs": 20, "max_num_evals": 10,
            "max_seq_length_sft": 8192, "max_seq_length_dpo": 8192, "min_max_seq_length": 512,
            "merge_output_lora": True, "supports_full_training": True, "supports_reasoning": False,
            "supports_tools": True, "supports_vision": False,
            "lora_training": {"default_rank": 8, "max_batch_size": 16, "max_batch_size_dpo": 8, "max_rank": 64,
                              "min_batch_size": 1, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
            "full_training": {"max_batch_size": 8, "max_batch_size_dpo": 4, "min_batch_size": 1},
        })

    def estimate_price(self, body: dict[str, Any]) -> None:
        if body.get("training_file") not in self.fake.state.files:
            return self._send(200, {"estimation_available": False, "unavailable_reason": "train_file_not_validated"})
        self._send(200, {"estimation_available": True, "allowed_to_proceed": True, "estimated_total_price": 1.25,
                         "estimated_train_token_count": 12345, "user_limit": 100.0})

    def job_create(self, body: dict[str, Any]) -> None:
        state = self.fake.state
        if body.get("training_file") not in state.files:
            return self._send(400, {"error": {"message": f"training file {body.get('training_file')} not found"}})
        job_id = self.fake.new_id("ft")
        base = body.get("model") or (body.get("from_checkpoint") or "").split(":")[0]
        output = f"{FAKE_USER}/{base.split('/')[-1]}-{body.get('suffix') or 'ft'}-{job_id[-9:-5]}"
        job = {**body, "id": job_id, "status": "pending", "user_id": FAKE_USER, "created_at": _now_iso(),
               "updated_at": _now_iso(), "model": base, "model_output_name": output,
               "adapter_output_name": output + "-adapter", "events": []}
        with state.lock:
            state.jobs[job_id] = job
            state.job_steps[job_id] = 0
            state.events[job_id] = [_event("job_pending", "Fine-tune request created")]
        self._send(200, job)

    def job_retrieve(self, _body: Any, job_id: str) -> None:
        state = self.fake.state
        if job_id not in state.jobs:
            return self._send(404, {"error": {"message": f"fine-tune job {job_id} not found"}})
        with state.lock:
            job = state.jobs[job_id]
            if job["status"] not in TERMINAL and state.job_steps[job_id] < len(state.job_plan):
                self._advance(job, state.job_plan[state.job_steps[job_id]], state.job_steps[job_id])
                state.job_steps[job_id] += 1
            self._send(200, {**job, "events": None})

    def _advance(self, job: dict[str, Any], status: str, index: int) -> None:
        events = self.fake.state.events[job["id"]]
        total = sum(1 for s in self.fake.state.job_plan if s == "running")
        job["status"], job["updated_at"] = status, _now_iso()
        if status == "queued":
            events.append(_event("job_pending", "Job is queued"))
        elif status == "running":
            step = sum(1 for s in self.fake.state.job_plan[:index + 1] if s == "running")
            if step == 1:
                events.append(_event("training_start", "Training started"))
            events.append(_event("checkpoint_save", f"Step {step}/{total}: loss 0.{9 - step}", step=step, total_steps=total))
        elif status == "completed":
            job.update(token_count=12345, total_price=1, epochs_completed=job.get("n_epochs", 1))
            events.append(_event("training_complete", "Training completed"))
            events.append(_event("job_complete", f"Fine-tuning complete: {job['model_output_name']}"))
        elif status == "error":
            events.append(_event("job_error", self.fake.state.failure_message))
        elif status == "cancelled":
            events.append(_event("job_stopped", "Job was cancelled"))

    def job_events(self, _body: Any, job_id: str) -> None:
        if job_id not in self.fake.state.jobs:
            return self._send(404, {"error": {"message": f"fine-tune job {job_id} not found"}})
        self._send(200, {"data": list(self.fake.state.events[job_id])})

    def job_list(self, _body: Any) -> None:
        self._send(200, {"data": [{**j, "events": None} for j in self.fake.state.jobs.values()]})

    # -- inference --------------------------------------------------------------------------------------
    def chat(self, body: dict[str, Any]) -> None:
        state = self.fake.state
        with state.lock:
            if state.chat_failures > 0:
                state.chat_failures -= 1
                return self._send(429, {"error": {"message": "rate limited", "type": "rate_limit"}}, {"retry-after-ms": "20"})
            reply = state.chat_replies.pop(0) if state.chat_replies else '{"type":"final","summary":"no more scripted replies"}'
        prompt_chars = sum(len(str(m.get("content") or "")) for m in body.get("messages", []))
        if isinstance(reply, dict):  # a native function call: {"name": ..., "arguments": {...}}
            call = {"id": self.fake.new_id("call"), "type": "function", "index": 0,
                    "function": {"name": reply["name"], "arguments": json.dumps(reply["arguments"])}}
            message, finish, content = {"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls", json.dumps(call)
        else:
            message, finish, content = {"role": "assistant", "content": reply}, "stop", reply
        self._send(200, {
            "id": self.fake.new_id("chat"), "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model"), "prompt": [],
            "choices": [{"index": 0, "finish_reason": finish, "message": message}],
            "usage": {"prompt_tokens": prompt_chars // 4, "completion_tokens": len(content) // 4,
                      "total_tokens": prompt_chars // 4 + len(content) // 4},
        })


_ROUTES = (
    ("POST", r"/v1/files", "files_create"),
    ("PUT", r"/upload/([\w.-]+)", "files_put"),
    ("POST", r"/v1/files/([\w.-]+)/preprocess", "files_preprocess"),
    ("GET", r"/v1/files/([\w.-]+)", "files_retrieve"),
    ("GET", r"/v1/fine-tunes/models/limits", "model_limits"),
    ("POST", r"/v1/fine-tunes/estimate-price", "estimate_price"),
    ("POST", r"/v1/fine-tunes", "job_create"),
    ("GET", r"/v1/fine-tunes", "job_list"),
    ("GET", r"/v1/fine-tunes/([\w.-]+)/events", "job_events"),
    ("GET", r"/v1/fine-tunes/([\w.-]+)", "job_retrieve"),
    ("POST", r"/v1/chat/completions", "chat"),
)
