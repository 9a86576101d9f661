"""Honest by default: the commands refuse the evaluations and the training data that would flatter."""

import json
from pathlib import Path

from conftest import BUNDLED_SUITE

SUITES = BUNDLED_SUITE.parent
TEST_SUITE = SUITES / "bundled_test_suite.json"
TRAIN_SUITE = SUITES / "bundled_train_suite.json"


def test_the_oracle_is_refused_on_held_out_tasks_and_labelled_when_allowed(cli, tmp_path):
    refused = cli("eval", "--suite", TEST_SUITE, "--trace-dir", tmp_path / "r", "--llm-provider", "oracle")
    assert refused.exit_code == 2 and "knows the reference fixes" in refused.output and "--allow-oracle" in refused.output
    assert not (tmp_path / "r").exists()
    allowed = cli("eval", "--suite", TEST_SUITE, "--trace-dir", tmp_path / "r", "--llm-provider", "oracle", "--allow-oracle",
                  "--num-workers", "2")
    assert allowed.exit_code == 0, allowed.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["reference_ceiling"] is True and report["overall"]["pass_rate"] == 1.0
    assert "**Reference ceiling:**" in (tmp_path / "r" / "report.md").read_text()
    assert "reference ceiling" in allowed.output


def test_held_out_means_the_split_rule_whatever_the_suite_file(cli, tmp_path):
    """The master suite has no `split` on its tasks; its test-side tasks are held out all the same."""
    from repo_agent.suites.split import held_out_ids
    from repo_agent.suites.task import load_suite

    master, test_side = load_suite(BUNDLED_SUITE), load_suite(TEST_SUITE)
    assert sorted(held_out_ids(master)) == sorted(test_side.task_ids) == sorted(held_out_ids(test_side))
    assert held_out_ids(load_suite(TRAIN_SUITE)) == []
    refused = cli("eval", "--suite", BUNDLED_SUITE, "--trace-dir", tmp_path / "r", "--llm-provider", "oracle")
    assert refused.exit_code == 2 and f"{len(test_side.tasks)} task(s) of bundled are held out" in refused.output


def test_the_train_side_is_not_evaluated_without_saying_so(cli, tmp_path):
    script = tmp_path / "give_up.json"
    script.write_text(json.dumps(['{"type":"final","summary":"no"}']))
    args = ("eval", "--suite", TRAIN_SUITE, "--trace-dir", tmp_path / "r", "--llm-provider", "scripted", "--model", script)
    refused = cli(*args)
    assert refused.exit_code == 2 and "train side of a split" in refused.output and "--allow-train-split" in refused.output
    assert cli(*args, "--allow-train-split", "--num-workers", "4").exit_code == 0


def test_prefs_refuses_held_out_tasks_by_the_split_rule(cli, tmp_path):
    refused = cli("prefs", "--suite", BUNDLED_SUITE, "--llm-provider", "oracle", "--trace-dir", tmp_path / "run",
                  "--out", tmp_path / "p.jsonl")
    assert refused.exit_code == 3 and "held out" in refused.output
    assert not (tmp_path / "run").exists()


def test_training_data_from_held_out_traces_is_refused(cli, tmp_path):
    """Traces of the test side (their recorded split) cannot become SFT rows or pairs."""
    run = cli("run", "--suite", TEST_SUITE, "--task", "gcd", "--llm-provider", "oracle", "--trace-dir", tmp_path / "t")
    assert run.exit_code == 0, run.output
    for command in ("sft-extract", "pairs-extract"):
        refused = cli(command, "--trace-dir", tmp_path / "t", "--out", tmp_path / f"{command}.jsonl")
        assert refused.exit_code == 3 and "recorded split is 'test'" in refused.output, refused.output
        assert not (tmp_path / f"{command}.jsonl").exists()


def test_a_local_adapter_trained_on_a_task_is_not_evaluated_on_it(cli, tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "trained_tasks.json").write_text(json.dumps({"task_ids": ["bundled/gcd"]}))
    refused = cli("eval", "--suite", TEST_SUITE, "--trace-dir", tmp_path / "r", "--llm-provider", "local",
                  "--model", str(tmp_path / "no-such-model"), "--adapter", adapter)
    assert refused.exit_code == 2 and "trained on 1 task(s) of this suite (bundled/gcd" in refused.output
    assert str(adapter / "trained_tasks.json") in refused.output
