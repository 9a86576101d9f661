"""The rollout engine end to end: the real `repo-agent eval` CLI on the bundled suite, with the oracle,
scripted and openai providers (the last against a local fake server)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fake_openai_server import FakeOpenAIServer
from repo_agent.rollouts import rollout_seed

REPO = Path(__file__).resolve().parent.parent
SUITE = REPO / "eval" / "suites" / "bundled_suite.json"
ORACLE = ("--llm-provider", "oracle", "--allow-oracle")  # a reference ceiling on tasks that include held-out ones
BUNDLED_TASKS = len(json.loads(SUITE.read_text())["tasks"])
TASKS = 4  # tasks in the small suite most tests use (runs are short on a shared 2-core machine)


@pytest.fixture(scope="module")
def small_suite(tmp_path_factory) -> Path:
    """The first TASKS tasks of the bundled suite, as a suite file of their own."""
    from repo_agent.suites.task import load_suite, save_suite, with_tasks

    bundled = load_suite(SUITE)
    return save_suite(with_tasks(bundled, bundled.tasks[:TASKS], suite_id="bundled-small"),
                      tmp_path_factory.mktemp("suite") / "small_suite.json")


def rows_of(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]


def traces_of(run_dir: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((run_dir / "traces").glob("*.json"))}


def test_oracle_eval_writes_run_dir_and_resumes_as_noop(cli, tmp_path):
    run = tmp_path / "run"
    result = cli("eval", "--suite", SUITE, "--trace-dir", run, "--num-workers", "3", "--seed", "7", *ORACLE)
    assert result.exit_code == 0, result.output

    config = json.loads((run / "config.json").read_text())
    assert config["suite"]["suite_id"] == "bundled" and len(config["suite"]["sha256"]) == 64
    assert config["provider"]["provider"] == "oracle" and config["rollouts"] == 1 and config["seed"] == 7
    assert config["agent"]["max_iters"] == 20 and config["repo_agent_version"]

    rows = rows_of(run)
    traces = traces_of(run)
    assert len(rows) == len(traces) == BUNDLED_TASKS
    assert len({r["rollout_id"] for r in rows}) == BUNDLED_TASKS
    for row in rows:
        trace = traces[row["rollout_id"]]
        assert trace["status"] == "finished" and row["passed"] is True
        assert row["seed"] == trace["seed"] == rollout_seed(7, row["task_id"], row["rollout_index"])
        assert (run / row["trace"]).is_file()
    assert len({r["seed"] for r in rows}) == BUNDLED_TASKS  # every rollout its own seed

    report = json.loads((run / "report.json").read_text())
    assert report["overall"]["pass_rate"] == 1.0 and "pass@2" not in report["overall"]
    assert report["overall"]["rollouts"] == BUNDLED_TASKS and report["overall"]["runs_writing_file"] == 1.0
    assert (run / "report.md").read_text().startswith("# Evaluation: oracle:oracle on bundled")

    mtimes = {p: p.stat().st_mtime_ns for p in (run / "traces").glob("*.json")}
    again = cli("eval", "--suite", SUITE, "--trace-dir", run, "--num-workers", "3", "--seed", "7", *ORACLE)
    assert again.exit_code == 0
    assert f"0 rollouts run, {BUNDLED_TASKS} already finished" in again.stderr
    assert rows_of(run) == rows  # nothing duplicated
    assert {p: p.stat().st_mtime_ns for p in (run / "traces").glob("*.json")} == mtimes  # nothing rerun


def test_more_rollouts_extend_a_run_but_a_different_config_is_refused(cli, tmp_path, small_suite):
    run = tmp_path / "run"
    assert cli("eval", "--suite", small_suite, "--trace-dir", run, *ORACLE).exit_code == 0
    grown = cli("eval", "--suite", small_suite, "--trace-dir", run, "--rollouts", "2", *ORACLE)
    assert grown.exit_code == 0 and f"{TASKS} rollouts run, {TASKS} already finished" in grown.stderr

    refused = cli("eval", "--suite", small_suite, "--trace-dir", run, "--rollouts", "2", "--max-iters", "5", *ORACLE)
    assert refused.exit_code == 2
    assert "agent.max_iters: 20 -> 5" in refused.stderr and "--redo" in refused.stderr
    assert len(rows_of(run)) == 2 * TASKS  # the refused run touched nothing

    redone = cli("eval", "--suite", small_suite, "--trace-dir", run, "--max-iters", "5", "--redo", *ORACLE)
    assert redone.exit_code == 0 and f"{TASKS} rollouts run, 0 already finished" in redone.stderr
    assert len(rows_of(run)) == TASKS and len(traces_of(run)) == TASKS


def test_resume_repairs_torn_line_missing_row_and_unfinished_trace(cli, tmp_path, small_suite):
    run = tmp_path / "run"
    assert cli("eval", "--suite", small_suite, "--trace-dir", run, *ORACLE).exit_code == 0
    rows = rows_of(run)
    by_id = {r["rollout_id"]: r for r in rows}
    lost_row, torn_row, unfinished = sorted(by_id)[:3]
    # lost_row: finished trace, row lost (killed between the trace write and the append)
    # torn_row: the append was torn mid-line (kill -9 during the write)
    # unfinished: trace left running (killed mid-episode); its row must not survive
    kept = [r for r in rows if r["rollout_id"] not in (lost_row, torn_row)]
    torn = json.dumps(by_id[torn_row])[:40]
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept) + torn)
    path = run / "traces" / f"{unfinished}.json"
    trace = json.loads(path.read_text())
    trace["status"], trace["steps"] = "running", trace["steps"][:1]
    path.write_text(json.dumps(trace))

    result = cli("eval", "--suite", small_suite, "--trace-dir", run, *ORACLE)
    assert result.exit_code == 0, result.stderr
    assert "cut a torn last line" in result.stderr
    # both rows come back from their finished traces; only the unfinished rollout runs again
    assert f"1 rollouts run, {TASKS - 3} already finished, 2 repaired" in result.stderr
    after = rows_of(run)
    assert sorted(r["rollout_id"] for r in after) == sorted(by_id)
    assert {r["rollout_id"]: r["passed"] for r in after} == {r["rollout_id"]: r["passed"] for r in rows}
    assert traces_of(run)[unfinished]["status"] == "finished"


def test_scripted_provider_metrics_count_parse_errors_and_writes(cli, tmp_path, small_suite):
    replies = tmp_path / "replies.jsonl"
    replies.write_text("\n".join(json.dumps(r) for r in [
        "Sure! Here is the fix:\n```python\nprint(1)\n```",
        '{"type":"tool_call","name":"write_file","args":{"rel_path":"notes.txt","content":"x"}}',
        '{"type":"tool_call","name":"read_file","args":{"rel_path":"conftest.py"}}',
        '{"type":"final","summary":"done"}',
    ]) + "\n")
    run = tmp_path / "run"
    result = cli("eval", "--suite", small_suite, "--trace-dir", run, "--llm-provider", "scripted", "--model", replies)
    assert result.exit_code == 0, result.stderr
    overall = json.loads((run / "report.json").read_text())["overall"]
    assert overall["rollouts"] == TASKS and overall["pass_rate"] == 0.0
    assert overall["parse_errors"] == TASKS and overall["parse_error_rate"] == 0.25
    assert overall["runs_with_parse_error"] == 1.0 and overall["runs_writing_file"] == 1.0
    assert overall["avg_steps"] == 4.0 and overall["stop_reasons"] == {"final": TASKS}


def test_a_line_replaced_by_itself_is_not_counted_as_changing_a_file(cli, tmp_path):
    """The cheapest way to look like an editor: replace a line with itself. It used to be reported as an
    edit ('replaced 1 occurrence') and counted in runs_modifying_files."""
    from repo_agent.suites.task import load_suite, save_suite, with_tasks

    bundled = load_suite(SUITE)
    suite = save_suite(with_tasks(bundled, (bundled.task("gcd"),), suite_id="gcd-only"), tmp_path / "gcd_suite.json")
    same = {"rel_path": "python_programs/gcd.py", "old": "    if b == 0:", "new": "    if b == 0:"}
    replies = tmp_path / "replies.jsonl"
    replies.write_text("\n".join(json.dumps(r) for r in [
        json.dumps({"type": "tool_call", "name": "replace_in_file", "args": same}), '{"type":"final","summary":"fixed"}',
    ]) + "\n")
    run = tmp_path / "run"
    result = cli("eval", "--suite", suite, "--trace-dir", run, "--llm-provider", "scripted", "--model", replies,
                 "--toolset", "edit", "--test-policy", "on_write")
    assert result.exit_code == 0, result.stderr
    overall = json.loads((run / "report.json").read_text())["overall"]
    assert overall["rollouts"] == 1 and overall["pass_rate"] == 0.0 and overall["runs_modifying_files"] == 0.0
    step = json.loads(next((run / "traces").glob("*.json")).read_text())["steps"][0]
    assert step["tool_ok"] is False and "nothing would change" in step["tool_output"]
    assert not step.get("changed_files") and step["test_snippet"] is None  # no change, so no test run under on_write


def test_openai_provider_against_fake_server_counts_tokens_and_keeps_key_out(cli, tmp_path, small_suite, monkeypatch):
    secret = "sk-test-abcdefghijklmnopqrstuvwx"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    replies = ['{"type":"tool_call","name":"list_files","args":{"rel_dir":"."}}', "I think the bug is...",
               '{"type":"final","summary":"no change"}']
    run = tmp_path / "run"
    with FakeOpenAIServer(replies, delay_s=0.05) as server:
        result = cli("eval", "--suite", small_suite, "--trace-dir", run, "--llm-provider", "openai", "--model", "fake-model",
                     "--base-url", server.base_url, "--num-workers", "8")
        requests = list(server.requests)
    assert result.exit_code == 0, result.stderr
    assert len(requests) == 3 * TASKS  # three calls per rollout, no retries
    assert len({r["seed"] for r in requests}) == TASKS  # each rollout sends its own seed
    overall = json.loads((run / "report.json").read_text())["overall"]
    assert overall["parse_errors"] == TASKS and overall["avg_steps"] == 3.0
    traces = traces_of(run)
    # the prose reply is stopped early, before the stream's usage chunk: its prompt tokens are unknown
    assert [s["prompt_tokens"] is None for t in traces.values() for s in t["steps"]] == [False, True, False] * TASKS
    expected_in = sum(s["prompt_tokens"] or 0 for t in traces.values() for s in t["steps"])
    assert overall["tokens_in"] == expected_in > 0
    assert overall["tokens_out"] == sum(s["completion_tokens"] for t in traces.values() for s in t["steps"]) > 0
    for path in run.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace"), path


def test_non_tty_output_is_one_json_line_per_rollout(cli, tmp_path, small_suite):
    run = tmp_path / "run"
    result = cli("eval", "--suite", small_suite, "--trace-dir", run, "--num-workers", "2", *ORACLE)
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert [e["done"] for e in events] == list(range(1, TASKS + 1))
    assert all(e["total"] == TASKS and e["event"] == "rollout_finished" for e in events)
    assert events[-1]["pass_rate_so_far"] == 1.0


def test_missing_api_key_is_a_clear_error_before_any_rollout(cli, tmp_path, small_suite, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = cli("eval", "--suite", small_suite, "--trace-dir", tmp_path / "run", "--llm-provider", "openai",
                 "--model", "m", "--base-url", "https://api.example.invalid/v1")
    assert result.exit_code == 2 and "OPENAI_API_KEY" in result.stderr
    assert not list((tmp_path / "run" / "traces").glob("*.json"))


@pytest.mark.parametrize("bad", [0, -1])
def test_library_rejects_nonsense_counts(tmp_path, bad):
    from repo_agent.agent import AgentConfig
    from repo_agent.models.base import ProviderConfig
    from repo_agent.rollouts import run_rollouts
    from repo_agent.suites.task import load_suite

    with pytest.raises(ValueError, match="must be >= 1"):
        run_rollouts(load_suite(SUITE), ProviderConfig("oracle", "oracle"), AgentConfig(), tmp_path, num_workers=bad)
    assert not os.listdir(tmp_path)
