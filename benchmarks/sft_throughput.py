"""LoRA SFT throughput (issue 7 item 6): `repo-agent finetune local sft` vs a plain TRL script with the
same model, data and settings, plus what packing and padding-free buy.

    .venv/bin/python benchmarks/sft_throughput.py [--model smollm2] [--max-steps 4] [--reps 2]
                                                  [--variants repo-agent,plain-trl,packing,padding-free]

Data: tests/golden/sft_json.jsonl (27 step examples of real bundled-suite episodes, sft-extract output).
Settings shared by every variant: LoRA r=16 alpha=32 dropout 0.05 on all linear layers, batch 2,
lr 2e-4, fp32 on CPU, no gradient checkpointing, --max-steps optimizer steps, seed 0.
Variants, each a fresh process (so model loading is paid by all alike):
  - repo-agent:   `repo-agent finetune local sft ...`
  - plain-trl:    a ~30-line script that reads the JSONL, makes TRL prompt/completion rows and calls SFTTrainer
  - packing:      repo-agent with --packing (TRL BFD packing; implies padding-free)
  - padding-free: repo-agent with --padding-free
Figures per variant (median, min-max over repetitions, interleaved with a rotating order):
  - training tokens/s = TRL's num_tokens (real, non-pad tokens) / train_runtime (the training loop);
  - wall seconds of the whole process (imports, loading, data preparation, training, saving);
  - overhead ratio = plain-trl tokens/s / repo-agent tokens/s (goal <= 1.05), and the same for wall time.
Writes benchmarks/results/sft_throughput.json.
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
DATA = REPO / "tests" / "golden" / "sft_json.jsonl"

PLAIN_TRL = r'''
import json, sys
import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

model_dir, data, out, max_steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
rows = []
for line in open(data):
    messages = [{"role": m["role"], "content": m["content"]} for m in json.loads(line)["messages"]]
    rows.append({"prompt": messages[:-1], "completion": messages[-1:]})
tokenizer = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
longest = max(len(tokenizer.apply_chat_template(r["prompt"] + r["completion"], tokenize=True, return_dict=True)["input_ids"]) for r in rows)
args = SFTConfig(output_dir=out, max_steps=max_steps, learning_rate=2e-4, per_device_train_batch_size=2,
                 gradient_accumulation_steps=1, seed=0, data_seed=0, report_to=[], logging_steps=1, save_strategy="no",
                 bf16=False, use_cpu=True, gradient_checkpointing=False, disable_tqdm=True, max_length=longest,
                 lr_scheduler_type="linear", completion_only_loss=True)
lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer, peft_config=lora)
result = trainer.train()
trainer.save_model(out)
tokens = max(r.get("num_tokens", 0) for r in trainer.state.log_history)
print("RESULT " + json.dumps({"train_runtime": result.metrics["train_runtime"], "num_tokens": tokens}))
'''


def run_variant(variant: str, model: str, model_dir: Path, max_steps: int, work: Path) -> dict:
    out = work / f"{variant}-{time.monotonic_ns()}"
    if variant == "plain-trl":
        command = [sys.executable, "-c", PLAIN_TRL, str(model_dir), str(DATA), str(out), str(max_steps)]
    else:
        command = [str(BIN / "repo-agent"), "finetune", "local", "sft", "--dataset", str(DATA), "--model", model,
                   "--output", str(out), "--max-steps", str(max_steps), "--batch-size", "2", "--learning-rate", "2e-4",
                   "--lora-r", "16", "--lora-alpha", "32"]
        if variant == "packing":
            command.append("--packing")
        if variant == "padding-free":
            command.append("--padding-free")
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{completed.stderr[-3000:]}")
    if variant == "plain-trl":
        line = next(l for l in completed.stdout.splitlines() if l.startswith("RESULT "))
        metrics = json.loads(line[len("RESULT "):])
    else:
        log = [json.loads(l) for l in (out / "training_log.jsonl").read_text().splitlines()]
        metrics = {"train_runtime": next(r["train_runtime"] for r in log if "train_runtime" in r),
                   "num_tokens": max(r.get("num_tokens", 0) for r in log)}
    return {"wall_s": wall, "train_runtime_s": metrics["train_runtime"], "num_tokens": metrics["num_tokens"],
            "tokens_per_s": metrics["num_tokens"] / metrics["train_runtime"]}


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--max-steps", type=int, default=4)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--variants", default="repo-agent,plain-trl,packing,padding-free")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "sft_throughput.json"))
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from repo_agent.hf_loading import resolve_model

    model_dir = resolve_model(args.model)
    variants = args.variants.split(",")
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="sft-throughput-") as tmp:
        for rep in range(args.reps):
            order = variants[rep % len(variants):] + variants[: rep % len(variants)]
            for variant in order:
                run = run_variant(variant, args.model, model_dir, args.max_steps, Path(tmp))
                runs[variant].append(run)
                print(f"rep {rep + 1} {variant:>12}: {run['tokens_per_s']:7.1f} tok/s, train {run['train_runtime_s']:6.1f} s, "
                      f"wall {run['wall_s']:6.1f} s, {run['num_tokens']:.0f} tokens", flush=True)
    table = {v: {"tokens_per_s": summary([r["tokens_per_s"] for r in rs]), "wall_s": summary([r["wall_s"] for r in rs]),
                 "num_tokens": summary([r["num_tokens"] for r in rs])} for v, rs in runs.items()}
    ratios = {}
    if "repo-agent" in runs and "plain-trl" in runs:
        pairs = list(zip(runs["plain-trl"], runs["repo-agent"]))
        ratios["overhead_tokens_per_s"] = summary([p["tokens_per_s"] / r["tokens_per_s"] for p, r in pairs])
        ratios["overhead_wall"] = summary([r["wall_s"] / p["wall_s"] for p, r in pairs])
    for variant in ("packing", "padding-free"):
        if variant in runs and "repo-agent" in runs:
            ratios[f"{variant}_speedup_tokens_per_s"] = summary(
                [v["tokens_per_s"] / r["tokens_per_s"] for v, r in zip(runs[variant], runs["repo-agent"])])
    result = {
        "benchmark": "sft_throughput",
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "load_average": os.getloadavg(),
                    "note": "2 CPU cores shared with other jobs: absolute numbers are noisy; ratios are paired per repetition"},
        "settings": {"model": args.model, "data": str(DATA.relative_to(REPO)), "max_steps": args.max_steps, "reps": args.reps,
                     "lora": "r16 a32 d0.05 all-linear", "batch_size": 2, "learning_rate": 2e-4},
        "variants": table, "ratios": ratios, "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'variant':>12} | {'train tokens/s median (min-max)':>32} | {'wall s median (min-max)':>24}")
    for variant, row in table.items():
        t, w = row["tokens_per_s"], row["wall_s"]
        print(f"{variant:>12} | {t['median']:14.1f} ({t['min']:.1f}-{t['max']:.1f}) | {w['median']:9.1f} ({w['min']:.1f}-{w['max']:.1f})")
    for name, value in ratios.items():
        print(f"{name}: {value['median']:.3f} (min {value['min']:.3f}, max {value['max']:.3f})")
    print(f"machine: {result['machine']}\nwritten: {args.out}")


if __name__ == "__main__":
    main()
