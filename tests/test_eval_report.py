"""`repo-agent report show`: reports rebuilt from traces alone; bad files reported, never fatal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SUITE = Path(__file__).resolve().parent.parent / "eval" / "suites" / "bundled_suite.json"


@pytest.fixture(scope="module")
def scripted_run(tmp_path_factory) -> Path:
    """A finished eval of a scripted model on 3 bundled tasks, 2 rollouts each."""
    from typer.testing import CliRunner

    from repo_agent.cli import app
    from repo_agent.suites.task import load_suite, save_suite, with_tasks

    root = tmp_path_factory.mktemp("scripted")
    bundled = load_suite(SUITE)
    suite = save_suite(with_tasks(bundled, bundled.tasks[:3], suite_id="bundled-small"), root / "suite.json")
    replies = root / "replies.json"
    replies.write_text(json.dumps([
        "let me look",  # a parse error
        '{"type":"tool_call","name":"list_files","args":{"rel_dir":"."}}',
        '{"type":"tool_call","name":"list_files","args":{"rel_dir":"."}}',  # same call, same result: a loop
        '{"type":"final","summary":"done"}',
    ]))
    run = root / "run"
    result = CliRunner().invoke(app, ["eval", "--suite", str(suite), "--trace-dir", str(run), "--rollouts", "2",
                                      "--llm-provider", "scripted", "--model", str(replies), "--loop-policy", "warn"])
    assert result.exit_code == 0, result.output
    return run


def test_report_show_rebuilds_the_same_report_from_traces_only(cli, scripted_run, tmp_path):
    original = json.loads((scripted_run / "report.json").read_text())
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "traces").mkdir()
    for trace in (scripted_run / "traces").glob("*.json"):
        (copy / "traces" / trace.name).write_bytes(trace.read_bytes())
    (copy / "config.json").write_bytes((scripted_run / "config.json").read_bytes())  # no results.jsonl, no report
    result = cli("report", "show", copy)
    assert result.exit_code == 0, result.output
    rebuilt = json.loads((copy / "report.json").read_text())
    assert rebuilt["overall"] == original["overall"] and rebuilt["per_task"] == original["per_task"]
    overall = rebuilt["overall"]
    assert overall["rollouts"] == 6 and overall["avg_steps"] == 4.0
    assert overall["parse_errors"] == 6 and overall["parse_error_rate"] == 0.25
    assert overall["loop_detections"] >= 6 and overall["runs_writing_file"] == 0.0
    assert overall["pass_rate"] == 0.0 and overall["pass@2"] == 0.0
    assert "| pass_rate | 0.000 |" in (copy / "report.md").read_text()


def test_corrupt_and_unfinished_traces_are_reported_and_skipped(cli, scripted_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "traces").mkdir()
    traces = sorted((scripted_run / "traces").glob("*.json"))
    for trace in traces:
        (run / "traces" / trace.name).write_bytes(trace.read_bytes())
    (run / "config.json").write_bytes((scripted_run / "config.json").read_bytes())
    (run / "traces" / traces[0].name).write_text('{"schema": "repo-agent/trace", "task_')  # torn
    unfinished = json.loads(traces[1].read_text())
    unfinished["status"] = "running"
    (run / "traces" / traces[1].name).write_text(json.dumps(unfinished))
    result = cli("report", "show", run, "--out", tmp_path / "out" / "r.json")
    assert result.exit_code == 0
    report = json.loads((tmp_path / "out" / "r.json").read_text())
    assert report["finished_rollouts"] == len(traces) - 2 and report["expected_rollouts"] == len(traces)
    assert any("not valid JSON" in p for p in report["problems"])
    assert any("unfinished rollout" in p for p in report["problems"])
    markdown = (tmp_path / "out" / "r.md").read_text()
    assert "The run is incomplete" in markdown and "## Skipped files" in markdown


def test_report_show_on_a_folder_without_a_run_is_a_clear_error(cli, tmp_path):
    result = cli("report", "show", tmp_path)
    assert result.exit_code == 2 and "no finished traces" in result.stderr
