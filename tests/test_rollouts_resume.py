"""Kill -9 at random points, resume, and end with exactly what an uninterrupted run produces."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CLI = REPO / ".venv" / "bin" / "repo-agent"
SUITE = REPO / "eval" / "suites" / "bundled_suite.json"
TASKS, ROLLOUTS = 4, 3


@pytest.fixture(scope="module")
def small_suite(tmp_path_factory) -> Path:
    from repo_agent.suites.task import load_suite, save_suite, with_tasks

    bundled = load_suite(SUITE)
    return save_suite(with_tasks(bundled, bundled.tasks[:TASKS], suite_id="bundled-small"),
                      tmp_path_factory.mktemp("suite") / "small_suite.json")


def eval_command(suite: Path, run: Path) -> list[str]:
    return [str(CLI), "eval", "--suite", str(suite), "--trace-dir", str(run), "--rollouts", str(ROLLOUTS),
            "--num-workers", "3", "--seed", "11"]


def outcome(run: Path) -> dict[str, tuple]:
    """rollout_id -> (seed, passed, steps, stop reason) from results.jsonl, checked against the traces."""
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    assert len(rows) == len({r["rollout_id"] for r in rows}), "duplicated rows"
    result = {}
    for row in rows:
        trace = json.loads((run / row["trace"]).read_text())
        assert trace["status"] == "finished" and trace["seed"] == row["seed"]
        result[row["rollout_id"]] = (row["seed"], row["passed"], len(trace["steps"]), row["stop_reason"])
    return result


def _rows(run: Path) -> int:
    """Complete lines of results.jsonl (a torn last line does not count)."""
    path = run / "results.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


def assert_every_trace_is_json(run: Path) -> None:
    for path in (run / "traces").glob("*.json"):
        json.loads(path.read_text())  # raises on a torn file


def test_sigkill_at_random_points_then_resume_matches_uninterrupted_run(small_suite, tmp_path):
    reference = tmp_path / "reference"
    subprocess.run(eval_command(small_suite, reference), check=True, capture_output=True, timeout=300)
    expected = outcome(reference)
    assert len(expected) == TASKS * ROLLOUTS

    run = tmp_path / "killed"
    rng = random.Random(20261121)
    kills, partial = 0, []
    for _ in range(4):
        done = _rows(run)
        if done >= TASKS * ROLLOUTS - 1:
            break
        # kill on progress, not on a clock: a fast machine would otherwise finish before the kill
        target = min(TASKS * ROLLOUTS - 1, done + rng.randint(1, 3))
        proc = subprocess.Popen(eval_command(small_suite, run), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while _rows(run) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.05))  # land anywhere inside the next rollout, trace writes included
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        if (run / "traces").exists():
            assert_every_trace_is_json(run)
        partial.append(_rows(run))
    print("rows after each kill:", partial)
    assert kills >= 2, "the run finished too fast to be interrupted; the test proved nothing"
    assert any(0 < n < TASKS * ROLLOUTS for n in partial), f"no kill landed mid-run: rows after each try {partial}"

    final = subprocess.run(eval_command(small_suite, run), capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert outcome(run) == expected
    assert_every_trace_is_json(run)
    assert not list(run.rglob(".*.tmp"))
    again = subprocess.run(eval_command(small_suite, run), capture_output=True, text=True, timeout=300)
    assert f"0 rollouts run, {TASKS * ROLLOUTS} already finished" in again.stderr
