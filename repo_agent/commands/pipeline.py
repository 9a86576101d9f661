"""`repo-agent pipeline`: the whole loop in one command, offline, on the embedded model.

teacher rollouts on the train split -> sft-extract -> finetune local sft -> eval base and fine-tuned on
the test split -> report compare. Every stage is the same command a user can run alone, with the same
artefacts; the pipeline prints each command before running it, and every stage resumes, so re-running
the pipeline after an interruption continues where it stopped.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.rule import Rule

console = Console(stderr=True)
REPO_SUITES = Path("eval/suites")


class StageRecord:
    """pipeline.json, rewritten atomically after every stage (a failed one too), so a kill at any moment
    leaves the record of every stage that ended, never half a file."""

    def __init__(self, path: Path):
        self.path = path
        self.stages: list[dict] = []

    def add(self, stage: dict) -> None:
        self.stages.append(stage)
        self.save(finished=False)

    def save(self, finished: bool) -> None:
        from ..atomic import atomic_write_json

        atomic_write_json(self.path, {"stages": self.stages, "finished": finished})


def _stage(title: str, args: list[str], record: StageRecord) -> None:
    from ..cli import app

    console.print(Rule(f"[bold]{title}"))
    console.print(f"$ repo-agent {shlex.join(args)}", style="cyan", soft_wrap=True)
    started = time.monotonic()
    entry = {"stage": title, "command": ["repo-agent", *args]}
    try:
        code = app(args, standalone_mode=False, prog_name="repo-agent")
    except BaseException as exc:  # a usage error, a crash or Ctrl-C inside the stage: record it, then let it propagate
        record.add({**entry, "seconds": round(time.monotonic() - started, 1),
                    "exit_code": getattr(exc, "exit_code", None), "error": f"{type(exc).__name__}: {exc}"})
        raise
    elapsed = time.monotonic() - started
    record.add({**entry, "seconds": round(elapsed, 1), "exit_code": code or 0})
    if code:
        console.print(f"[red]stage '{title}' failed with exit code {code}; fix it and re-run: finished stages are kept.")
        raise typer.Exit(code)
    console.print(f"[dim]{title}: {elapsed:.0f}s")


def pipeline(
    out: Annotated[Path, typer.Option("--out", help="Run folder for every artefact of the pipeline.")] = Path("runs/pipeline"),
    model: Annotated[str, typer.Option("--model", help="Student model: 'smollm2' (embedded), an HF folder or a GGUF path.")] = "smollm2",
    train_suite: Annotated[Path, typer.Option("--train-suite", help="Tasks the teacher solves (training side of the split).")] = REPO_SUITES / "bundled_train_suite.json",
    test_suite: Annotated[Path, typer.Option("--test-suite", help="Held-out tasks for evaluation (never trained on).")] = REPO_SUITES / "bundled_test_suite.json",
    teacher_provider: Annotated[str, typer.Option("--teacher-provider", help="oracle (offline, knows the reference fix), openai, together, ...")] = "oracle",
    teacher_model: Annotated[str, typer.Option("--teacher-model", help="Teacher model id (ignored by the oracle).")] = "oracle",
    teacher_base_url: Annotated[str, typer.Option("--teacher-base-url", help="OpenAI-compatible endpoint of the teacher.")] = "",
    rollouts: Annotated[int, typer.Option("--rollouts", min=1, help="Teacher rollouts per training task.")] = 2,
    max_steps: Annotated[int, typer.Option("--max-steps", help="LoRA optimizer steps (-1: one full epoch).")] = 40,
    learning_rate: Annotated[float, typer.Option("--learning-rate")] = 5e-4,
    lora_r: Annotated[int, typer.Option("--lora-r")] = 16,
    max_seq_len: Annotated[int, typer.Option("--max-seq-len", help="Longer SFT examples are dropped (counted), never truncated.")] = 2048,
    eval_rollouts: Annotated[int, typer.Option("--eval-rollouts", min=1, help="Evaluation episodes per held-out task.")] = 1,
    eval_max_iters: Annotated[int, typer.Option("--eval-max-iters", min=1, help="Step budget of evaluation episodes.")] = 5,
    eval_max_tokens: Annotated[int, typer.Option("--eval-max-tokens", min=16, help="Max new tokens per student reply (the base model rambles up to it).")] = 256,
    eval_temperature: Annotated[float, typer.Option("--eval-temperature", min=0.0, help="0 = greedy (deterministic); use > 0 with --eval-rollouts > 1.")] = 0.0,
    num_workers: Annotated[int, typer.Option("--num-workers", min=1)] = 4,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Teacher rollouts -> step SFT data -> LoRA SFT of the student -> eval base vs fine-tuned -> comparison."""
    out.mkdir(parents=True, exist_ok=True)
    log = StageRecord(out / "pipeline.json")
    teacher = ["--llm-provider", teacher_provider, "--model", teacher_model]
    if teacher_base_url:
        teacher += ["--base-url", teacher_base_url]
    sft_file = out / "sft" / "train_sft.jsonl"
    adapter = out / "adapter"
    student = ["--llm-provider", "local", "--model", model, "--max-iters", str(eval_max_iters),
               "--max-tokens", str(eval_max_tokens), "--rollouts", str(eval_rollouts), "--temperature", str(eval_temperature),
               "--num-workers", str(num_workers), "--seed", str(seed)]
    _stage("teacher rollouts + preference pairs", [
        "prefs", "--suite", str(train_suite), "--rollouts", str(rollouts), "--trace-dir", str(out / "teacher"),
        "--out", str(out / "teacher" / "_prefs.jsonl"), *teacher, "--num-workers", str(num_workers), "--seed", str(seed)], log)
    _stage("step-level SFT data", [
        "sft-extract", "--trace-dir", str(out / "teacher"), "--output", str(sft_file),
        "--split-suite", str(test_suite), "--max-tokens", str(max_seq_len), "--tokenizer", model], log)
    _stage("LoRA SFT of the student", [
        "finetune", "local", "sft", "--dataset", str(sft_file), "--model", model, "--output", str(adapter),
        "--max-steps", str(max_steps), "--learning-rate", str(learning_rate), "--lora-r", str(lora_r),
        "--max-seq-len", str(max_seq_len), "--seed", str(seed)], log)
    _stage("eval: base student", ["eval", "--suite", str(test_suite), "--trace-dir", str(out / "eval_base"), *student], log)
    _stage("eval: fine-tuned student", [
        "eval", "--suite", str(test_suite), "--trace-dir", str(out / "eval_sft"), *student, "--adapter", str(adapter)], log)
    _stage("compare base vs fine-tuned", [
        "report", "compare", str(out / "eval_base"), str(out / "eval_sft"), "--out", str(out / "compare")], log)
    log.save(finished=True)
    total = sum(s["seconds"] for s in log.stages)
    console.print(Rule("[bold]done"))
    console.print(f"pipeline finished in {total / 60:.1f} min; comparison: {out / 'compare'}")


def register(app: typer.Typer) -> None:
    app.command("pipeline")(pipeline)
