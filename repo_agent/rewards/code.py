"""The single-turn code reward in DeepCoder's style: the last fenced code block of a completion is run
against the problem's tests in the sandbox, one process per test with its own timeout; 1.0 only if
every test passes (at most MAX_TESTS, the longest first), else 0.0; no code block: 0.0.

Tests (the `tests` keyword, one list per completion; each test a dict, see _child/code_test.py):
function-call tests {"kind": "call", "fn", "args", "expected"} compared as plain data (an object whose
__eq__ always says True is not plain data), stdin/stdout tests {"kind": "stdio", "input", "output"}
compared line by line after stripping, and source tests {"kind": "source", "code"} (HumanEval's asserts).
A test passes only when the test process prints a per-run secret token after the test returned, so
exiting early, printing a marker or killing the process cannot pass.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..sandbox import Sandbox, interpreter_folders, resolve_sandbox
from ..secrets import scrubbed_environ

MAX_TESTS = 15
PER_TEST_TIMEOUT_S = 6.0
MEMORY_BYTES = 1024**3
CHILD = Path(__file__).resolve().parents[1] / "_child" / "code_test.py"
_FENCE = re.compile(r"```[^\n`]*\n(.*?)```", re.S)


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


def run_test(program: str, test: dict[str, Any], *, sandbox: Sandbox, timeout_s: float = PER_TEST_TIMEOUT_S) -> bool:
    """One test in its own sandboxed process. True only when it printed the secret token."""
    token = secrets.token_hex(16)
    request = json.dumps({"token": token, "program": program, "test": test,
                          "limits": {"memory_bytes": MEMORY_BYTES, "cpu_seconds": int(timeout_s) + 2, "file_bytes": 1 << 20}})
    with tempfile.TemporaryDirectory(prefix="repo-agent-code-") as tmp:
        argv = sandbox.wrap([sys.executable, "-I", str(CHILD)], workdir=Path(tmp), visible=[*interpreter_folders(sys.executable), CHILD.parent])
        env = {**scrubbed_environ(), "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}
        if sandbox.isolated:
            env["HOME"] = "/tmp/home"
        try:
            proc = subprocess.run(argv, input=request, capture_output=True, text=True, timeout=timeout_s, cwd=tmp,
                                  env=env, start_new_session=True)
        except subprocess.TimeoutExpired:
            return False
    lines = proc.stdout.rstrip("\n").splitlines()
    return proc.returncode == 0 and bool(lines) and lines[-1] == f"{token} pass"


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
