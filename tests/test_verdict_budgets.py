"""Time budgets in CPU seconds: the same code gets the same verdict on a quiet and on a loaded machine.

A test call may use the task's `per_test_timeout` of CPU time; a program that sleeps or blocks is cut by
the wall-clock backstop (WALL_BACKSTOP times longer); a program that catches the timeout still fails.
`suite validate` measures the reference's CPU time per test and, with --record-tests, raises a slow
task's budget to 10x it.
"""

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import BUNDLED_SUITE
from fixtures_suites import write_quixbugs
from repo_agent.suites.quixbugs import build_quixbugs_suite
from repo_agent.suites.task import load_suite, save_suite
from repo_agent.testrun import WALL_BACKSTOP
from repo_agent.workspace import TaskWorkspace

# The reference spends SLOW_CPU_S of CPU time per call (measured in CPU time, so ~2 s on any machine).
SLOW_CPU_S = 2.0
SLOW = {"slow": ("return x - y",
                 f"import time\n    start = time.process_time()\n    while time.process_time() - start < {SLOW_CPU_S}:\n"
                 "        pass\n    return x + y", [[[1, 2], 3]])}


def slow_suite(tmp_path: Path, per_test: float) -> Path:
    root = write_quixbugs(tmp_path / "qb", programs=SLOW)
    suite = build_quixbugs_suite(root, suite_id="slow", per_test_timeout=per_test)
    out = tmp_path / "slow_suite.json"
    save_suite(suite, out)
    return out


def run_program(suite_path: Path, program: str):
    suite = load_suite(suite_path)
    task = suite.tasks[0]
    with TaskWorkspace.create(suite, task, "auto") as env:
        (env.root / task.target_files[0]).write_text(program)
        started = time.monotonic()
        report = env.run_tests(fail_fast=False)
        return report, time.monotonic() - started


def test_budgets_count_cpu_seconds_and_sleepers_meet_the_wall_clock_backstop(tmp_path):
    suite_path = slow_suite(tmp_path, per_test=0.5)
    burn = "def slow(x, y):\n    while True:\n        pass\n"
    report, _ = run_program(suite_path, burn)
    assert report.outcome == "failed" and report.timeouts == 1 and "timeout" in report.summary
    assert 0.45 <= next(iter(report.cpu.values())) < 2  # stopped once its CPU time reached the budget (timer ticks)
    assert report.budget == {"kind": "cpu", "per_test_s": 0.5, "total_s": 120.0, "wall_backstop_x": WALL_BACKSTOP}
    # catching the timeout and answering afterwards does not pass: the budget was spent
    stubborn = ("import time\n\n\ndef slow(x, y):\n    start = time.process_time()\n    try:\n"
                "        while time.process_time() - start < 2:\n            pass\n    except BaseException:\n        pass\n"
                "    return x + y\n")
    report, _ = run_program(suite_path, stubborn)
    assert report.outcome == "failed" and report.timeouts == 1
    # sleeping costs no CPU: only the wall-clock backstop (6 x 0.5 s) stops it
    sleeper = "import time\n\n\ndef slow(x, y):\n    time.sleep(60)\n    return x + y\n"
    report, wall = run_program(suite_path, sleeper)
    assert report.outcome == "failed" and report.timeouts == 1
    assert 0.5 * WALL_BACKSTOP * 0.9 < wall < 0.5 * WALL_BACKSTOP + 20


def test_a_disarmed_cpu_timer_is_tampering(tmp_path):
    suite_path = slow_suite(tmp_path, per_test=0.5)
    program = ("import signal\n\n\ndef slow(x, y):\n    signal.setitimer(signal.ITIMER_PROF, 0)\n    return x + y\n")
    report, _ = run_program(suite_path, program)
    assert report.outcome == "error" and report.tampered
    assert any("CPU-time budget" in line and "disarmed" in line for line in report.integrity)


def _verdicts(path: Path) -> dict:
    data = json.loads(path.read_text())
    return {t["task_id"]: [(r["outcome"], r["passed"], r["failed"], r["timeouts"]) for r in t["buggy"] + t["reference"]]
            for t in data["tasks"]}


@pytest.mark.slow
def test_validate_gives_the_same_verdicts_idle_and_under_load(cli, tmp_path):
    """Two busy processes per core slow every test down ~2.5x in wall time; with CPU budgets no verdict
    changes. The slow task's reference takes 2 s of CPU against a 3 s budget: under a 3 s wall-clock
    limit it would time out on the loaded machine."""
    slow = slow_suite(tmp_path, per_test=3.0)
    bundled = tmp_path / "bundled_suite.json"
    suite = load_suite(BUNDLED_SUITE)
    save_suite(replace(suite, path=None), bundled)

    def validate(label: str) -> dict:
        results = {}
        for name, path, extra in (("bundled", bundled, ["--repeats", "1"]), ("slow", slow, [])):
            out = tmp_path / f"{label}_{name}.json"
            result = cli("suite", "validate", "--suite", path, "--no-minimal", "--json", out, *extra)
            assert result.exit_code == 0, result.output
            results.update(_verdicts(out))
        return results

    idle = validate("idle")
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2 * (os.cpu_count() or 1))]
    try:
        loaded_started = time.monotonic()
        loaded = validate("loaded")
        loaded_wall = time.monotonic() - loaded_started
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    assert loaded == idle
    slow_reference = json.loads((tmp_path / "loaded_slow.json").read_text())["tasks"][0]
    assert slow_reference["valid"] and all(r["outcome"] == "passed" for r in slow_reference["reference"])
    assert SLOW_CPU_S * 0.9 < slow_reference["reference_cpu_s"] < SLOW_CPU_S * 1.5
    assert slow_reference["cpu_budget_s"] == math.ceil(10 * slow_reference["reference_cpu_s"])  # 10x, above 3 s
    assert loaded_wall < 600


def test_record_tests_raises_a_slow_tasks_budget(cli, tmp_path):
    slow = slow_suite(tmp_path, per_test=3.0)
    result = cli("suite", "validate", "--suite", slow, "--no-minimal", "--repeats", "1", "--record-tests")
    assert result.exit_code == 0, result.output
    task = load_suite(slow).tasks[0]
    assert 20.0 <= task.test.per_test_timeout <= 30.0 and task.expected_tests  # 10 x the ~2 s reference
