"""`--llm-provider together`: TogetherModel drives real `repo-agent run` episodes against the fake
Together chat endpoint (tests/fake_together_server.py), through the real `together` SDK."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from fake_together_server import FakeTogether
from repo_agent.models.together_api import sdk_base_url
from repo_agent.protocol import Final, ToolCall, render_action
from repo_agent.suites.task import load_suite

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "eval" / "suites" / "bundled_suite.json"
CLI = ROOT / ".venv" / "bin" / "repo-agent"
SECRET = "tg-secret-key-never-to-be-seen-91c2"


@pytest.fixture
def fake():
    with FakeTogether() as server:
        yield server


def _run(fake: FakeTogether, trace_dir: Path, *extra: str, env_key: str | None = SECRET, base_url: str | None = None):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(trace_dir)}
    if env_key:
        env["TOGETHER_API_KEY"] = env_key
    return subprocess.run(
        [str(CLI), "run", "--suite", str(SUITE), "--task", "gcd", "--llm-provider", "together",
         "--model", "meta-llama/Llama-3.3-70B-Instruct-Turbo", "--base-url", base_url or f"{fake.url}/v1",
         "--trace-dir", str(trace_dir), *extra],
        capture_output=True, text=True, timeout=120, env=env, cwd=ROOT,
    )


def _trace(trace_dir: Path) -> dict:
    return json.loads(next((trace_dir / "traces").glob("*.json")).read_text(encoding="utf-8"))


def test_episode_fixes_the_task_through_a_rate_limit(fake, tmp_path):
    suite = load_suite(SUITE)
    task = suite.task("gcd")
    (path, fixed), = suite.reference_text(task).items()
    fake.state.chat_replies = [
        render_action(ToolCall("read_file", {"rel_path": path, "max_chars": 4000})),
        "Let me think about this first.",  # a parse error: counted, not fatal
        render_action(ToolCall("write_file", {"rel_path": path, "content": fixed})),
        render_action(Final("Fixed the recursive call.")),
    ]
    fake.state.chat_failures = 1  # the first request is answered 429; the SDK's backoff retries it

    completed = _run(fake, tmp_path, "--max-retries", "2")

    assert completed.returncode == 0, completed.stdout + completed.stderr
    trace = _trace(tmp_path)
    assert trace["provider"] == "together" and trace["stop_reason"] == "final"
    assert trace["metrics"]["passed"] is True
    assert trace["metrics"]["parse_errors"] == 1 and trace["metrics"]["steps"] == 4
    chats = [r for r in fake.state.requests if r.path == "/v1/chat/completions"]
    assert len(chats) == 5  # one 429 + four answered
    assert chats[0].body == chats[1].body  # the retry resent the same request
    # What the model was sent is exactly the conversation the trace records.
    last_sent = chats[-1].body["messages"]
    expected = list(trace["prompt_messages"])
    for step in trace["steps"][:-1]:
        expected += [step["assistant_message"], step["result_message"]]
    assert last_sent == expected
    assert chats[-1].body["model"] == "meta-llama/Llama-3.3-70B-Instruct-Turbo"
    assert trace["metrics"]["tokens_in"] == sum(sum(len(str(m["content"])) for m in c.body["messages"]) // 4 for c in chats[1:])
    assert {c.authorization for c in chats} == {f"Bearer {SECRET}"}
    assert SECRET not in completed.stdout + completed.stderr + json.dumps(trace)


def test_native_function_calling_episode(fake, tmp_path):
    suite = load_suite(SUITE)
    (path, fixed), = suite.reference_text(suite.task("gcd")).items()
    fake.state.chat_replies = [
        {"name": "write_file", "arguments": {"rel_path": path, "content": fixed}},
        {"name": "final", "arguments": {"summary": "Fixed the recursive call."}},
    ]

    completed = _run(fake, tmp_path, "--tool-protocol", "native")

    assert completed.returncode == 0, completed.stdout + completed.stderr
    trace = _trace(tmp_path)
    assert trace["tool_protocol"] == "native" and trace["metrics"]["passed"] is True
    assert [s["action"]["name"] if s["action"].get("type") == "tool_call" else "final" for s in trace["steps"]] == ["write_file", "final"]
    chats = [r for r in fake.state.requests if r.path == "/v1/chat/completions"]
    assert {t["function"]["name"] for t in chats[0].body["tools"]} >= {"list_files", "read_file", "grep", "write_file"}


def test_retries_are_bounded_and_the_final_failure_is_recorded(fake, tmp_path):
    fake.state.chat_failures = 10

    completed = _run(fake, tmp_path, "--max-retries", "1")

    assert completed.returncode == 0, completed.stdout + completed.stderr
    trace = _trace(tmp_path)
    assert trace["stop_reason"] == "model_error"
    assert "429" in trace["error"] and "RateLimitError" in trace["error"]
    assert len([r for r in fake.state.requests if r.path == "/v1/chat/completions"]) == 2  # first try + 1 retry
    assert fake.state.chat_failures == 8


def test_missing_key_is_a_clear_error_before_any_request(fake, tmp_path):
    completed = _run(fake, tmp_path, env_key=None, base_url="https://api.together.example")

    assert completed.returncode == 2
    assert "TOGETHER_API_KEY" in completed.stdout + completed.stderr
    assert fake.state.requests == []


@pytest.mark.parametrize("given, expected", [
    ("http://127.0.0.1:9/v1", "http://127.0.0.1:9"),
    ("http://127.0.0.1:9/v1/", "http://127.0.0.1:9"),
    ("https://api.together.xyz", "https://api.together.xyz"),
    (None, None),
])
def test_base_url_is_given_to_the_sdk_without_v1(given, expected):
    assert sdk_base_url(given) == expected
