"""Half-written run folders, built directly, never block a resume: a rollout run whose config.json is
empty, cut or missing, a folder left by a kill before its first write, and the pipeline's stage record.
(Torn results lines, lost rows and unfinished traces: tests/test_rollouts.py; training checkpoints:
tests/test_checkpoints.py and tests/test_training_resume.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import BUNDLED_SUITE

TASKS = 3
ORACLE = ("--llm-provider", "oracle", "--allow-oracle")  # a reference ceiling: these tasks include held-out ones


@pytest.fixture(scope="module")
def small_suite(tmp_path_factory) -> Path:
    from repo_agent.suites.task import load_suite, save_suite, with_tasks

    bundled = load_suite(BUNDLED_SUITE)
    return save_suite(with_tasks(bundled, bundled.tasks[:TASKS], suite_id="bundled-three"),
                      tmp_path_factory.mktemp("suite") / "three.json")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, small_suite) -> Path:
    from repo_agent.cli import app
    from typer.testing import CliRunner

    run = tmp_path_factory.mktemp("rollouts") / "run"
    result = CliRunner().invoke(app, ["eval", "--suite", str(small_suite), "--trace-dir", str(run), "--seed", "5", *ORACLE])
    assert result.exit_code == 0, result.output
    return run


def copy_run(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target)
    return target


def snapshot(run: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (run / "traces").glob("*.json")}


@pytest.mark.parametrize("damage", ["empty", "cut", "missing"])
def test_a_lost_run_config_is_rebuilt_when_every_trace_matches(cli, finished_run, small_suite, tmp_path, damage):
    run = copy_run(finished_run, tmp_path / "run")
    config = run / "config.json"
    before, traces = config.read_text(), snapshot(run)
    if damage == "empty":  # what a power cut can leave of a file created just before it
        config.write_text("")
    elif damage == "cut":
        config.write_text(before[: len(before) // 2])
    else:
        config.unlink()

    result = cli("eval", "--suite", small_suite, "--trace-dir", run, "--seed", "5", *ORACLE)

    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())
    assert f"all {TASKS} readable traces match this command" in said
    assert f"0 rollouts run, {TASKS} already finished" in said
    assert snapshot(run) == traces  # nothing rerun
    assert json.loads(config.read_text())["seed"] == 5 and json.loads(config.read_text())["suite"] == json.loads(before)["suite"]


@pytest.mark.parametrize("flags, named", [
    (["--seed", "6"], "seed"),
    (["--seed", "5", "--max-iters", "7"], "agent settings"),
    (["--seed", "5", "--llm-provider", "scripted", "--model", "echo"], "provider"),
])
def test_without_a_readable_config_traces_of_another_run_are_refused(cli, finished_run, small_suite, tmp_path, flags, named):
    """The cheapest way to slip a different run past the check: break config.json and resume with other settings."""
    run = copy_run(finished_run, tmp_path / "run")
    (run / "config.json").write_text('{"schema": "repo-agent/run", "suite": {"suite')
    rows = (run / "results.jsonl").read_text()

    result = cli("eval", "--suite", small_suite, "--trace-dir", run, *ORACLE, *flags)

    assert result.exit_code == 2, result.output
    said = " ".join(result.stderr.split())
    assert "is unreadable" in said and f"{TASKS} of its {TASKS} traces come from a different run" in said and named in said
    assert "--redo" in said
    assert (run / "results.jsonl").read_text() == rows  # the refused run touched nothing it would need


def test_prefs_reports_the_repair_too(cli, finished_run, small_suite, tmp_path):
    run = copy_run(finished_run, tmp_path / "run")
    (run / "config.json").write_text("")
    # an eval folder: the command name lives in extra_config, which no trace records, so prefs may reuse
    # these rollouts (same suite, provider, agent settings and seeds); with a readable config it may not
    result = cli("prefs", "--suite", small_suite, "--trace-dir", run, "--seed", "5", "--out", tmp_path / "pairs.jsonl",
                 "--llm-provider", "oracle", "--allow-held-out")
    assert result.exit_code == 0, result.output
    assert f"repaired: {run / 'config.json'} is unreadable" in " ".join(result.stderr.split())


def test_a_folder_killed_before_its_first_write_is_simply_used(cli, small_suite, tmp_path):
    """Earlier versions made traces/ before writing config.json; a kill in between left this folder."""
    run = tmp_path / "run"
    (run / "traces").mkdir(parents=True)
    (run / "results.jsonl").write_text("")
    (run / ".config.json.123.456.tmp").write_text('{"sche')

    result = cli("eval", "--suite", small_suite, "--trace-dir", run, *ORACLE)

    assert result.exit_code == 0, result.output
    assert f"{TASKS} rollouts run, 0 already finished" in result.stderr
    assert not list(run.glob(".*.tmp"))


def test_pipeline_records_every_stage_as_it_ends_even_a_failed_one(cli, tmp_path):
    """pipeline.json is rewritten atomically after each stage: a cut one from an older run is replaced,
    and a failing stage is recorded with its exit code before the pipeline stops."""
    out = tmp_path / "pipeline"
    out.mkdir()
    (out / "pipeline.json").write_text('{"stages": [{"stage": "teacher')  # cut by a crash of an older version
    missing = tmp_path / "no_such_suite.json"

    result = cli("pipeline", "--out", out, "--train-suite", missing, "--test-suite", missing)

    assert result.exit_code != 0
    record = json.loads((out / "pipeline.json").read_text())
    assert record["finished"] is False
    (stage,) = record["stages"]
    assert stage["stage"] == "teacher rollouts + preference pairs" and stage["exit_code"] == result.exit_code
    assert stage["command"][:2] == ["repo-agent", "prefs"] and str(missing) in stage["command"]
    assert not list(out.glob(".*.tmp"))
