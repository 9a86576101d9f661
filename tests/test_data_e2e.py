"""End to end: `repo-agent prefs` runs branched oracle rollouts (2 per bundled task, test policy on_write:
one writes a proven-wrong fix, the other the right one, from the same state), scripted bad rollouts are
mixed in, and pairs from all three sources come out, pass `data check` and load with `datasets`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import BUNDLED_SUITE
from repo_agent.traces import conversation_at, read_trace
from test_data_helpers import SUITE, bad_rollouts, oracle, read_jsonl

TASKS = len(SUITE.tasks)
TEACHER = ["--llm-provider", "oracle", "--test-policy", "on_write", "--oracle-mistake-rate", "0.3", "--branch-pairs"]


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    """One real `prefs` run over the bundled suite (every task x 2 branched oracle rollouts), then
    scripted bad rollouts of gcd added beside it; returns (run dir, prefs output, CLI result)."""
    from typer.testing import CliRunner

    from repo_agent.cli import app

    run = tmp_path_factory.mktemp("teacher")
    out = run / "_prefs.jsonl"
    result = CliRunner().invoke(app, ["prefs", "--suite", str(BUNDLED_SUITE), "--rollouts", "2", "--num-workers", "2",
                                      "--trace-dir", str(run), "--out", str(out), *TEACHER, "--allow-held-out"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    gcd_first = read_trace(next(run.rglob("bundled__gcd__r0*.json")))["steps"][0]["raw_output"]
    bad_rollouts(run / "scripted", gcd_first)
    return run, out, result


def test_prefs_runs_rollouts_then_mines_pairs(teacher_run):
    run, out, _ = teacher_run
    traces = [p for p in run.rglob("*.json") if p.parent.name == "traces" and "scripted" not in p.parts]
    assert len(traces) == 2 * TASKS
    config = json.loads((run / "config.json").read_text())
    assert config["provider"]["teacher"] == {"mistake_rate": 0.3, "branch_pairs": True}
    rows, meta = read_jsonl(out), read_jsonl(out.with_name("_prefs.meta.jsonl"))
    assert len(rows) == len(meta) == TASKS  # each branched pair gives exactly one pair: its two writes
    for m in meta:
        assert {m["chosen"]["rollout_id"][-3:], m["rejected"]["rollout_id"][-3:]} == {"_r0", "_r1"}
        assert m["outcome_gap"] in ("tests", "refused") and m["rejected"]["mistake"] and not m["chosen"]["mistake"]
        assert m["chosen"]["tests"] == "pass" and m["chosen"]["detail"] == "write_file"
    for path in traces:  # the follower says whose prefix it shares
        trace = read_trace(path)
        assert trace["branch"]["role"] == ("follower" if trace["rollout_index"] == 1 else "leader")
    stats = json.loads(out.with_name("_prefs.stats.json").read_text())
    assert stats["rollouts_read"] == 2 * TASKS and stats["tasks_read"] == TASKS and stats["check"]["ok"]
    assert sum(stats["pairs_by_outcome_gap"].values()) == TASKS and stats["min_outcome_gap"] == "step"


def test_mixed_traces_give_all_three_sources_and_pass_check(cli, teacher_run, tmp_path):
    run, _, _ = teacher_run
    for fmt in ("json", "trl", "native"):
        out = tmp_path / f"pairs_{fmt}.jsonl"
        result = cli("pairs-extract", "--trace-dir", run, "--out", out, "--format", fmt, "--allow-held-out")
        assert result.exit_code == 0, result.output
        meta = read_jsonl(out.with_name(f"pairs_{fmt}.meta.jsonl"))
        by_source = {s: sum(1 for m in meta if m["source"] == s) for s in ("divergence", "validity", "loops")}
        assert all(by_source.values()), by_source
        stats = json.loads(out.with_name(f"pairs_{fmt}.stats.json").read_text())
        assert stats["pairs_by_source"] == by_source
        checked = cli("data", "check", out)
        assert checked.exit_code == 0, checked.output
        assert "OK" in checked.output


def test_every_output_loads_with_datasets(cli, teacher_run, tmp_path):
    from datasets import load_dataset

    run, _, _ = teacher_run
    for command, fmt, columns in [
        ("sft-extract", "json", {"messages"}), ("sft-extract", "native", {"messages", "tools"}),
        ("sft-extract", "trl", {"prompt", "completion"}), ("pairs-extract", "json", {"input", "preferred_output", "non_preferred_output"}),
        ("pairs-extract", "trl", {"prompt", "chosen", "rejected"}), ("pairs-extract", "native", {"input", "preferred_output", "non_preferred_output"}),
    ]:
        out = tmp_path / f"{command}_{fmt}.jsonl"
        result = cli(command, "--trace-dir", run, "--out", out, "--format", fmt, "--allow-held-out")
        assert result.exit_code == 0, result.output
        dataset = load_dataset("json", data_files=str(out), split="train", cache_dir=str(tmp_path / "hf"))
        assert set(dataset.column_names) == columns
        assert len(dataset) == len(read_jsonl(out))


def test_native_traces_keep_their_bytes_and_json_traces_convert(cli, tmp_path):
    native = oracle(tmp_path / "n", "gcd", 0, protocol="native")
    out = tmp_path / "native.jsonl"
    assert cli("sft-extract", "--trace-dir", tmp_path / "n", "--out", out, "--format", "native", "--allow-held-out").exit_code == 0
    rows = read_jsonl(out)
    assert len(rows) == len(native["steps"])
    for k, row in enumerate(rows):
        prompt = [{key: v for key, v in m.items() if key != "weight"} for m in row["messages"][:-1]]
        assert prompt == conversation_at(native, k)
        assert row["tools"] == native["tools"]
        call = row["messages"][-1]["tool_calls"][0]
        assert call["function"]["name"] == native["steps"][k]["raw_tool_calls"][0]["function"]["name"]
    # a JSON-protocol trace exported as native: tool results become `tool` messages bound to call ids
    oracle(tmp_path / "j", "gcd", 0, protocol="json")
    converted = tmp_path / "converted.jsonl"
    assert cli("sft-extract", "--trace-dir", tmp_path / "j", "--out", converted, "--format", "native", "--allow-held-out").exit_code == 0
    last = read_jsonl(converted)[-1]["messages"]
    assert [m["role"] for m in last[:3]] == ["system", "user", "assistant"]
    assert all(m["role"] == "tool" and m["tool_call_id"] == last[i - 1]["tool_calls"][0]["id"]
               for i, m in enumerate(last) if i > 2 and m["role"] != "assistant")
    # same actions, same tool results, whichever protocol ran: only the system prompt and framing differ
    assert [m["content"] for m in last if m["role"] == "tool"] == [m["content"] for m in read_jsonl(out)[-1]["messages"] if m["role"] == "tool"]
