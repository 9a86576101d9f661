"""Rollout scaling: N rollouts against a local OpenAI-compatible server that answers after a fixed delay,
with 1, 2, 4, 8, 16 workers (issue 7 item 2; issue 4 "done means").

    .venv/bin/python benchmarks/rollout_scaling.py [--delay 0.25] [--calls 4] [--reps 2] [--workers 1,2,4,8,16]
                                                   [--verdict stub,real]

Every rollout makes CALLS model calls (CALLS-1 list_files, then final), each answered after DELAY
seconds by tests/fake_openai_server.py, then the driver's verdict test run. Two verdict modes:
  - stub: the tasks' test interpreter is /bin/true (the verdict is a ~1 ms process that runs no test):
    isolates what this benchmark is about, keeping W model calls in flight;
  - real: pytest as in any eval. Test runs are CPU-bound and capped at one per core, so on a small
    machine they, not the model, set the floor: 50 verdicts x ~0.3-1 s of CPU / cores.
Worker counts and modes are interleaved (the order rotates every repetition) so machine noise hits all.
Figures, per worker count (median and min-max over repetitions):
  - model-bound efficiency = (N x CALLS x DELAY / W) / measured: the issue's "50 x delay / W" target;
    it also charges the harness and the verdict test runs (CPU) to the engine;
  - speed-up efficiency = T(1) / (W x T(W)): share of the ideal W-fold speed-up (goal >= 0.85 at W=8);
  - packing bound = N / (W x ceil(N / W)): the best any engine can do with N identical rollouts
    (50 rollouts on 8 workers are 7 rounds, the last one 2/8 full: 0.893).
Writes benchmarks/results/rollout_scaling.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import shutil
import socket
import subprocess
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from repo_agent.agent import AgentConfig  # noqa: E402
from repo_agent.models.base import ProviderConfig  # noqa: E402
from repo_agent.rollouts import run_rollouts  # noqa: E402
from repo_agent.suites.task import load_suite, save_suite, with_tasks  # noqa: E402

TOOL_CALL = '{"type":"tool_call","name":"list_files","args":{"rel_dir":"."}}'
FINAL = '{"type":"final","summary":"benchmark"}'


def machine() -> dict:
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(), "loadavg_at_start": os.getloadavg()}


@contextlib.contextmanager
def fake_server_process(replies: list[str], delay: float, root: Path):
    """tests/fake_openai_server.py in its own process, like a real server: its request handling does not
    compete with the rollout threads for this interpreter's GIL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    replies_file = root / "replies.json"
    replies_file.write_text(json.dumps(replies))
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "fake_openai_server.py"), "--port", str(port),
                             "--delay", str(delay), "--replies", str(replies_file)], stdout=subprocess.PIPE, text=True)
    try:
        proc.stdout.readline()  # "serving ..." once it listens
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def stub_verdicts(suite):
    """Same tasks, but the test interpreter is /bin/true: a verdict costs one tiny process, no pytest."""
    from dataclasses import replace

    true = shutil.which("true") or "/bin/true"
    return with_tasks(suite, tuple(replace(t, test=replace(t.test, python=true)) for t in suite.tasks))


def one_run(suite, provider: ProviderConfig, workers: int, rollouts: int, root: Path) -> float:
    run_dir = Path(tempfile.mkdtemp(prefix=f"w{workers}-", dir=root))
    started = time.monotonic()
    with contextlib.redirect_stderr(io.StringIO()):  # per-rollout JSON lines: not wanted here
        result = run_rollouts(suite, provider, AgentConfig(), run_dir, rollouts=rollouts, num_workers=workers,
                              show_progress=False)
    elapsed = time.monotonic() - started
    assert result.ran == len(result.completed), "every rollout must run"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay", type=float, default=0.25, help="seconds per model answer")
    parser.add_argument("--calls", type=int, default=4, help="model calls per rollout")
    parser.add_argument("--tasks", type=int, default=10, help="tasks of the bundled suite used")
    parser.add_argument("--rollouts-per-task", type=int, default=5, help="N = tasks x rollouts-per-task")
    parser.add_argument("--workers", default="1,2,4,8,16")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--verdict", default="stub,real", help="stub and/or real verdict test runs (see above)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "rollout_scaling.json")
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",")]

    bundled = load_suite(REPO / "eval" / "suites" / "bundled_suite.json")
    root = Path(tempfile.mkdtemp(prefix="rollout-scaling-"))
    real = load_suite(save_suite(with_tasks(bundled, bundled.tasks[: args.tasks], suite_id="bench"), root / "suite.json"))
    suites = {mode: (real if mode == "real" else stub_verdicts(real)) for mode in args.verdict.split(",")}
    n = len(real.tasks) * args.rollouts_per_task
    model_time = n * args.calls * args.delay
    replies = [TOOL_CALL] * (args.calls - 1) + [FINAL]
    info = machine()
    configs = [(mode, w) for mode in suites for w in workers]
    times: dict[tuple[str, int], list[float]] = {c: [] for c in configs}
    with fake_server_process(replies, args.delay, root) as base_url:
        provider = ProviderConfig("openai", "fake", base_url=base_url, max_retries=0)
        one_run(real, provider, 2, 1, root)  # warm-up: imports, first pytest run
        for rep in range(args.reps):
            order = configs[rep % len(configs):] + configs[:rep % len(configs)]
            if rep % 2:
                order.reverse()
            for mode, w in order:
                elapsed = one_run(suites[mode], provider, w, args.rollouts_per_task, root)
                times[(mode, w)].append(elapsed)
                print(f"rep {rep + 1}/{args.reps}  {mode:<4} W={w:<3} {elapsed:7.2f}s", file=sys.stderr, flush=True)
    info["loadavg_at_end"] = os.getloadavg()
    shutil.rmtree(root, ignore_errors=True)

    rows = []
    for mode, w in configs:
        runs = times[(mode, w)]
        med = statistics.median(runs)
        t1 = statistics.median(times[(mode, 1)]) if (mode, 1) in times else None
        ideal = model_time / w
        rows.append({
            "verdict": mode, "workers": w, "median_s": round(med, 3), "min_s": round(min(runs), 3), "max_s": round(max(runs), 3),
            "ideal_s": round(ideal, 3),
            "model_bound_efficiency": round(ideal / med, 3),
            "model_bound_efficiency_range": [round(ideal / max(runs), 3), round(ideal / min(runs), 3)],
            "speedup": round(t1 / med, 3) if t1 else None,
            "speedup_efficiency": round(t1 / (w * med), 3) if t1 else None,
            "packing_bound": round(n / (w * math.ceil(n / w)), 3),
            "runs_s": [round(t, 3) for t in runs],
        })
    print(f"\n{n} rollouts x {args.calls} calls x {args.delay}s delay = {model_time:.0f}s of model time; "
          f"{args.reps} interleaved repetitions; {info['cpus']} CPUs, {info['platform']}")
    print(f"load average (1 min) at start {info['loadavg_at_start'][0]:.1f}, at end {info['loadavg_at_end'][0]:.1f}")
    print(f"{'verdict':<8}{'W':>3} {'median s':>9} {'min-max s':>15} {'ideal s':>8} {'model-bound eff':>16} "
          f"{'speed-up':>9} {'speed-up eff':>13} {'packing bound':>14}")
    for r in rows:
        print(f"{r['verdict']:<8}{r['workers']:>3} {r['median_s']:>9.2f} {r['min_s']:>7.2f}-{r['max_s']:<7.2f} {r['ideal_s']:>8.2f} "
              f"{r['model_bound_efficiency']:>16.3f} {r['speedup'] or 0:>9.2f} {r['speedup_efficiency'] or 0:>13.3f} {r['packing_bound']:>14.3f}")
    result = {"benchmark": "rollout_scaling", "machine": info, "rollouts": n, "calls_per_rollout": args.calls,
              "delay_s": args.delay, "repetitions": args.reps,
              "goal": "8 workers: >= 0.85 of the ideal speed-up (stub verdicts isolate the engine)",
              "command": " ".join([".venv/bin/python", "benchmarks/rollout_scaling.py", *sys.argv[1:]]), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
