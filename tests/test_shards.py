"""Shards: a deterministic partition of a suite's tasks, run apart and merged into the unsharded run."""

from __future__ import annotations

import json
import shutil

from conftest import REPO
from repo_agent.suites.split import parse_shard, shard_of, shard_suite
from repo_agent.suites.task import load_suite

TEST_SUITE = REPO / "eval" / "suites" / "bundled_test_suite.json"


def test_a_shard_is_a_function_of_the_task_id_alone():
    suite = load_suite(REPO / "eval" / "suites" / "bundled_suite.json")
    parts = [shard_suite(suite, (k, 3)) for k in (1, 2, 3)]
    ids = [t for p in parts for t in p.task_ids]
    assert sorted(ids) == sorted(suite.task_ids) and len(ids) == len(set(ids))
    fewer = shard_suite(suite.__class__(suite.suite_id, suite.kind, suite.root, suite.tasks[:7]), (2, 3))
    assert set(fewer.task_ids) <= set(parts[1].task_ids)  # removing tasks never moves the others
    assert shard_of("bundled/gcd", 3) == shard_of("bundled/gcd", 3)
    assert parse_shard("2/8") == (2, 8)
    for bad in ("0/3", "4/3", "x", "1/"):
        try:
            parse_shard(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad} was accepted")


def _eval(cli, out, *extra):
    result = cli("eval", "--suite", TEST_SUITE, "--trace-dir", out, "--llm-provider", "oracle", "--allow-oracle",
                 "--rollouts", "2", "--test-policy", "on_write", "--num-workers", "2", *extra)
    assert result.exit_code == 0, result.output
    return json.loads((out / "report.json").read_text())


def _comparable(report):
    def steady(values):
        return {k: v for k, v in values.items() if "time" not in k}
    return (steady(report["overall"]), report["expected_rollouts"], report["finished_rollouts"],
            {task: steady(values) for task, values in report["per_task"].items()})


def test_shards_of_an_eval_merge_to_the_unsharded_report(cli, tmp_path):
    whole = _eval(cli, tmp_path / "whole")
    shards = [tmp_path / f"s{k}" for k in (1, 2)]
    for k, folder in enumerate(shards, 1):
        _eval(cli, folder, "--shard", f"{k}/2")
    merged = cli("report", "merge", *shards, "--out", tmp_path / "merged")
    assert merged.exit_code == 0, merged.output
    assert _comparable(json.loads((tmp_path / "merged" / "report.json").read_text())) == _comparable(whole)
    traces = sorted(p.name for p in (tmp_path / "merged" / "traces").glob("*.json"))
    assert traces == sorted(p.name for p in (tmp_path / "whole" / "traces").glob("*.json"))
    # refusals: a missing shard, a shard twice, mixed settings, an unfinished shard, a non-empty target
    assert "missing shard(s) 2/2" in cli("report", "merge", shards[0], "--out", tmp_path / "m1").output
    assert "given twice" in cli("report", "merge", shards[0], shards[0], "--out", tmp_path / "m2").output
    other = tmp_path / "other"
    _eval(cli, other, "--shard", "2/2", "--seed", "7")
    refused = cli("report", "merge", shards[0], other, "--out", tmp_path / "m3")
    assert refused.exit_code == 2 and "other settings" in refused.output
    broken = tmp_path / "broken"
    shutil.copytree(shards[1], broken)
    lines = (broken / "results.jsonl").read_text().splitlines()
    (broken / "results.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    assert "resume it first" in cli("report", "merge", shards[0], broken, "--out", tmp_path / "m4").output
    assert "not empty" in cli("report", "merge", *shards, "--out", tmp_path / "merged").output
    assert "not a shard" in cli("report", "merge", tmp_path / "whole", "--out", tmp_path / "m5").output
