"""`suite validate`: buggy must fail and the fix must pass, twice; invalid tasks make the exit code 1."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from fixtures_suites import QB_PROGRAMS, write_quixbugs
from repo_agent.cli import app
from repo_agent.suites.task import load_suite
from repo_agent.suites.validate import judge
from repo_agent.verdict import TestReport

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def cli(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_every_bundled_task_is_valid_via_the_real_cli(tmp_path):
    bundled = REPO / "eval" / "suites" / "bundled_suite.json"
    count = len(load_suite(bundled).tasks)
    out = tmp_path / "v.json"
    result = cli("suite", "validate", "--suite", bundled, "--num-workers", 2, "--json", out)
    assert result.exit_code == 0, result.output
    assert f"{count}/{count} valid" in result.output
    data = json.loads(out.read_text())
    assert data["valid"] == data["total"] == count >= 10
    for task in data["tasks"]:
        assert len(task["buggy"]) == len(task["reference"]) == 2
        assert not any(r["passed_verdict"] for r in task["buggy"])
        assert all(r["passed_verdict"] for r in task["reference"])


def test_invalid_tasks_are_named_and_fail_the_command(tmp_path):
    programs = dict(QB_PROGRAMS)
    programs["mul"] = ("return x * y", "return x * y", programs["mul"][2])  # "buggy" already correct
    programs["add"] = ("return x - y", "return x - y + 1", programs["add"][2])  # "fix" is wrong
    root = write_quixbugs(tmp_path / "qb", ["add", "mul", "maximum", "hang"], programs=programs)
    suite = tmp_path / "s_suite.json"
    assert cli("suite", "build", "quixbugs", "--root", root, "--out", suite).exit_code == 0
    out = tmp_path / "v.json"
    result = cli("suite", "validate", "--suite", suite, "--per-test-timeout", 1, "--json", out)
    assert result.exit_code == 1
    by_id = {t["task_id"]: t for t in json.loads(out.read_text())["tasks"]}
    assert not by_id["quixbugs/mul"]["valid"] and "buggy version passed 2/2" in by_id["quixbugs/mul"]["problems"][0]
    assert not by_id["quixbugs/add"]["valid"] and "reference fix failed 2/2" in by_id["quixbugs/add"]["problems"][0]
    assert by_id["quixbugs/maximum"]["valid"]
    hang = by_id["quixbugs/hang"]  # the hanging buggy test is cut by the per-test timeout
    assert hang["valid"] and all(r["timeouts"] == 1 for r in hang["buggy"])
    assert "2/4 valid" in result.output


def test_validate_only_named_tasks(tmp_path):
    result = cli("suite", "validate", "--suite", REPO / "eval" / "suites" / "bundled_suite.json",
                 "--task", "gcd", "--repeats", 1)
    assert result.exit_code == 0 and "1/1 valid" in result.output
    result = cli("suite", "validate", "--suite", REPO / "eval" / "suites" / "bundled_suite.json", "--task", "nope")
    assert result.exit_code == 2 and "no task 'nope'" in result.output


def report(ok: bool, total: int = 3) -> TestReport:
    return TestReport(passed=total if ok else total - 1, failed=0 if ok else 1, outcome="passed" if ok else "failed")


def test_judge_flags_flaky_sides():
    assert judge([report(False), report(False)], [report(True), report(True)]) == []
    assert judge([report(False), report(True)], [report(True), report(True)]) == ["flaky: buggy version passed 1/2 runs"]
    problems = judge([report(False), report(False)], [report(True), report(False)])
    assert len(problems) == 1 and problems[0].startswith("flaky: reference fix failed 1/2 runs")
    silent = TestReport(summary="no test ran: ImportError", outcome="tests_missing")
    assert "collected no test" in judge([silent], [report(True)])[0]
