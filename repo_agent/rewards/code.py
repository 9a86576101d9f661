"""The single-turn code reward in DeepCoder's style: the last fenced code block of a completion is run
against the problem's tests in the sandbox, one process per test with its own time budget; 1.0 only
if every test passes (at most MAX_TESTS, the longest first), else 0.0; no code block: 0.0.

Tests (the `tests` keyword, one list per completion; each test a dict):
    {"kind": "call", "fn", "args", "expected"}  fn(*args) compared with expected as plain data
    {"kind": "stdio", "input", "output"}         the program run as a script with that stdin; stripped
                                                 lines of its stdout compared
    {"kind": "source", "code"}                   statements run after the program (HumanEval's asserts)

Who decides: the program runs in its own sandboxed process (_child/code_program.py) and only answers
calls; the test (its asserts, its expected values, the comparison) runs here, in the parent, and
calls into the program for every function of it the test uses. Values come back as exact builtin data
(an object whose `__eq__` always says True cannot cross), and a pass is decided here from what this
process saw: nothing in the program's process holds an expected value or a pass decision, so exiting
early, printing a marker, reading frames, `gc` or `/proc/self` cannot pass. Time: the program's
process has a CPU-time limit (RLIMIT_CPU, the same on a loaded machine) and a wall-clock backstop
testrun.WALL_BACKSTOP times longer for code that sleeps.
"""

from __future__ import annotations

import builtins
import json
import os
import re
import select
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .._child import code_program
from ..sandbox import Sandbox, interpreter_folders, resolve_sandbox
from ..secrets import scrubbed_environ
from ..testrun import WALL_BACKSTOP

MAX_TESTS = 15
PER_TEST_TIMEOUT_S = 6.0  # CPU seconds of the program's process per test
MEMORY_BYTES = 1024**3
MAX_REPLY_BYTES = 16 * 1024**2
CHILD = Path(__file__).resolve().parents[1] / "_child" / "code_program.py"
_FENCE = re.compile(r"```[^\n`]*\n(.*?)```", re.S)


class ProgramFailed(Exception):
    """The program's process crashed, went over its budget, or answered something that is not data."""


def last_code_block(text: str) -> str | None:
    """The last fenced block (``` or ```python); None when there is none."""
    blocks = _FENCE.findall(text or "")
    return blocks[-1] if blocks else None


def completion_text(completion: Any) -> str:
    """TRL hands conversational completions as [{"role": "assistant", "content": ...}], others as text."""
    if isinstance(completion, list):
        return "".join(str(m.get("content") or "") for m in completion if isinstance(m, dict))
    return str(completion or "")


def select_tests(tests: list[dict[str, Any]], limit: int = MAX_TESTS) -> list[dict[str, Any]]:
    """DeepCoder keeps the tests with the longest inputs: at most `limit`, longest first."""
    def size(test: dict[str, Any]) -> int:
        return len(json.dumps({k: v for k, v in test.items() if k not in ("expected", "output")}))
    return sorted(tests, key=size, reverse=True)[:limit]


class _Program:
    """One sandboxed process holding the program; `call` runs one of its functions there."""

    def __init__(self, program: str, sandbox: Sandbox, cpu_s: float, script: bool = False):
        self._tmp = tempfile.TemporaryDirectory(prefix="repo-agent-code-")
        reply_r, reply_w = os.pipe()
        argv = sandbox.wrap([sys.executable, "-I", str(CHILD), str(reply_w), "script" if script else "calls"],
                            workdir=Path(self._tmp.name), visible=[*interpreter_folders(sys.executable), CHILD.parent])
        env = {**scrubbed_environ(), "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}
        if sandbox.isolated:
            env["HOME"] = "/tmp/home"
        self.deadline = time.monotonic() + cpu_s * WALL_BACKSTOP
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE if script else subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, cwd=self._tmp.name, env=env, start_new_session=True,
                                         pass_fds=(reply_w,))
        finally:
            os.close(reply_w)
        self._replies = reply_r
        self._buffer = b""
        limits = {"memory_bytes": MEMORY_BYTES, "cpu_seconds": max(1, int(round(cpu_s))), "file_bytes": 1 << 20}
        self._send({"program": program, "limits": limits})

    def _send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(message) + "\n").encode("utf-8"))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise ProgramFailed("the program's process ended") from None

    def _receive(self) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise ProgramFailed("over the wall-clock backstop")
            ready, _, _ = select.select([self._replies], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self._replies, 65536)
            if not chunk:
                raise ProgramFailed("the program's process ended")
            self._buffer += chunk
            if len(self._buffer) > MAX_REPLY_BYTES:
                raise ProgramFailed("reply too large")
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            reply = json.loads(line)
        except ValueError:
            raise ProgramFailed("an unreadable reply") from None
        if not isinstance(reply, dict):
            raise ProgramFailed("an unreadable reply")
        return reply

    def namespace(self) -> dict[str, Any]:
        """The program's names as the test sees them: functions as stand-ins that call into the process,
        plain values as data."""
        reply = self._receive()
        if "error" in reply or not isinstance(reply.get("names"), dict):
            raise ProgramFailed(str(reply.get("error") or "no names"))
        names: dict[str, Any] = {}
        for name, value in reply["names"].items():
            if value == "call":
                names[name] = _Function(self, name)
            elif isinstance(value, dict) and "v" in value:
                names[name] = self.decode(value["v"])
        return names

    def decode(self, value: Any) -> Any:
        try:
            return code_program.decode(value, {})
        except (ValueError, TypeError, KeyError, AttributeError):
            raise ProgramFailed("a reply that is not data") from None

    def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        refs = lambda value: value.name if isinstance(value, _Function) and value.program is self else None  # noqa: E731
        try:
            message = {"call": name, "args": code_program.encode(list(args), refs=refs),
                       "kwargs": {k: code_program.encode(v, refs=refs) for k, v in kwargs.items()}}
        except (TypeError, RecursionError) as exc:
            raise TypeError(f"the test passed something that is not data to {name}: {exc}") from None
        self._send(message)
        reply = self._receive()
        if "ok" in reply:
            return self.decode(reply["ok"])
        kind = getattr(builtins, str(reply.get("raise")), None)
        if isinstance(kind, type) and issubclass(kind, Exception) and kind is not AssertionError:
            raise kind(str(reply.get("msg", "")))
        raise ProgramFailed(f"{reply.get('raise')}: {reply.get('msg', '')}")

    def output(self) -> tuple[int | None, str]:
        """Script mode: (exit code, stdout) once the program ended, within the backstop."""
        assert self.proc.stdout is not None and self.proc.stdin is not None
        try:
            out, _ = self.proc.communicate(timeout=max(0.0, self.deadline - time.monotonic()))
        except (subprocess.TimeoutExpired, OSError, ValueError):
            return None, ""
        return self.proc.returncode, out[:MAX_REPLY_BYTES].decode("utf-8", errors="replace")

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, 9)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        os.close(self._replies)
        self._tmp.cleanup()

    def __enter__(self) -> "_Program":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Function:
    """The test's handle on a function of the program: calling it runs it in the program's process."""

    def __init__(self, program: _Program, name: str):
        self.program, self.name = program, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.program.call(self.name, args, kwargs)

    def __repr__(self) -> str:
        return f"<program function {self.name}>"


def as_json(value: Any) -> Any:
    """Tuples as lists, as a JSON-decoded expected value has them."""
    if isinstance(value, (list, tuple)):
        return [as_json(v) for v in value]
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    return value


def run_test(program: str, test: dict[str, Any], *, sandbox: Sandbox, timeout_s: float = PER_TEST_TIMEOUT_S) -> bool:
    """One test against a fresh sandboxed process of the program; True only when this process saw it pass."""
    kind = test.get("kind")
    try:
        if kind == "stdio":
            with _Program(program, sandbox, timeout_s, script=True) as proc:
                assert proc.proc.stdin is not None
                proc.proc.stdin.write(str(test.get("input", "")).encode("utf-8"))
                code, out = proc.output()
            got = [line.strip() for line in out.strip().splitlines()]
            want = [line.strip() for line in str(test.get("output", "")).strip().splitlines()]
            return code == 0 and got == want
        with _Program(program, sandbox, timeout_s) as proc:
            names = proc.namespace()
            if kind == "call":
                function = names.get(test["fn"])
                if not isinstance(function, _Function):
                    return False
                return as_json(function(*test.get("args", []))) == as_json(test["expected"])
            if kind == "source":
                exec(compile(test["code"], "test.py", "exec"), {"__name__": "test", **names})
                return True
    except (ProgramFailed, Exception):  # a failing assert, an exception of the program, a broken process
        return False
    raise ValueError(f"unknown test kind {kind!r} (call, stdio or source)")


def score_program(program: str | None, tests: list[dict[str, Any]], *, sandbox: Sandbox | str = "auto",
                  timeout_s: float = PER_TEST_TIMEOUT_S, stop_at_first_failure: bool = True) -> float:
    """1.0 when every selected test passes, else 0.0 (the first failure decides)."""
    if not program or not tests:
        return 0.0
    box = resolve_sandbox(sandbox) if isinstance(sandbox, str) else sandbox
    for test in select_tests(tests):
        if not run_test(program, test, sandbox=box, timeout_s=timeout_s):
            return 0.0
    return 1.0


def code_tests(prompts: Any = None, completions: Any = None, **kwargs: Any) -> list[float]:
    """TRL reward: keyword `tests` (per completion: a list of tests, or its JSON text) and optionally
    `program_prefix` (per completion: code run before the block, e.g. HumanEval's prompt with its
    imports and helpers). Completions are scored in parallel threads (each test is its own process)."""
    completions = list(completions or [])
    tests = [json.loads(t) if isinstance(t, str) else t for t in (kwargs.get("tests") or [[]] * len(completions))]
    prefixes = kwargs.get("program_prefix") or [""] * len(completions)
    box = resolve_sandbox("auto")  # bubblewrap where it works here; `auto` warns once when it does not

    def one(index: int) -> float:
        block = last_code_block(completion_text(completions[index]))
        if block is None:
            return 0.0
        return score_program(f"{prefixes[index]}\n{block}" if prefixes[index] else block, tests[index], sandbox=box)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(one, range(len(completions))))
