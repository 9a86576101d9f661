"""The split is a pure function of task ids; derived suites that were edited by hand are rejected."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from fixtures_suites import QB_PROGRAMS, write_quixbugs
from repo_agent.cli import app
from repo_agent.suites.split import task_side
from repo_agent.suites.task import load_suite

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def cli(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def build_and_split(tmp: Path, names: list[str], pct: int = 50) -> Path:
    root = write_quixbugs(tmp / "qb", names)
    out = tmp / "qb_suite.json"
    assert cli("suite", "build", "quixbugs", "--root", root, "--out", out).exit_code == 0
    result = cli("suite", "split", "--suite", out, "--train-pct", pct)
    assert result.exit_code == 0, result.output
    return out


def sides(path: Path) -> dict[str, str]:
    return {t.task_id: t.split for t in load_suite(path).tasks}


def test_split_is_deterministic_complete_and_disjoint(tmp_path):
    parent = build_and_split(tmp_path, list(QB_PROGRAMS))
    train, test = tmp_path / "qb_train_suite.json", tmp_path / "qb_test_suite.json"
    first = (train.read_bytes(), test.read_bytes())
    assert cli("suite", "split", "--suite", parent, "--train-pct", 50).exit_code == 0
    assert (train.read_bytes(), test.read_bytes()) == first
    train_ids, test_ids = set(sides(train)), set(sides(test))
    assert train_ids | test_ids == set(load_suite(parent).task_ids) and not train_ids & test_ids
    assert all(side == "train" for side in sides(train).values())
    assert all(side == "test" for side in sides(test).values())
    for task_id in train_ids | test_ids:
        assert (task_id in train_ids) == (task_side(task_id, 50) == "train")


def test_side_of_a_task_does_not_change_when_tasks_are_added(tmp_path):
    few = build_and_split(tmp_path / "a", ["add", "mul"])
    many = build_and_split(tmp_path / "b", list(QB_PROGRAMS))
    before = {**sides(few.with_name("qb_train_suite.json")), **sides(few.with_name("qb_test_suite.json"))}
    after = {**sides(many.with_name("qb_train_suite.json")), **sides(many.with_name("qb_test_suite.json"))}
    assert len(after) == len(QB_PROGRAMS)
    assert {t: after[t] for t in before} == before


def test_side_follows_the_md5_rule_at_the_boundaries():
    ids = [f"suite/task{i}" for i in range(200)]
    assert all(task_side(t, 100) == "train" for t in ids)
    assert all(task_side(t, 0) == "test" for t in ids)
    trains = sum(task_side(t, 80) == "train" for t in ids)
    assert 130 < trains < 190  # md5 spreads ids evenly enough


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2) + "\n")


def test_check_rejects_a_task_moved_by_hand(tmp_path):
    parent = build_and_split(tmp_path, list(QB_PROGRAMS))
    train, test = parent.with_name("qb_train_suite.json"), parent.with_name("qb_test_suite.json")
    assert cli("suite", "check", "--suite", parent).exit_code == 0
    moved = json.loads(test.read_text())["tasks"][0]
    edit_json(train, lambda d: d["tasks"].append({**moved, "split": "train"}))
    result = cli("suite", "check", "--suite", parent)
    assert result.exit_code == 1
    assert f"task {moved['task_id']} is not on the train side" in result.output
    assert "overlap" in result.output


def test_check_rejects_an_edited_goal_and_a_changed_parent(tmp_path):
    parent = build_and_split(tmp_path, list(QB_PROGRAMS))
    test = parent.with_name("qb_test_suite.json")
    edit_json(test, lambda d: d["tasks"][0].update(goal="Just pass."))
    result = cli("suite", "check", "--suite", test)
    assert result.exit_code == 1 and "differs from its parent record" in result.output
    assert cli("suite", "split", "--suite", parent, "--train-pct", 50).exit_code == 0
    assert cli("suite", "check", "--suite", test).exit_code == 0
    edit_json(parent, lambda d: d["tasks"].pop())
    result = cli("suite", "check", "--suite", test)
    assert result.exit_code == 1 and "changed since the split" in result.output


def test_check_rejects_a_reformatted_derived_file(tmp_path):
    parent = build_and_split(tmp_path, list(QB_PROGRAMS))
    train = parent.with_name("qb_train_suite.json")
    train.write_text(json.dumps(json.loads(train.read_text())))  # same content, other bytes
    result = cli("suite", "check", "--suite", train)
    assert result.exit_code == 1 and "edited by hand" in result.output


def test_split_of_a_derived_suite_is_refused(tmp_path):
    parent = build_and_split(tmp_path, list(QB_PROGRAMS))
    result = cli("suite", "split", "--suite", parent.with_name("qb_train_suite.json"))
    assert result.exit_code == 2 and "derived suite" in result.output


def test_bundled_split_files_are_what_the_split_command_writes(tmp_path):
    suites = tmp_path / "suites"
    shutil.copytree(REPO / "eval" / "suites", suites)
    assert cli("suite", "check", "--suite", suites / "bundled_suite.json").exit_code == 0
    committed = {p.name: p.read_bytes() for p in suites.glob("bundled_*_suite.json")}
    assert set(committed) == {"bundled_train_suite.json", "bundled_test_suite.json"}
    assert cli("suite", "split", "--suite", suites / "bundled_suite.json", "--train-pct", 80).exit_code == 0
    assert {p.name: p.read_bytes() for p in suites.glob("bundled_*_suite.json")} == committed
