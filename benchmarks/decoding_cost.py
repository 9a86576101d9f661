"""What decoding costs a base-model evaluation (issue 16): free decoding vs early stop vs constrained.

    .venv/bin/python benchmarks/decoding_cost.py [--model smollm2] [--reps 1] [--modes free,early_stop,constrained]

The main job's base evaluation, run three ways side by side in one process: the embedded SmolLM2
(`--llm-provider local --model smollm2`, untrained) on the bundled held-out split
(eval/suites/bundled_test_suite.json), 1 greedy rollout per task, 5 steps, 256 new tokens per reply,
4 workers, exactly what `repo-agent pipeline` runs for "eval: base student". Modes:
- free: `--no-early-stop`; every reply runs until its JSON object closes, the turn ends or 256 tokens;
- early_stop: the default; a reply stops as soon as it can no longer parse (same parse-error steps);
- constrained: `--constrained json` (with early stop, which never fires under the grammar); replies
  are decoded under the JSON schema of the action union, so they measure "can it fix" rather than
  "can it format": NOT comparable with the other two.
One model is loaded once and shared; before timing, one short generation warms it and its prefix
cache of the system prompt, so no mode pays for loading. With --reps > 1 the order rotates per
repetition. Figures per mode: wall time of the whole eval (rollouts + verdicts), generated tokens per
step, parse-error rate, steps stopped early, pass rate; and wall time relative to free (goal for early
stop: <= 0.2x). The machine is shared: the load average before and after each run is recorded.
Writes benchmarks/results/decoding_cost.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from repo_agent.agent import AgentConfig  # noqa: E402
from repo_agent.models.base import ProviderConfig, Sampling  # noqa: E402
from repo_agent.suites.task import load_suite  # noqa: E402

MODES = {
    "free": dict(early_stop=False, constrained=None),
    "early_stop": dict(early_stop=True, constrained=None),
    "constrained": dict(early_stop=True, constrained="json"),
}


def provider(model: str, mode: str, max_tokens: int) -> ProviderConfig:
    return ProviderConfig(provider="local", model=model, sampling=Sampling(temperature=0.0, max_tokens=max_tokens),
                          **MODES[mode])


def warm_up(model: str, suite) -> None:
    """Load the model, fill the prefix cache with the system prompt, compile the grammar once."""
    from repo_agent.models.local_hf import LocalModel
    from repo_agent.prompts import goal_message, system_prompt

    chat = [{"role": "system", "content": system_prompt("json")}, {"role": "user", "content": goal_message(suite.tasks[0].goal)}]
    for mode in ("free", "constrained"):
        LocalModel(provider(model, mode, 4), seed=0).complete(chat)


def run_mode(suite, model: str, mode: str, args, trace_dir: Path) -> dict:
    from repo_agent.evaluate.report import build_report, load_run
    from repo_agent.rollouts import run_rollouts

    agent = AgentConfig(max_iters=args.max_iters)
    load_before = os.getloadavg()
    started = time.perf_counter()
    run_rollouts(suite, provider(model, mode, args.max_tokens), agent, trace_dir, rollouts=1,
                 num_workers=args.num_workers, seed=0, redo=True, show_progress=False)
    wall = time.perf_counter() - started
    overall = build_report(load_run(trace_dir))["overall"]
    kinds: dict[str, int] = {}
    for path in sorted((trace_dir / "traces").glob("*.json")):
        for step in json.loads(path.read_text(encoding="utf-8"))["steps"]:
            if step.get("parse_error"):
                kinds[step["parse_error"]["kind"]] = kinds.get(step["parse_error"]["kind"], 0) + 1
    return {
        "mode": mode, "wall_s": round(wall, 2), "load_avg_1m_before": round(load_before[0], 2),
        "load_avg_1m_after": round(os.getloadavg()[0], 2),
        "rollouts": overall["rollouts"], "steps": overall["steps"],
        "tokens_out": overall["tokens_out"], "tokens_out_per_step": round(overall["tokens_out"] / max(1, overall["steps"]), 1),
        "tokens_in": overall["tokens_in"],
        "parse_error_rate": overall["parse_error_rate"], "parse_error_kinds": kinds,
        "stopped_early_steps": overall.get("stopped_early", 0),
        "runs_writing_file": overall["runs_writing_file"], "pass_rate": overall["pass_rate"],
        "model_time_s": overall["model_time_s"],
    }


def machine() -> dict:
    import torch
    import transformers

    try:
        from importlib.metadata import version

        xgrammar = version("xgrammar")
    except Exception:  # not installed: the constrained mode will fail and say so
        xgrammar = None
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "xgrammar": xgrammar, "platform": platform.platform(),
            "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--suite", type=Path, default=REPO / "eval" / "suites" / "bundled_test_suite.json")
    parser.add_argument("--max-iters", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--num-workers", type=int, default=4)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--modes", default="free,early_stop,constrained")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "decoding_cost.json")
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; choose from {', '.join(MODES)}")
    suite = load_suite(args.suite)
    warm_up(args.model, suite)
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="decoding-cost-") as scratch:
        for rep in range(args.reps):
            order = modes[rep % len(modes):] + modes[: rep % len(modes)]
            for mode in order:
                result = run_mode(suite, args.model, mode, args, Path(scratch) / f"{mode}_{rep}")
                result["rep"] = rep
                runs.append(result)
                print(json.dumps(result), flush=True)
    summary = {}
    for mode in modes:
        mine = [r for r in runs if r["mode"] == mode]
        summary[mode] = {key: statistics.median(r[key] for r in mine)
                         for key in ("wall_s", "tokens_out_per_step", "parse_error_rate", "stopped_early_steps", "pass_rate",
                                     "runs_writing_file", "steps")}
        if "free" in modes:
            ratios = [r["wall_s"] / f["wall_s"] for r in mine for f in runs if f["mode"] == "free" and f["rep"] == r["rep"]]
            summary[mode]["wall_vs_free"] = round(statistics.median(ratios), 3)
    print(f"\n{'mode':<12} {'wall s':>8} {'x free':>7} {'tok/step':>9} {'parse err':>9} {'stopped':>8} {'pass':>6} {'writes':>7}")
    for mode, s in summary.items():
        print(f"{mode:<12} {s['wall_s']:>8.1f} {s.get('wall_vs_free', float('nan')):>7.3f} {s['tokens_out_per_step']:>9.1f} "
              f"{s['parse_error_rate']:>9.2f} {s['stopped_early_steps']:>8} {s['pass_rate']:>6.2f} {s['runs_writing_file']:>7.2f}")
    loads = [r[k] for r in runs for k in ("load_avg_1m_before", "load_avg_1m_after")]
    print(f"load average (1 min) during the runs: {min(loads):.1f} - {max(loads):.1f} on {os.cpu_count()} cores")
    record = {"benchmark": "decoding_cost", "issue": 16, "machine": machine(), "settings": {
        "model": args.model, "suite": str(args.suite.relative_to(REPO) if args.suite.is_relative_to(REPO) else args.suite),
        "max_iters": args.max_iters, "max_tokens": args.max_tokens, "num_workers": args.num_workers,
        "rollouts_per_task": 1, "temperature": 0.0, "reps": args.reps, "modes": modes},
        "goal": "early_stop wall time <= 0.2x free", "runs": runs, "summary": summary,
        "load_avg_1m_range": [min(loads), max(loads)], "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
