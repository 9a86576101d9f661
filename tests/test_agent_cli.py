"""End-to-end tests of the agent loop through the real `repo-agent run` command."""

import json
from pathlib import Path

import pytest

from conftest import BUNDLED_ROOT, BUNDLED_SUITE, tree_digest
from repo_agent.agent import AgentConfig, run_episode
from repo_agent.models.scripted import ScriptedModel
from repo_agent.suites.task import load_suite
from repo_agent.traces import conversation_at, read_trace

TASK_IDS = [t.task_id for t in load_suite(BUNDLED_SUITE).tasks]


def run_cli(cli, tmp_path, task, *extra):
    if "--llm-provider" not in extra:
        extra = ("--llm-provider", "oracle", *extra)
    result = cli("run", "--suite", BUNDLED_SUITE, "--task", task, "--trace-dir", tmp_path, *extra)
    assert result.exit_code == 0, result.output
    task_id = task if "/" in task else f"bundled/{task}"
    trace_path = tmp_path / "traces" / (task_id.replace("/", "__") + "__r0.json")
    assert f"trace: {trace_path}" in result.output
    return read_trace(trace_path)


def write_script(tmp_path, replies):
    path = tmp_path / "replies.json"
    path.write_text(json.dumps(replies))
    return path


@pytest.mark.parametrize("protocol", ["json", "native"])
def test_oracle_fixes_every_bundled_task(cli, tmp_path, protocol):
    before = tree_digest(BUNDLED_ROOT)
    for seed, task in enumerate(TASK_IDS):
        trace = run_cli(cli, tmp_path / task.replace("/", "_"), task, "--tool-protocol", protocol, "--seed", str(seed))
        assert trace["metrics"]["passed"], (task, trace["verdict"])
        assert trace["stop_reason"] == "final"
        assert trace["metrics"]["parse_errors"] == 0 and trace["metrics"]["wrote_file"]
        assert trace["tool_protocol"] == protocol
    assert tree_digest(BUNDLED_ROOT) == before, "a run modified the source suite"


def test_oracle_rollouts_differ_by_seed(cli, tmp_path):
    plans = {tuple(s["action"].get("name", "final") for s in run_cli(cli, tmp_path / str(seed), "gcd", "--seed", str(seed))["steps"])
             for seed in range(6)}
    assert len(plans) > 1


GARBAGE = [
    "I think the bug is in gcd.",
    'Sure! Here is my call: {"type":"tool_call","name":"list_files","args":{}}',
    '```json\n{"type":"final","summary":"x"}\n```',
    '{"type":"tool_call","name":"run_tests","args":{}}',
    '{"type":"tool_call","name":"read_file","args":{"rel_path":3}}',
    '{"type":"tool_call","name":"read_file","args":{"rel_path":"../../../etc/passwd"}}',
    '{"type":"tool_call","name":"write_file","args":{"rel_path":"/tmp/evil.py","content":"x"}}',
    '{"type":"tool_call","name":"write_file","args":{"rel_path":"../correct_python_programs/gcd.py","content":"x"}}',
    "[1,2,3]",
    "",
    "never reached",
]


def test_garbage_is_classified_refused_and_budgeted(cli, tmp_path):
    before = tree_digest(BUNDLED_ROOT)
    trace = run_cli(cli, tmp_path, "gcd", "--llm-provider", "scripted", "--model", write_script(tmp_path, GARBAGE),
                    "--max-iters", "10", "--no-early-stop")
    kinds = [(s["parse_error"] or {}).get("kind") for s in trace["steps"]]
    assert kinds == ["invalid_json", "extra_text", "extra_text", "unknown_tool", "bad_args", None, None, None,
                     "not_object", "empty"]
    assert trace["stop_reason"] == "max_iters" and trace["metrics"]["steps"] == 10
    assert trace["metrics"]["parse_errors"] == 7 and trace["metrics"]["tool_errors"] == 3
    for step in trace["steps"][5:8]:
        assert step["tool_ok"] is False
        assert "outside the workspace" in step["tool_output"] or "absolute paths are refused" in step["tool_output"]
    for step in trace["steps"]:
        assert step["result_message"]["role"] == "user"
        assert step["result_message"]["content"].startswith("[tool_result]\n")
    assert "ERROR: invalid_json" in trace["steps"][0]["result_message"]["content"]
    assert not trace["metrics"]["passed"]
    assert tree_digest(BUNDLED_ROOT) == before
    assert not Path("/tmp/evil.py").exists()


def test_trace_rebuilds_exactly_what_the_model_saw(tmp_path):
    suite = load_suite(BUNDLED_SUITE)
    task = suite.task("gcd")
    model = ScriptedModel([
        '{"type":"tool_call","name":"list_files","args":{"rel_dir":"."}}',
        "oops",
        '{"type":"tool_call","name":"read_file","args":{"rel_path":"python_programs/gcd.py"}}',
        '{"type":"tool_call","name":"write_file","args":{"rel_path":"python_programs/gcd.py","content":"def gcd(a, b):\\n    return a if b == 0 else gcd(b, a % b)\\n"}}',
        '{"type":"final","summary":"swapped the recursive arguments"}',
    ])
    trace = run_episode(suite, task, model, AgentConfig(test_policy="on_write"), tmp_path / "traces" / "t.json")
    assert trace["metrics"]["passed"] and trace["stop_reason"] == "final"
    assert len(model.seen) == len(trace["steps"]) == 5
    for k, seen in enumerate(model.seen):
        assert conversation_at(trace, k) == seen
    on_disk = read_trace(tmp_path / "traces" / "t.json")
    assert [conversation_at(on_disk, k) for k in range(5)] == model.seen
    assert "[TESTS PASS]" in trace["steps"][3]["result_message"]["content"]
    assert seen[0]["role"] == "system" and seen[1]["content"].startswith("GOAL:\nFix gcd")


def test_loops_are_detected_warned_or_stopped(cli, tmp_path):
    read = '{"type":"tool_call","name":"read_file","args":{"rel_path":"python_programs/gcd.py"}}'
    other = '{"type":"tool_call","name":"list_files","args":{}}'
    script = write_script(tmp_path, [read, read, other, read, other, read])
    warned = run_cli(cli, tmp_path / "warn", "gcd", "--llm-provider", "scripted", "--model", script, "--max-iters", "6")
    assert [s["loop"] for s in warned["steps"]] == [None, "repeat", None, "cycle", "cycle", "cycle"]
    assert "[loop_warning]" in warned["steps"][1]["result_message"]["content"]
    assert warned["metrics"]["loop_detections"] == 4
    stopped = run_cli(cli, tmp_path / "stop", "gcd", "--llm-provider", "scripted", "--model", script,
                      "--loop-policy", "stop")
    assert stopped["stop_reason"] == "loop" and len(stopped["steps"]) == 2


def test_final_policy_keeps_a_failing_episode_going(cli, tmp_path):
    final = '{"type":"final","summary":"done"}'
    script = write_script(tmp_path, [final, final])
    trace = run_cli(cli, tmp_path, "gcd", "--llm-provider", "scripted", "--model", script, "--test-policy", "final")
    assert trace["steps"][0]["test_snippet"].startswith("[TESTS FAIL]")
    assert trace["stop_reason"] == "model_error"  # the script ran out: the episode was not ended by final
    never = run_cli(cli, tmp_path / "never", "gcd", "--llm-provider", "scripted", "--model", script)
    assert never["stop_reason"] == "final" and len(never["steps"]) == 1


def test_hanging_task_is_cut_and_secrets_stay_out(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-abcdefghijklmnop")
    leak = 'I will use sk-live-abcdefghijklmnop now'
    script = write_script(tmp_path, [leak, '{"type":"final","summary":"gave up"}'])
    trace = run_cli(cli, tmp_path, "bitcount", "--llm-provider", "scripted", "--model", script, "--no-early-stop")
    assert not trace["metrics"]["passed"] and trace["verdict"]["timeouts"] >= 1
    text = next((tmp_path / "traces").glob("*.json")).read_text()
    assert "sk-live-abcdefghijklmnop" not in text and "[redacted]" in text


def test_unknown_task_and_provider_are_clear_errors(cli, tmp_path):
    result = cli("run", "--suite", BUNDLED_SUITE, "--task", "nope", "--trace-dir", tmp_path, "--llm-provider", "oracle")
    assert result.exit_code != 0 and "no task 'nope'" in result.output
    result = cli("run", "--suite", BUNDLED_SUITE, "--task", "gcd", "--trace-dir", tmp_path)
    assert result.exit_code != 0 and "Missing option '--llm-provider'" in result.output  # no default model
    result = cli("run", "--suite", BUNDLED_SUITE, "--task", "gcd", "--trace-dir", tmp_path, "--llm-provider", "openai")
    assert result.exit_code != 0 and "needs --model" in result.output
    result = cli("run", "--suite", BUNDLED_SUITE, "--task", "gcd", "--llm-provider", "gpt", "--trace-dir", tmp_path)
    assert result.exit_code != 0 and "--llm-provider" in result.output


def test_loop_detection_keys_on_the_action_not_the_call_id(tmp_path):
    """Native replies carry a fresh id per call: four identical calls are still a loop."""
    call = {"type": "function", "function": {"name": "read_file", "arguments": json.dumps({"rel_path": "python_programs/gcd.py"})}}
    replies = [{"content": "", "tool_calls": [dict(call, id=f"call_{i}")]} for i in range(4)]
    suite = load_suite(BUNDLED_SUITE)
    config = AgentConfig(max_iters=4, tool_protocol="native", loop_policy="off")
    trace = run_episode(suite, suite.task("gcd"), ScriptedModel(replies), config, tmp_path / "t.json")
    assert [s["loop"] for s in trace["steps"]] == [None, "repeat", "repeat", "repeat"]
    assert trace["metrics"]["loop_detections"] == 3
