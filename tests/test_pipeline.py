"""`repo-agent pipeline` end to end: oracle teacher, a tiny config-built student, SFT then DPO, evals and
comparisons on a 4-task split of the bundled suite. Then a run whose teacher stage was interrupted
half-way resumes with only the missing rollouts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import BUNDLED_SUITE
from tiny_models import shared_tiny_model

pytestmark = pytest.mark.slow


def _mini_split(folder: Path) -> tuple[Path, Path]:
    """Two train and two test tasks of the bundled suite, split by the project's rule at 50%."""
    from repo_agent.suites.split import split_suite_file, task_side
    from repo_agent.suites.task import load_suite, save_suite, with_tasks

    bundled = load_suite(BUNDLED_SUITE)
    train = [t for t in bundled.tasks if task_side(t.task_id, 50) == "train"][:2]
    test = [t for t in bundled.tasks if task_side(t.task_id, 50) == "test"][:2]
    master = save_suite(with_tasks(bundled, tuple(train + test), suite_id="mini"), folder / "mini_suite.json")
    paths = split_suite_file(master, 50).paths
    return paths["train"], paths["test"]


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    from typer.testing import CliRunner

    from repo_agent.cli import app

    tiny = shared_tiny_model(tmp_path_factory)
    folder = tmp_path_factory.mktemp("pipeline")
    train, test = _mini_split(folder)
    out = folder / "run"
    args = ["pipeline", "--out", str(out), "--model", str(tiny), "--train-suite", str(train), "--test-suite", str(test),
            "--rollouts", "2", "--teacher-mistake-rate", "0.5", "--max-steps", "1", "--dpo", "--dpo-max-steps", "1",
            "--max-seq-len", "8192", "--eval-max-iters", "2", "--eval-max-tokens", "auto", "--num-workers", "2"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out, train, test, args, result


def test_every_stage_leaves_its_artefacts(pipeline_run):
    out, _, _, _, _ = pipeline_run
    record = json.loads((out / "pipeline.json").read_text())
    assert record["finished"] is True
    ran = [s["stage"] for s in record["stages"] if "command" in s]
    assert ran == ["teacher rollouts + preference pairs", "SFT data (episode rows)", "LoRA SFT of the student",
                   "DPO of the SFT student on the teacher's pairs", "eval: base student", "eval: sft student",
                   "eval: sft_dpo student", "compare base vs sft", "compare sft vs sft_dpo", "compare base vs sft_dpo"]
    assert all(s["exit_code"] == 0 for s in record["stages"] if "command" in s)
    budget = next(s for s in record["stages"] if s["stage"] == "evaluation budget")["note"]
    assert budget["max_iters"]["value"] == 2 and budget["max_tokens"]["value"] >= 64
    sft_budget = next(s for s in record["stages"] if s["stage"] == "SFT budget")["note"]
    assert sft_budget == {"rows": "episode", "epochs": 1.0, "max_steps": 1, "unit": "optimizer steps (given)"}
    rows = _rows(out / "sft" / "train_sft.jsonl")
    assert any(sum(m.get("weight", 0) for m in r["messages"]) > 1 for r in rows)  # episode rows: several trained turns
    for folder in ("adapter", "adapter_dpo"):
        assert (out / folder / "adapter_config.json").is_file()
    for name in ("base", "sft", "sft_dpo"):
        report = json.loads((out / f"eval_{name}" / "report.json").read_text())
        assert report["finished_rollouts"] == 2
        config = json.loads((out / f"eval_{name}" / "config.json").read_text())
        assert config["agent"]["test_policy"] == "on_write"  # the teacher's policy, not a default
        assert config["provider"]["sampling"]["max_tokens"] == budget["max_tokens"]["value"]
    for folder in ("compare", "compare_dpo", "compare_base_dpo"):
        assert (out / folder / "comparison.json").is_file()


def test_nothing_of_the_test_split_reaches_training(pipeline_run):
    from repo_agent.suites.task import load_suite

    out, train, test, _, _ = pipeline_run
    train_ids, test_ids = set(load_suite(train).task_ids), set(load_suite(test).task_ids)
    teacher_tasks = {json.loads(p.read_text())["task_id"] for p in (out / "teacher" / "traces").glob("*.json")}
    assert teacher_tasks == train_ids
    sft_tasks = {r["task_id"] for r in _rows(out / "sft" / "train_sft.meta.jsonl")}
    pair_tasks = {r["task_id"] for r in _rows(out / "teacher" / "_prefs.meta.jsonl")}
    assert sft_tasks <= train_ids and pair_tasks <= train_ids and sft_tasks and pair_tasks
    sft_trained = json.loads((out / "adapter" / "trained_tasks.json").read_text())
    dpo_trained = json.loads((out / "adapter_dpo" / "trained_tasks.json").read_text())
    assert set(sft_trained["task_ids"]) == sft_tasks and not set(sft_trained["task_ids"]) & test_ids
    assert set(dpo_trained["task_ids"]) == sft_tasks | pair_tasks  # the SFT tasks survive DPO
    assert sft_trained["test_policies"] == ["on_write"] and dpo_trained["test_policies"] == ["on_write"]
    assert all(not set(json.loads((out / f"eval_{n}" / "report.json").read_text())["trained_task_overlap"])
               for n in ("base", "sft", "sft_dpo"))


def test_an_interrupted_teacher_stage_resumes_with_only_what_is_missing(pipeline_run):
    """The state a kill in the middle of the teacher stage leaves: some traces gone, one unfinished,
    a torn last results line. Re-running the same command finishes just those; later stages see the
    same data and have nothing to do."""
    from typer.testing import CliRunner

    from repo_agent.cli import app

    out, _, _, args, _ = pipeline_run
    teacher = out / "teacher"
    results = teacher / "results.jsonl"
    last = _rows(results)[-1]["rollout_id"]  # its row is torn below: its finished trace gets the row back
    traces = sorted(p for p in (teacher / "traces").glob("*.json") if p.stem != last)
    traces[0].unlink()
    unfinished = json.loads(traces[1].read_text())
    unfinished["status"] = "running"
    traces[1].write_text(json.dumps(unfinished))
    results.write_bytes(results.read_bytes()[:-20])
    sft_before = (out / "sft" / "train_sft.jsonl").read_bytes()

    result = CliRunner().invoke(app, args, catch_exceptions=False)

    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "2 rollouts run, 1 already finished, 1 repaired" in said, said[:3000]
    assert (out / "sft" / "train_sft.jsonl").read_bytes() == sft_before  # the oracle is deterministic per seed
    assert said.count("already holds this finished run") == 2  # SFT and DPO: same data, nothing to retrain
    assert json.loads((out / "pipeline.json").read_text())["finished"] is True


def test_a_synthesized_pipeline_trains_on_a_leak_free_sample_and_reports_every_held_out_suite(tmp_path_factory):
    """--synth-from: training tasks from the train side's programs, held-out tasks from the test side's,
    a seeded sample of --train-tasks, and an --also-test suite evaluated and compared on its own."""
    from typer.testing import CliRunner

    from dataclasses import replace

    from repo_agent.cli import app
    from repo_agent.suites.task import load_suite, save_suite, with_tasks

    tiny = shared_tiny_model(tmp_path_factory)
    folder = tmp_path_factory.mktemp("synth_pipeline")
    train, test = _mini_split(folder)
    sides = [replace(t, split=side) for side, path in (("train", train), ("test", test)) for t in load_suite(path).tasks]
    source = save_suite(with_tasks(load_suite(train), tuple(sides), suite_id="mini_sides", derived_from=None),
                        folder / "mini_sides_suite.json")
    out = folder / "run"
    args = ["pipeline", "--out", str(out), "--model", str(tiny), "--synth-from", str(source),
            "--synth-per-program", "2", "--synth-heldout-per-program", "1", "--train-tasks", "2", "--also-test", str(test),
            "--toolset", "edit", "--rollouts", "1", "--max-steps", "1", "--max-seq-len", "8192", "--eval-max-iters", "2",
            "--eval-max-tokens", "64", "--num-workers", "2"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output

    ran = [s["stage"] for s in json.loads((out / "pipeline.json").read_text())["stages"] if "command" in s]
    assert ran[:3] == ["synthesized training tasks", "synthesized held-out tasks", "training sample without leaks"]
    assert "eval: sft student on mini_test" in ran and "compare base_mini_test vs sft_mini_test" in ran
    synth_train, held = load_suite(out / "synth" / "train_suite.json"), load_suite(out / "synth" / "heldout_suite.json")
    sample = load_suite(out / "synth" / "train_2_suite.json")
    train_programs, test_programs = set(load_suite(train).task_ids), set(load_suite(test).task_ids)
    assert len(sample.tasks) == 2 and set(sample.task_ids) <= set(synth_train.task_ids)
    assert {t.split_key for t in synth_train.tasks} <= train_programs
    assert held.tasks and {t.split_key for t in held.tasks} <= test_programs
    teacher_tasks = {json.loads(p.read_text())["task_id"] for p in (out / "teacher" / "traces").glob("*.json")}
    assert teacher_tasks == set(sample.task_ids)
    for tag, suite in (("", held), ("_mini_test", load_suite(test))):
        report = json.loads((out / f"eval_sft{tag}" / "report.json").read_text())
        assert report["finished_rollouts"] == len(suite.tasks)
        assert (out / f"compare{tag}" / "comparison.json").is_file()
    traced = {}
    for path in (out / "eval_sft" / "traces").glob("*.json"):
        trace = json.loads(path.read_text())
        traced[trace["task_id"]] = trace.get("split_key")
    assert traced == {t.task_id: t.split_key for t in held.tasks}  # the source program, read back by compare
    programs = len({t.split_key for t in held.tasks})
    method = json.loads((out / "compare" / "comparison.json").read_text())["method"]
    assert method["clusters"] == (programs if 2 <= programs < len(held.tasks) else None)
    said = " ".join(result.output.split())
    assert "Difference = candidate - baseline" in said and str(out / "compare_mini_test") in said
