"""Warm verdict workers: one bubblewrap sandbox and one interpreter with pytest imported, reused by many
sealed test runs, each forked fresh (the per-run guarantees are kept by _child/verdict_server.py).

A worker serves runs that a cold run would give the same sandbox: the same interpreter (the driver's
own; per-suite interpreters such as BugsInPy venvs run cold), the same hidden folders, no interpreter
start-up variables of the task's own. One worker serves one run at a time; the pool keeps as many as
runs go on at once. A worker that dies, hangs, cannot set a run up or leaves a process behind is
retired, and the caller reruns that verdict cold (WorkerFailed): a verdict is never guessed.

REPO_AGENT_VERDICT_WORKERS=cold (or set_verdict_workers("cold")) turns workers off.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .sandbox import PidsCgroup, Sandbox, kill_group, new_pids_cgroup

CHILD_DIR = Path(__file__).resolve().parent / "_child"
STAGING = Path("/tmp/.repo-agent-host-tmp")  # verdict_server.STAGING
START_TIMEOUT_S = 60.0
MAX_IDLE = max(2, os.cpu_count() or 1)  # idle workers kept, all keys together
REPLY_MARGIN_S = 15.0  # beyond the run's wall-clock backstop, before a silent worker counts as hung
HEADER = struct.Struct("!I")
MODES = ("warm", "cold")
_mode = os.environ.get("REPO_AGENT_VERDICT_WORKERS", "warm")


class WorkerFailed(RuntimeError):
    """The worker could not give this run a trustworthy end; the verdict must be rerun cold."""


def set_verdict_workers(mode: str) -> None:
    global _mode
    if mode not in MODES:
        raise ValueError(f"verdict workers must be one of {', '.join(MODES)}, got {mode!r}")
    _mode = mode


def verdict_workers() -> str:
    return _mode


def why_cold(box: Sandbox, python: str, runner: str, env: dict[str, str], root: Path | None = None) -> str | None:
    """None when a warm worker can run this test run (in `root`, when given) exactly as a cold run would;
    else why not."""
    if _mode != "warm":
        return "verdict workers are off"
    if POOL.unavailable:
        return POOL.unavailable
    if not box.isolated:
        return "no sandbox (workers need bubblewrap)"
    if not sys.platform.startswith("linux") or not hasattr(os, "pidfd_open") or not hasattr(socket, "send_fds"):
        return "needs Linux and Python >= 3.9"
    if os.path.abspath(python) != os.path.abspath(sys.executable):  # a venv's python links to its base: not the same
        return "the task has its own interpreter"
    if runner != "pytest":
        return f"runner {runner!r}"
    if any(name.startswith("PYTHON") and name not in ("PYTHONPATH",) for name in env):
        return "the task sets interpreter start-up variables"
    if root is not None and Path(root).parent.parent != Path(tempfile.gettempdir()).resolve():
        return "the run's folder is not in the temp folder"  # a worker sees only that folder's children
    return None


@dataclass(frozen=True)
class WorkerKey:
    python: str
    hide: tuple[str, ...]
    visible: tuple[str, ...]


class Worker:
    def __init__(self, box: Sandbox, key: WorkerKey, env: dict[str, str]):
        self.key = key
        self.scratch = Path(tempfile.mkdtemp(prefix="repo-agent-worker-"))
        self.log = open(self.scratch.parent / (self.scratch.name + ".log"), "w+b")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock = ours
        launcher = (f"import sys; sys.path.append({str(CHILD_DIR)!r}); import verdict_server; "
                    f"verdict_server.serve({theirs.fileno()})")
        cmd = box.wrap([key.python, "-c", launcher], workdir=self.scratch, hide=[Path(h) for h in key.hide],
                       visible=[Path(v) for v in key.visible], binds=[(Path(tempfile.gettempdir()).resolve(), STAGING)])
        self.cgroup: PidsCgroup | None = new_pids_cgroup()
        if self.cgroup is not None:
            cmd = self.cgroup.wrap(cmd)
        try:
            self.proc = subprocess.Popen(cmd, cwd=self.scratch, env=env,
                                         stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                         pass_fds=(theirs.fileno(),), start_new_session=True)
        except OSError as exc:
            if self.cgroup is not None:
                self.cgroup.close()
            raise WorkerFailed(f"the worker could not start: {exc}") from exc
        finally:
            theirs.close()
        self.runs = 0
        self.idle_since = time.monotonic()
        reply = self._reply(START_TIMEOUT_S)
        if not reply.get("ready"):
            self.close()
            raise WorkerFailed(f"the worker did not start: {reply}")

    def _reply(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        data = b""
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                raise WorkerFailed(f"no answer from the worker within {timeout:g}s{self._log_tail()}")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise WorkerFailed(f"the worker ended (exit {self.proc.poll()}){self._log_tail()}")
            data += chunk
        try:
            return json.loads(data)
        except ValueError as exc:
            raise WorkerFailed(f"unreadable answer from the worker: {data[:200]!r}") from exc

    def _log_tail(self) -> str:
        try:
            self.log.seek(max(0, self.log.seek(0, os.SEEK_END) - 1000))
            tail = self.log.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""
        return f": {tail.splitlines()[-1]}" if tail else ""

    def run(self, request: dict[str, Any], fds: tuple[int, int, int], wall_s: float) -> dict[str, Any]:
        """Send one run; its exit code as a cold run would report it, or WorkerFailed."""
        body = json.dumps(dict(request, wall_s=wall_s)).encode("utf-8")
        try:
            socket.send_fds(self.sock, [HEADER.pack(len(body))], list(fds))
            self.sock.sendall(body)
        except OSError as exc:
            raise WorkerFailed(f"the worker is gone: {exc}{self._log_tail()}") from exc
        reply = self._reply(wall_s + REPLY_MARGIN_S)
        self.runs += 1
        if reply.get("setup_error"):
            raise WorkerFailed(f"the worker could not set the run up: {reply['setup_error']}")
        if reply.get("leftover_processes"):
            raise WorkerFailed(f"{reply['leftover_processes']} process(es) of the run outlived it")
        if not reply.get("timed_out") and not isinstance(reply.get("exit_code"), int):
            raise WorkerFailed(f"the run ended without a status: {reply}")
        return reply

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        if self.proc.poll() is None:
            kill_group(self.proc.pid)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if self.cgroup is not None:
            self.cgroup.close()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)
        shutil.rmtree(self.scratch, ignore_errors=True)


class Pool:
    """Idle workers by key; a run takes one (or starts one) and gives it back when it ends well."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: dict[WorkerKey, list[Worker]] = {}
        self.busy: set[Worker] = set()
        self.started = 0  # workers started so far (a run that reuses one does not count)
        self.unavailable: str | None = None  # why a worker could not start here (runs then go cold)

    def take(self, box: Sandbox, key: WorkerKey, env: dict[str, str]) -> Worker:
        with self.lock:
            workers = self.idle.get(key) or []
            while workers:
                worker = workers.pop()
                if worker.alive():
                    self.busy.add(worker)
                    return worker
                worker.close()
            self.started += 1
        try:
            worker = Worker(box, key, env)
        except WorkerFailed as exc:
            self.unavailable = f"no worker could start: {exc}"[:300]
            raise
        with self.lock:
            self.busy.add(worker)
        return worker

    def give_back(self, worker: Worker) -> None:
        """Keep `worker` for the next run with its key; at most MAX_IDLE wait (a long process that meets
        many suites would otherwise keep one worker per suite), the longest idle is closed first."""
        evicted = []
        with self.lock:
            self.busy.discard(worker)
            if worker.alive():
                worker.idle_since = time.monotonic()
                self.idle.setdefault(worker.key, []).append(worker)
                waiting = sorted((w for ws in self.idle.values() for w in ws), key=lambda w: w.idle_since)
                for old in waiting[:max(0, len(waiting) - MAX_IDLE)]:
                    self.idle[old.key].remove(old)
                    evicted.append(old)
            else:
                evicted.append(worker)
        for old in evicted:
            old.close()

    def retire(self, worker: Worker) -> None:
        with self.lock:
            self.busy.discard(worker)
        worker.close()

    def close(self) -> None:
        with self.lock:
            workers = [w for ws in self.idle.values() for w in ws]
            self.idle.clear()
        for worker in workers:
            worker.close()


POOL = Pool()
atexit.register(POOL.close)


def run_in_worker(box: Sandbox, key: WorkerKey, request: dict[str, Any], fds: tuple[int, int, int],
                  wall_s: float, worker_env: dict[str, str]) -> dict[str, Any]:
    """One run on a pooled worker (started, if none is idle, with `worker_env`: the driver's scrubbed
    environment for test processes); a worker that fails is closed and WorkerFailed raised."""
    worker = POOL.take(box, key, worker_env)
    try:
        reply = worker.run(request, fds, wall_s)
    except BaseException:
        POOL.retire(worker)
        raise
    POOL.give_back(worker)
    return reply
