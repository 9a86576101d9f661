"""Kill -9 a real `repo-agent eval` several times, resume, and end with exactly what an uninterrupted
run produces.

The model is a local OpenAI-compatible fake whose gate lets a chosen number of requests through
and holds the rest, so every kill is placed by progress, never by the clock: the run cannot finish
before the kill (requests it needs are held) and has made progress (a rollout got all its replies and
wrote its row). Within that, the kill lands wherever the process happens to be (a tool call, a test
run, a trace rewrite, a results append): the assertions hold for every such moment."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from fake_openai_server import FakeOpenAIServer

REPO = Path(__file__).resolve().parent.parent
CLI = REPO / ".venv" / "bin" / "repo-agent"
SUITE = REPO / "eval" / "suites" / "bundled_suite.json"
TASKS, ROLLOUTS, WORKERS = 4, 3, 3
TOTAL = TASKS * ROLLOUTS
REPLIES_PER_ROLLOUT = 3
TIMEOUT_S = 900  # generous: only a hung run gets near it


@pytest.fixture(scope="module")
def small_suite(tmp_path_factory) -> Path:
    from repo_agent.suites.task import load_suite, save_suite, with_tasks

    bundled = load_suite(SUITE)
    return save_suite(with_tasks(bundled, bundled.tasks[:TASKS], suite_id="bundled-small"),
                      tmp_path_factory.mktemp("suite") / "small_suite.json")


def scripted_agent(suite_path: Path):
    """Three replies per rollout, chosen by the conversation (so a restarted rollout gets the same):
    list the files, then write the reference fix (even tasks: they pass) or read the program (odd
    tasks: they fail), then final."""
    from repo_agent.protocol import Final, ToolCall, render_action
    from repo_agent.suites.task import load_suite

    suite = load_suite(suite_path)
    plans = {}
    for number, task in enumerate(suite.tasks):
        target, fixed = task.reference[0]
        middle = (ToolCall("write_file", {"rel_path": target, "content": (suite.root / fixed).read_text()}) if number % 2 == 0
                  else ToolCall("read_file", {"rel_path": target}))
        plans[task.goal] = [ToolCall("list_files", {"rel_dir": "."}), middle, Final("done")]

    def reply(body: dict) -> str:
        messages = body["messages"]
        goal = next(m["content"] for m in messages if m["role"] == "user").split("GOAL:\n", 1)[1]
        plan = next(actions for text, actions in plans.items() if goal.startswith(text))
        turn = sum(1 for m in messages if m["role"] == "assistant")
        return render_action(plan[min(turn, len(plan) - 1)])

    return reply


def eval_command(suite: Path, run: Path, base_url: str) -> list[str]:
    return [str(CLI), "eval", "--suite", str(suite), "--trace-dir", str(run), "--rollouts", str(ROLLOUTS),
            "--num-workers", str(WORKERS), "--seed", "11", "--llm-provider", "openai", "--base-url", base_url,
            "--model", "fake", "--max-iters", "5"]


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


def test_sigkill_at_progress_points_then_resume_matches_uninterrupted_run(small_suite, tmp_path):
    env = {**os.environ, "OPENAI_API_KEY": "sk-fake-for-tests"}
    with FakeOpenAIServer(reply_fn=scripted_agent(small_suite)) as server:
        reference = tmp_path / "reference"
        subprocess.run(eval_command(small_suite, reference, server.base_url), check=True, capture_output=True,
                       env=env, timeout=TIMEOUT_S)
        expected = outcome(reference)
        assert len(expected) == TOTAL and {o[1] for o in expected.values()} == {True, False}

        run = tmp_path / "killed"
        rng = random.Random(20261121)
        kills, partial = 0, []
        for _ in range(3):
            before = _rows(run)
            # At most WORKERS finished traces may lack their row (they are repaired, not rerun), so at
            # least this many requests remain; letting fewer through means the run cannot finish.
            remaining = REPLIES_PER_ROLLOUT * (TOTAL - before - WORKERS)
            # 7+ requests: with 3 rollouts in flight holding at most 2 replies each, one rollout got all 3
            if remaining - 1 < 7:
                break
            let_through = rng.randint(7, min(12, remaining - 1))
            server.gate.drop_held()  # requests of the killed process: closed, never answered
            answered = server.gate.answered
            server.gate.limit(let_through)
            proc = subprocess.Popen(eval_command(small_suite, run, server.base_url), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, env=env)
            try:
                server.gate.wait_answered(answered + let_through, TIMEOUT_S, alive=lambda: proc.poll() is None)
                deadline = time.monotonic() + TIMEOUT_S
                while _rows(run) <= before:  # the fully answered rollout writes its row
                    assert proc.poll() is None and time.monotonic() < deadline, "no row after the replies it needed"
                    time.sleep(0.01)
                time.sleep(rng.uniform(0.0, 0.3))  # anywhere in what the other rollouts are doing
                assert proc.poll() is None, "the run finished although requests it needs were held"
                proc.send_signal(signal.SIGKILL)
                kills += 1
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(timeout=60)
            assert_every_trace_is_json(run)
            partial.append(_rows(run))
        print("rows after each kill:", partial)
        assert kills >= 2 and all(0 < n < TOTAL for n in partial), partial

        server.gate.drop_held()
        server.gate.unlimited()
        final = subprocess.run(eval_command(small_suite, run, server.base_url), capture_output=True, text=True,
                               env=env, timeout=TIMEOUT_S)
        assert final.returncode == 0, final.stderr
        assert outcome(run) == expected
        assert_every_trace_is_json(run)
        assert not list(run.rglob(".*.tmp"))
        again = subprocess.run(eval_command(small_suite, run, server.base_url), capture_output=True, text=True,
                               env=env, timeout=TIMEOUT_S)
        assert f"0 rollouts run, {TOTAL} already finished" in again.stderr
