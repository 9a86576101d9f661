"""Step rows vs episode rows: the same trained turns, one epoch each, same settings (issue 25).

Makes the main job's teacher data (the pipeline's default teacher: oracle rollouts on the bundled train
side, 2 per task, mistakes 0.3, branched pairs, test policy on_write), extracts it as step rows and as
episode rows with the embedded model's tokenizer, then trains SmolLM2 one epoch on each with the
pipeline's SFT settings, one after the other in this process's machine (run it alone: two torch jobs on
2 cores slow each other tenfold). Reports tokens processed, trained turns and tokens, wall time and
final loss of each, and the ratios.

    .venv/bin/python benchmarks/sft_rows.py [--work runs/bench_sft_rows] [--model smollm2]
Writes benchmarks/results/sft_rows.json. Goal: >= 2.5x fewer tokens and >= 2x less wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUITES = REPO / "eval" / "suites"


def cli(*args: str) -> tuple[float, str]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "repo_agent.cli", *args], cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"repo-agent {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.monotonic() - started, proc.stdout + proc.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "bench_sft_rows")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--max-seq-len", type=int, default=2048)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "sft_rows.json")
    args = parser.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    cli("prefs", "--suite", str(SUITES / "bundled_train_suite.json"), "--rollouts", "2", "--trace-dir", str(work / "teacher"),
        "--out", str(work / "teacher" / "_prefs.jsonl"), "--llm-provider", "oracle", "--test-policy", "on_write",
        "--toolset", "files", "--oracle-mistake-rate", "0.3", "--branch-pairs", "--split-suite",
        str(SUITES / "bundled_test_suite.json"), "--num-workers", "4", "--seed", "0")
    result: dict = {"benchmark": "sft_rows", "model": args.model,
                    "machine": {"platform": platform.platform(), "python": platform.python_version(), "cores": os.cpu_count()},
                    "settings": {"epochs": 1, "learning_rate": 5e-4, "lora_r": 16, "batch_size": 1, "grad_accum": 2,
                                 "max_seq_len": args.max_seq_len, "seed": 0}}
    for kind in ("step", "episode"):
        data = work / f"{kind}.jsonl"
        cli("sft-extract", "--trace-dir", str(work / "teacher"), "--output", str(data), "--rows", kind, "--split-suite",
            str(SUITES / "bundled_test_suite.json"), "--max-tokens", str(args.max_seq_len), "--tokenizer", args.model)
        stats = json.loads(data.with_name(f"{kind}.stats.json").read_text())
        load = os.getloadavg()
        seconds, _ = cli("finetune", "local", "sft", "--dataset", str(data), "--model", args.model, "--output",
                         str(work / f"adapter_{kind}"), "--epochs", "1", "--learning-rate", "5e-4", "--lora-r", "16",
                         "--max-seq-len", str(args.max_seq_len), "--batch-size", "1", "--grad-accum", "2", "--seed", "0", "--force")
        record = json.loads((work / f"adapter_{kind}" / "train_config.json").read_text())
        summary, info = record["summary"], record["data"]
        result[kind] = {"rows": info["examples"], "trained_turns": info["trained_turns_per_epoch"],
                        "trained_tokens": info["trained_tokens_per_epoch"], "tokens_processed": info["tokens_per_epoch"],
                        "optimizer_steps": summary["steps"], "train_runtime_s": summary["runtime_s"],
                        "command_wall_s": round(seconds, 1), "final_train_loss": summary["train_loss"],
                        "removed": stats["removed"], "load_avg_before": load}
        print(kind, json.dumps(result[kind]), flush=True)
    step, episode = result["step"], result["episode"]
    result["ratios"] = {"tokens_processed": round(step["tokens_processed"] / episode["tokens_processed"], 2),
                        "train_runtime": round(step["train_runtime_s"] / episode["train_runtime_s"], 2),
                        "same_trained_turns": step["trained_turns"] == episode["trained_turns"],
                        "same_trained_tokens": step["trained_tokens"] == episode["trained_tokens"]}
    result["goal"] = {"tokens_x": 2.5, "wall_x": 2.0, "met": result["ratios"]["tokens_processed"] >= 2.5
                      and result["ratios"]["train_runtime"] >= 2.0}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["ratios"], indent=2), json.dumps(result["goal"]))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
