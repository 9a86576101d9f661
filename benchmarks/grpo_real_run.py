"""The real GRPO run on the embedded model (issue 17): what it cost and what it changed, read from the
run folders (nothing is re-run here). Reproduce the run with (the main job first: its SFT adapter is
GRPO's start and its SFT eval the baseline):

    bash scripts/main.sh                                            # runs/pipeline: adapter, eval_sft, ...
    repo-agent grpo --suite eval/suites/bundled_train_suite.json --model smollm2 \
        --from-adapter runs/pipeline/adapter --num-generations 4 --max-steps 4 --token-budget 1536 \
        --max-tokens 256 --max-iters 6 --test-policy on_write --learning-rate 5e-5 --save-steps 2 \
        --output runs/pipeline/grpo
    repo-agent eval --suite eval/suites/bundled_test_suite.json --trace-dir runs/pipeline/eval_grpo \
        --llm-provider local --model smollm2 --max-iters 10 --max-tokens 214 --rollouts 1 --temperature 0 \
        --test-policy on_write --toolset files --num-workers 4 --seed 0 --adapter runs/pipeline/grpo
    repo-agent report compare runs/pipeline/eval_sft runs/pipeline/eval_grpo --out runs/pipeline/compare_grpo

(the eval flags are the main job's own for its SFT eval, from runs/pipeline/pipeline.json), then
`.venv/bin/python benchmarks/grpo_real_run.py --run runs/pipeline` prints the figures and writes
benchmarks/results/grpo_real_run.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=REPO / "runs" / "pipeline")
    parser.add_argument("--grpo", type=Path, default=None,
                        help="the GRPO run folder (default RUN/grpo), e.g. a timing rerun of the same command")
    parser.add_argument("--note", default="", help="free text recorded with the figures (e.g. how the SFT adapter was made)")
    args = parser.parse_args()
    run = args.run
    grpo_dir = args.grpo or run / "grpo"
    grpo = read_json(grpo_dir / "grpo_config.json")
    summary = grpo["summary"]
    log = [json.loads(line) for line in (grpo_dir / "training_log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "reward" in r]
    rollouts = sorted((grpo_dir / "rollouts").rglob("*.json"))
    traces = [read_json(p) for p in rollouts]
    stop_reasons: dict[str, int] = {}
    for trace in traces:
        stop_reasons[trace.get("stop_reason")] = stop_reasons.get(trace.get("stop_reason"), 0) + 1
    per_step = [{"step": r["step"], "step_time_s": round(r.get("step_time", float("nan")), 1), "reward": r["reward"],
                 "reward_std": r.get("reward_std"), "frac_reward_zero_std": r.get("frac_reward_zero_std"),
                 **{k.split("/")[1]: v for k, v in r.items() if k.startswith("rewards/") and k.endswith("/mean")},
                 "completion_tokens_trained_mean": r.get("completions/mean_length"),
                 "clipped_ratio": r.get("completions/clipped_ratio")} for r in steps]
    step_times = [r["step_time"] for r in steps if "step_time" in r]
    comparison = read_json(run / "compare_grpo" / "comparison.json")
    sft_report, grpo_report = read_json(run / "eval_sft" / "report.json"), read_json(run / "eval_grpo" / "report.json")
    record = {
        "benchmark": "grpo_real_run",
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpu_count": os.cpu_count(),
                    "load_average_now": os.getloadavg(),
                    "note": "2 CPU cores shared with other jobs during the run (see note)"},
        "grpo_run": str(grpo_dir),
        "settings": grpo["settings"],
        "note": args.note,
        "training": {
            "steps": summary["steps"], "runtime_s": summary["runtime_s"],
            "seconds_per_step_median": statistics.median(step_times) if step_times else None,
            "seconds_per_step_mean": summary["seconds_per_step"],
            "rollouts": summary["rollouts"], "rollouts_per_hour": summary["rollouts_per_hour"],
            "per_step": per_step, "stop_reasons": stop_reasons, "traces_kept": len(rollouts),
        },
        "held_out_eval": {
            "suite": comparison["suite_id"], "tasks": comparison["tasks"],
            "sft": {k: comparison["metrics"][k]["baseline"] for k in comparison["metrics"]},
            "grpo": {k: comparison["metrics"][k]["candidate"] for k in comparison["metrics"]},
            "pass_rate_difference": comparison["metrics"]["pass_rate"]["difference"],
            "pass_rate_ci": [comparison["metrics"]["pass_rate"]["ci_low"], comparison["metrics"]["pass_rate"]["ci_high"]],
            "mcnemar": comparison["mcnemar"], "verdict": comparison["verdict"], "warnings": comparison["warnings"],
            "eval_wall_s": {"sft": sft_report.get("wall_time_s"), "grpo": grpo_report.get("wall_time_s")},
        },
    }
    print(f"GRPO: {summary['steps']} steps, {summary['rollouts']} rollouts in {summary['runtime_s']:.0f} s "
          f"({record['training']['seconds_per_step_median']:.0f} s/step median, {summary['rollouts_per_hour']} rollouts/hour)")
    print(f"{'step':>4} {'s':>6} {'reward':>7} {'zero-var':>8}  per reward")
    for s in per_step:
        rewards = ", ".join(f"{k} {v:.2f}" for k, v in s.items() if k not in ("step", "step_time_s", "reward", "reward_std",
                            "frac_reward_zero_std", "completion_tokens_trained_mean", "clipped_ratio") and v is not None)
        print(f"{s['step']:>4} {s['step_time_s']:>6} {s['reward']:>7.3f} {s['frac_reward_zero_std']:>8.2f}  {rewards}")
    print(f"stop reasons: {stop_reasons}")
    print(f"held-out ({comparison['tasks']} tasks): pass rate SFT {record['held_out_eval']['sft']['pass_rate']} -> "
          f"GRPO {record['held_out_eval']['grpo']['pass_rate']}; {comparison['verdict']}")
    for name in ("parse_error_rate", "runs_writing_file", "loop_detections_per_run"):
        if name in comparison["metrics"]:
            m = comparison["metrics"][name]
            print(f"  {name}: {m['baseline']} -> {m['candidate']} (95% CI of the difference {m['ci_low']}..{m['ci_high']})")
    out = REPO / "benchmarks" / "results" / "grpo_real_run.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
