"""`repo-agent finetune local sft|dpo`: LoRA fine-tuning on this machine with TRL + PEFT.

Thin wiring over repo_agent/train/local.py plus a rich progress bar. Several GPUs:
`accelerate launch -m repo_agent.cli finetune local sft ...` (one process per GPU; rank 0 writes OUTPUT).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

console = Console(stderr=True)
local_app = typer.Typer(help="LoRA fine-tuning on this machine (TRL + PEFT; fp32 on CPU, bf16 on GPU).", no_args_is_help=True)

ModelOpt = Annotated[str, typer.Option("--model", help="Base model: 'smollm2' (embedded), a Hugging Face model folder, a .gguf file, or a Hub id already cached.")]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", "--out", help="Output folder: adapter, tokenizer, train_config.json, training_log.jsonl, loss.png, dataset.sha256, trained_tasks.json. Default runs/finetune_local_<method>_<time>.")]
LoraROpt = Annotated[int, typer.Option("--lora-r", min=1, help="LoRA rank.")]
LoraAlphaOpt = Annotated[int, typer.Option("--lora-alpha", min=1, help="LoRA alpha (scale = alpha / r).")]
LoraDropoutOpt = Annotated[float, typer.Option("--lora-dropout", min=0.0, max=1.0, help="Dropout on the LoRA path.")]
EpochsOpt = Annotated[float, typer.Option("--epochs", min=0.0, help="Passes over the data (ignored when --max-steps > 0).")]
MaxStepsOpt = Annotated[int, typer.Option("--max-steps", help="Stop after this many optimizer steps (-1: use --epochs).")]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Examples per device per forward pass.")]
GradAccumOpt = Annotated[int, typer.Option("--grad-accum", min=1, help="Forward passes per optimizer step (effective batch = batch size x this x devices).")]
MaxSeqLenOpt = Annotated[Optional[int], typer.Option("--max-seq-len", min=16, help="Drop (and count) examples longer than this many tokens. Default: the longest example, so nothing is cut. TRL would cut from the end, i.e. the action being learned.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for LoRA init, data order and dropout.")]
ReportToOpt = Annotated[str, typer.Option("--report-to", help="Passed to TRL: none, wandb, tensorboard, ... (comma-separated; the integration must be installed).")]
GradCkptOpt = Annotated[bool, typer.Option("--gradient-checkpointing/--no-gradient-checkpointing", help="Trade compute for memory (useful for big models on GPU; slower on CPU).")]
SaveStepsOpt = Annotated[int, typer.Option("--save-steps", min=1, help="Checkpoint every N steps; a crashed run resumes from the last one when rerun with the same settings.")]
TaskIdsFileOpt = Annotated[Optional[Path], typer.Option("--task-ids-file", exists=True, dir_okay=False, help='Task ids trained on, for eval\'s leakage check: {"task_ids": [...]}, a JSON list, or one id per line. Default: from the rows\' "metadata" or the dataset\'s .meta.jsonl sidecar.')]
TracesOpt = Annotated[Optional[Path], typer.Option("--trained-tasks-from", exists=True, file_okay=False, help="Trace folder the dataset was extracted from: task ids are read from its traces (when no sidecar exists).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Retrain even if OUTPUT holds a finished or different run.")]


class RichProgress:
    """Adapter between the trainer callback and a rich progress bar, shown from the first step on
    (a run that is skipped or refused shows none)."""

    def __init__(self, label: str):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TimeRemainingColumn(), console=console)
        self.task = self.progress.add_task(label, total=None)
        self.label = label
        self.started = False
        self.last_loss: float | None = None

    def update(self, step: int, total: int, loss: float | None) -> None:
        if not self.started:
            self.progress.start()
            self.started = True
        if loss is not None:
            self.last_loss = loss
        text = f"{self.label} loss {self.last_loss:.4f}" if self.last_loss is not None else self.label
        self.progress.update(self.task, completed=step, total=total or None, description=text)


def _run(config: Any, force: bool) -> None:
    from ..hf_loading import ModelNotFoundError
    from ..train.common import TrainDataError
    from ..train.local import RunFolderError, train

    progress = RichProgress(f"{config.method} steps")
    try:
        outcome = train(config, force=force, progress=progress,
                        notify=lambda line: console.print(line, markup=False, soft_wrap=True, highlight=False))
    except (TrainDataError, RunFolderError, ModelNotFoundError) as exc:
        progress.progress.stop()
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from None
    progress.progress.stop()
    _print_outcome(outcome, config)


def _print_outcome(outcome: Any, config: Any) -> None:
    from rich.table import Table

    if outcome.skipped:
        console.print(f"{outcome.output} already holds this finished run (same data and settings): nothing to do; --force retrains", soft_wrap=True)
        return
    table = Table(title=f"finetune local {config.method}", show_header=False)
    table.add_row("examples", f"{outcome.examples} ({outcome.dropped} dropped as longer than --max-seq-len)")
    if outcome.trained_turns is not None:  # SFT: the budget in supervision, whichever row kind carried it
        epochs = outcome.epochs_done
        table.add_row("trained turns", f"{outcome.trained_turns} per epoch x {epochs:.2f} epochs = "
                      f"{outcome.trained_turns * epochs:.0f} turn updates ({outcome.trained_tokens} trained tokens and "
                      f"{outcome.tokens_per_epoch} tokens processed per epoch)")
    table.add_row("optimizer steps", str(outcome.steps))
    table.add_row("final train loss", f"{outcome.train_loss:.4f}" if outcome.train_loss is not None else "-")
    table.add_row("time", f"{outcome.runtime_s:.1f}s" + (f" (resumed from {outcome.resumed_from})" if outcome.resumed_from else ""))
    if outcome.train_tokens and outcome.runtime_s:
        table.add_row("training tokens/s", f"{outcome.train_tokens / outcome.runtime_s:.0f}")
    table.add_row("tasks trained on", str(len(outcome.task_ids)) if outcome.task_ids is not None else
                  "unknown (no sidecar; give --task-ids-file or --trained-tasks-from so eval can flag leakage)")
    Console().print(table)
    Console().print(f"adapter: {outcome.output}   use it with: --llm-provider local --model {config.model} --adapter {outcome.output}")


def _default_output(method: str) -> Path:
    return Path("runs") / time.strftime(f"finetune_local_{method}_%Y%m%d_%H%M%S")


@local_app.command("sft")
def sft_command(
    dataset: Annotated[Path, typer.Option("--dataset", exists=True, dir_okay=False, help="SFT JSONL from sft-extract: chat rows {\"messages\": [...]} whose assistant messages with weight 1 carry loss (step rows: the last one; episode rows: every trained turn), or TRL prompt/completion rows.")],
    model: ModelOpt = "smollm2",
    output: OutputOpt = None,
    lora_r: LoraROpt = 16,
    lora_alpha: LoraAlphaOpt = 32,
    lora_dropout: LoraDropoutOpt = 0.05,
    epochs: EpochsOpt = 1.0,
    max_steps: MaxStepsOpt = -1,
    learning_rate: Annotated[float, typer.Option("--learning-rate", min=0.0, help="Peak learning rate (linear decay). LoRA wants ~1e-4..5e-4, not TRL's full-fine-tuning 2e-5.")] = 2e-4,
    batch_size: BatchSizeOpt = 2,
    grad_accum: GradAccumOpt = 1,
    max_seq_len: MaxSeqLenOpt = None,
    seed: SeedOpt = 0,
    report_to: ReportToOpt = "none",
    packing: Annotated[bool, typer.Option("--packing/--no-packing", help="Pack several examples into one sequence of --max-seq-len tokens (TRL BFD packing; the loss stays on completions).")] = False,
    padding_free: Annotated[bool, typer.Option("--padding-free/--no-padding-free", help="Flatten each batch into one sequence without padding (TRL padding_free; meant for FlashAttention on GPU).")] = False,
    gradient_checkpointing: GradCkptOpt = False,
    save_steps: SaveStepsOpt = 50,
    task_ids_file: TaskIdsFileOpt = None,
    trained_tasks_from: TracesOpt = None,
    force: ForceOpt = False,
) -> None:
    """Supervised fine-tuning with LoRA: loss only on the LAST assistant message of each row (the action).

        repo-agent finetune local sft --dataset runs/data/sft.jsonl --model smollm2 --output runs/sft_smollm2
        repo-agent run --suite eval/suites/bundled_suite.json --task gcd --llm-provider local --model smollm2 --adapter runs/sft_smollm2
    """
    from ..train.common import LocalTrainConfig

    config = LocalTrainConfig(
        method="sft", model=model, dataset=str(dataset), output=str(output or _default_output("sft")), lora_r=lora_r,
        lora_alpha=lora_alpha, lora_dropout=lora_dropout, epochs=epochs, max_steps=max_steps, learning_rate=learning_rate,
        batch_size=batch_size, grad_accum=grad_accum, max_seq_len=max_seq_len, seed=seed, report_to=report_to,
        packing=packing, padding_free=padding_free, gradient_checkpointing=gradient_checkpointing, save_steps=save_steps,
        task_ids_file=str(task_ids_file) if task_ids_file else None,
        trained_tasks_from=str(trained_tasks_from) if trained_tasks_from else None)
    _run(config, force)


@local_app.command("dpo")
def dpo_command(
    dataset: Annotated[Path, typer.Option("--dataset", exists=True, dir_okay=False, help="Preference pairs JSONL from pairs-extract: Together rows {\"input\", \"preferred_output\", \"non_preferred_output\"} or TRL prompt/chosen/rejected rows.")],
    model: ModelOpt = "smollm2",
    output: OutputOpt = None,
    from_adapter: Annotated[Optional[Path], typer.Option("--from-adapter", exists=True, file_okay=False, help="Continue from this SFT adapter (its copy is the DPO reference model). --lora-* are then taken from it.")] = None,
    beta: Annotated[float, typer.Option("--beta", "--dpo-beta", min=0.0, help="DPO beta: how far the policy may move from the reference.")] = 0.1,
    lora_r: LoraROpt = 16,
    lora_alpha: LoraAlphaOpt = 32,
    lora_dropout: LoraDropoutOpt = 0.05,
    epochs: EpochsOpt = 1.0,
    max_steps: MaxStepsOpt = -1,
    learning_rate: Annotated[float, typer.Option("--learning-rate", min=0.0, help="Peak learning rate (linear decay).")] = 5e-5,
    batch_size: BatchSizeOpt = 2,
    grad_accum: GradAccumOpt = 1,
    max_seq_len: MaxSeqLenOpt = None,
    seed: SeedOpt = 0,
    report_to: ReportToOpt = "none",
    gradient_checkpointing: GradCkptOpt = False,
    save_steps: SaveStepsOpt = 50,
    task_ids_file: TaskIdsFileOpt = None,
    trained_tasks_from: TracesOpt = None,
    force: ForceOpt = False,
) -> None:
    """Direct preference optimisation with LoRA on step-level pairs (optionally on top of an SFT adapter).

        repo-agent finetune local dpo --dataset runs/data/pairs.jsonl --from-adapter runs/sft_smollm2 --output runs/dpo_smollm2
    """
    from ..train.common import LocalTrainConfig

    config = LocalTrainConfig(
        method="dpo", model=model, dataset=str(dataset), output=str(output or _default_output("dpo")), lora_r=lora_r,
        lora_alpha=lora_alpha, lora_dropout=lora_dropout, epochs=epochs, max_steps=max_steps, learning_rate=learning_rate,
        batch_size=batch_size, grad_accum=grad_accum, max_seq_len=max_seq_len, seed=seed, report_to=report_to,
        beta=beta, from_adapter=str(from_adapter) if from_adapter else None, gradient_checkpointing=gradient_checkpointing,
        save_steps=save_steps, task_ids_file=str(task_ids_file) if task_ids_file else None,
        trained_tasks_from=str(trained_tasks_from) if trained_tasks_from else None)
    _run(config, force)


def register(finetune_app: typer.Typer) -> None:
    """Add `finetune local sft|dpo` to the `finetune` sub-app."""
    finetune_app.add_typer(local_app, name="local")
