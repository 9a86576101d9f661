"""Local LoRA fine-tuning with TRL + PEFT: SFT (SFTTrainer) and DPO (DPOTrainer), CPU or GPU.

TRL's own config objects (SFTConfig / DPOConfig) are built here and serialized as they are into the
output folder; only the defaults that are wrong for LoRA on a CPU are overridden (bf16 and gradient
checkpointing off, a LoRA-sized learning rate, a log record every step).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..atomic import atomic_write_text
from ..digest import file_sha256
from ..provenance import trained_task_ids
from . import common as C
from .checkpoints import is_main_process, resume_point, step_of


class RunFolderError(ValueError):
    """OUTPUT holds something this run must not overwrite or resume."""


@dataclass
class TrainOutcome:
    output: Path
    skipped: bool  # already trained with the same settings: nothing was done
    steps: int
    train_loss: float | None
    runtime_s: float
    train_tokens: int
    examples: int
    dropped: int
    task_ids: list[str] | None
    resumed_from: str | None
    skipped_checkpoints: list[str] = field(default_factory=list)  # what resume set aside, and why
    trained_turns: int | None = None  # SFT: assistant turns carrying loss per epoch (either row kind)
    trained_tokens: int | None = None  # SFT: tokens carrying loss per epoch
    tokens_per_epoch: int | None = None  # tokens processed per epoch
    epochs_done: float = 0.0


def _settings(config: C.LocalTrainConfig, dataset_sha: str) -> dict[str, Any]:
    """What makes two runs the same run (for resume and for the 'already done' check)."""
    settings = config.to_dict()
    for key in ("extra", "output", "report_to", "save_steps"):
        settings.pop(key)
    settings["dataset_sha256"] = dataset_sha
    return settings


def _previous(output: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The run record OUTPUT holds, or (None, why it cannot be read). It is written atomically, so an
    unreadable one comes from outside (a damaged disk, a hand edit), not from a kill."""
    import json

    path = output / C.CONFIG_FILE
    if not path.is_file():
        return None, None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, f"{path} is unreadable ({exc.__class__.__name__})"
    return (record, None) if isinstance(record, dict) else (None, f"{path} is not a JSON object")


def _set_aside_unverifiable(output: Path, why: str) -> str | None:
    """Checkpoints whose run record is unreadable cannot be shown to belong to this run: they are moved
    to incomplete_checkpoints/ (kept, not trusted) and the run starts over. Returns what was done."""
    checkpoints = output / C.CHECKPOINTS
    if not checkpoints.is_dir() or not any(checkpoints.iterdir()):
        return None
    target = output / C.INCOMPLETE / time.strftime("unverified-%Y%m%d-%H%M%S")
    target.parent.mkdir(parents=True, exist_ok=True)
    checkpoints.rename(target)
    return f"{why}: its checkpoints cannot be checked against these settings; moved them to {target} and starting over"


def _reference_adapter_files(config: C.LocalTrainConfig) -> tuple[str, ...]:
    """DPO on top of --from-adapter keeps a frozen copy of it as the adapter "ref", saved in every
    checkpoint's ref/ folder; resuming without it would break the reference model."""
    if config.method == "dpo" and config.from_adapter:
        return ("ref/adapter_config.json", "ref/adapter_model.safetensors")
    return ()


def _load_for_training(config: C.LocalTrainConfig) -> tuple[Any, Any]:
    from ..hf_loading import load_model, load_tokenizer

    tokenizer = load_tokenizer(config.model, padding_side="right")
    # no device_map: the Trainer (and `accelerate launch`) places the model, one copy per process
    model = load_model(config.model, device_map=None)
    if config.from_adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, config.from_adapter, is_trainable=True)
    return model, tokenizer


def _token_counter(tokenizer: Any):
    def count(messages: list[dict[str, Any]], tools: Any) -> int:
        encoded = tokenizer.apply_chat_template(messages, tools=tools, tokenize=True, return_dict=True)
        return len(encoded["input_ids"])

    return count


def _trl_args(config: C.LocalTrainConfig, max_length: int) -> Any:
    import torch

    on_gpu = torch.cuda.is_available()
    common = dict(
        output_dir=str(Path(config.output) / C.CHECKPOINTS),
        num_train_epochs=config.epochs, max_steps=config.max_steps, learning_rate=config.learning_rate,
        per_device_train_batch_size=config.batch_size, gradient_accumulation_steps=config.grad_accum,
        seed=config.seed, data_seed=config.seed, report_to=[] if config.report_to == "none" else config.report_to.split(","),
        logging_steps=1, save_strategy="steps", save_steps=config.save_steps, save_total_limit=1,
        bf16=on_gpu, fp16=False, use_cpu=not on_gpu, gradient_checkpointing=config.gradient_checkpointing,
        disable_tqdm=True, dataloader_num_workers=0, lr_scheduler_type="linear", max_length=max_length,
    )
    if config.method == "sft":
        from trl import SFTConfig

        if config.padding_free and not config.packing:
            common["max_length"] = None  # TRL refuses a limit it cannot enforce here; over-long rows are already dropped
        return SFTConfig(**common, completion_only_loss=True, packing=config.packing, padding_free=config.padding_free)
    from trl import DPOConfig

    return DPOConfig(**common, beta=config.beta)


def sft_rows_tokenized(tokenizer: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """SFT rows (chat rows with weights, or TRL prompt/completion rows) as ids and labels: -100 except on
    the tokens of every trained turn. A row whose template is not prefix-preserving is refused."""
    import json as _json

    from .episode_tokens import weighted_sequence

    out, problems = [], []
    for number, row in enumerate(rows, 1):
        if "messages" in row:
            messages = row["messages"]
        else:  # TRL prompt/completion: the completion's message is the trained one
            messages = [*row["prompt"], *({**m, "weight": 1} for m in row["completion"])]
            messages = [{**m, "weight": 0} if i < len(row["prompt"]) else m for i, m in enumerate(messages)]
        tools = row.get("tools")
        tools = _json.loads(tools) if isinstance(tools, str) else tools
        seq = weighted_sequence(tokenizer, messages, tools or None)
        problems += [f"row {number}: {p}" for p in seq.problems]
        if not seq.turns and not seq.problems:
            problems.append(f"row {number}: no trained assistant turn")
        out.append({"input_ids": seq.ids, "labels": [t if m else -100 for t, m in zip(seq.ids, seq.mask)],
                    "trained_turns": len(seq.turns)})
    if problems:
        listed = "\n".join(f"  {p}" for p in problems[:10])
        raise C.TrainDataError(f"{len(problems)} row problem(s); a chat template that is not prefix-preserving cannot train "
                               f"these rows (step rows are the only correct choice then):\n{listed}")
    return out


def build_trainer(config: C.LocalTrainConfig, callbacks: list[Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """Everything up to (not including) `trainer.train()`: validated data, model, LoRA, TRL trainer.
    Returned separately so tests can inspect the collator's labels on the real trainer."""
    from datasets import Dataset
    from peft import LoraConfig

    dataset_path = Path(config.dataset)
    kind = C.validate_dataset(dataset_path, config.method)
    rows = C.read_jsonl(dataset_path)
    model, tokenizer = _load_for_training(config)
    context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if config.method == "sft":  # labels from the rows' per-message weights (episode_tokens.weighted_sequence)
        trl_rows = sft_rows_tokenized(tokenizer, rows)
        lengths = [len(r["input_ids"]) for r in trl_rows]
    else:
        trl_rows = [C.pair_row_to_trl(r) for r in rows]
        lengths = C.conversation_lengths(trl_rows, _token_counter(tokenizer))
    plan = C.plan_lengths(lengths, config.max_seq_len, context)
    kept = [trl_rows[i] for i in plan.kept]
    if not kept:
        raise C.TrainDataError(f"all {len(trl_rows)} examples are longer than --max-seq-len {plan.max_length} "
                               f"(the longest has {plan.longest} tokens): raise --max-seq-len")
    if config.method != "sft" and all(r["tools"] is None for r in kept):
        kept = [{k: v for k, v in r.items() if k != "tools"} for r in kept]
    try:
        task_ids, task_source = trained_task_ids(dataset_path, rows, config.task_ids_file, config.trained_tasks_from)
    except ValueError as exc:
        raise C.TrainDataError(str(exc)) from None
    info = {"dataset_kind": kind, "examples": len(kept), "dropped_too_long": len(plan.dropped),
            "dropped_rows": plan.dropped, "max_length": plan.max_length, "longest_example_tokens": plan.longest,
            "tokens_per_epoch": sum(lengths[i] for i in plan.kept),
            "task_ids": task_ids, "task_ids_source": task_source}
    if config.method == "sft":
        info["trained_turns_per_epoch"] = sum(r["trained_turns"] for r in kept)
        info["trained_tokens_per_epoch"] = sum(sum(1 for label in r["labels"] if label != -100) for r in kept)
        kept = [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in kept]
    lora = None if config.from_adapter else LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=config.target_modules, task_type="CAUSAL_LM")
    args = _trl_args(config, plan.max_length)
    if config.method == "sft":
        from trl import SFTTrainer

        trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(kept), processing_class=tokenizer,
                             peft_config=lora, callbacks=callbacks)
    else:
        from trl import DPOTrainer

        trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(kept), processing_class=tokenizer,
                             peft_config=lora, callbacks=callbacks)
    return trainer, info


def log_callback(log: C.TrainingLog, progress: Any | None = None) -> Any:
    """A TrainerCallback writing every log record to the JSONL log and moving an optional progress bar
    (any object with .update(step, total, loss))."""
    from transformers import TrainerCallback

    class Recorder(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
            if logs and state.is_world_process_zero:
                log.append({"step": state.global_step, "epoch": state.epoch, "time": time.time(), **logs})
                if progress is not None and "loss" in logs:
                    progress.update(state.global_step, state.max_steps, logs["loss"])

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if progress is not None:
                progress.update(state.global_step, state.max_steps, None)

    return Recorder()


def _quiet_libraries() -> None:
    """Our progress bar and log replace the libraries' per-stage bars; their deprecation notes about
    gradient_checkpointing concern TRL's own defaults, not anything a user can act on."""
    import warnings

    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.* is deprecated", category=FutureWarning)


def train(config: C.LocalTrainConfig, *, force: bool = False, progress: Any | None = None,
          notify: Callable[[str], None] | None = None) -> TrainOutcome:
    """Run (or resume, or skip as already done) one fine-tuning run into config.output.

    A resume starts from the newest COMPLETE checkpoint (train/checkpoints.py); `notify` is told, one
    line each, which incomplete ones were set aside and where the run resumes."""
    notify = notify or (lambda line: None)
    output = Path(config.output)
    dataset_sha = file_sha256(Path(config.dataset))
    settings = _settings(config, dataset_sha)
    previous, unreadable = _previous(output)
    if previous and not force:
        same = previous.get("settings") == settings
        if same and previous.get("finished"):
            for leftover in (C.CHECKPOINTS, C.INCOMPLETE):  # a kill while the finished run cleaned up
                shutil.rmtree(output / leftover, ignore_errors=True)
            summary = previous.get("summary") or {}
            return TrainOutcome(output, True, summary.get("steps", 0), summary.get("train_loss"), 0.0, 0,
                                summary.get("examples", 0), summary.get("dropped", 0), summary.get("task_ids"), None)
        if not same:
            raise RunFolderError(f"{output} holds a run with other settings or data; pick another --output or pass --force")
    if force and output.exists():
        shutil.rmtree(output / C.CHECKPOINTS, ignore_errors=True)
        shutil.rmtree(output / C.INCOMPLETE, ignore_errors=True)
        for name in (C.CONFIG_FILE, C.LOG_FILE, C.LOSS_PNG):
            (output / name).unlink(missing_ok=True)
    C.validate_dataset(Path(config.dataset), config.method)  # before anything is written to OUTPUT
    _quiet_libraries()
    output.mkdir(parents=True, exist_ok=True)
    # what earlier resumes of this run set aside stays listed (the folders go once the run finishes)
    skipped = list(previous.get("skipped_checkpoints") or []) if previous and not force else []
    set_aside = _set_aside_unverifiable(output, unreadable) if unreadable and not force and is_main_process() else None
    if set_aside:
        notify(set_aside)
        skipped.append(set_aside)
    checkpoints = output / C.CHECKPOINTS
    point = resume_point(output, extra_files=_reference_adapter_files(config), notify=notify)
    resume = str(point.checkpoint) if point.checkpoint else None
    skipped += [s.describe() for s in point.skipped]
    log = C.TrainingLog(output / C.LOG_FILE)
    if is_main_process():  # rank 0 alone writes the log
        if point.checkpoint is not None:
            log.keep_until(step_of(point.checkpoint) or 0)  # the steps after it are trained again
        else:
            log.path.unlink(missing_ok=True)
    trainer, info = build_trainer(config, callbacks=[log_callback(log, progress)])
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # our log file and progress bar replace its raw dict prints
    main = trainer.accelerator.is_main_process  # under `accelerate launch` only rank 0 writes files
    record = {"settings": settings, "finished": False, "data": info, "trl_args": trainer.args.to_dict(),
              "resumed_from": resume, "skipped_checkpoints": skipped}
    if main:
        C.write_json(output / C.CONFIG_FILE, record)
    started = time.monotonic()
    result = trainer.train(resume_from_checkpoint=resume)
    runtime = time.monotonic() - started
    trainer.save_model(str(output))  # the adapter (adapter_config.json + weights) at the top of OUTPUT
    if main:
        if config.from_adapter:
            shutil.rmtree(output / "ref", ignore_errors=True)  # DPO's frozen copy of --from-adapter: not the result
        trainer.processing_class.save_pretrained(str(output))
        atomic_write_text(output / C.DATASET_HASH_FILE, f"{dataset_sha}  {Path(config.dataset).name}\n")
        provenance = C.training_provenance(Path(config.dataset), info["task_ids"], info["task_ids_source"], config.from_adapter)
        if provenance is not None:
            C.write_json(output / C.TASKS_FILE, provenance)
        C.plot_loss(log.records(), output / C.LOSS_PNG, f"{config.method.upper()} LoRA on {Path(config.model).name}")
        summary = {"steps": result.global_step, "train_loss": result.training_loss, "runtime_s": round(runtime, 2),
                   "examples": info["examples"], "dropped": info["dropped_too_long"], "task_ids": info["task_ids"],
                   "resumed_from": resume, "skipped_checkpoints": skipped}
        C.write_json(output / C.CONFIG_FILE, {**record, "finished": True, "summary": summary})
        shutil.rmtree(checkpoints, ignore_errors=True)  # the run is complete: optimizer state is dead weight now
        shutil.rmtree(output / C.INCOMPLETE, ignore_errors=True)  # what was set aside is listed in the summary
    tokens = int(max((r.get("num_tokens", 0) for r in log.records()), default=0))
    epochs = float(max((r.get("epoch") or 0 for r in log.records()), default=0.0))
    return TrainOutcome(output, False, result.global_step, result.training_loss, runtime, tokens, info["examples"],
                        info["dropped_too_long"], info["task_ids"], resume, skipped,
                        info.get("trained_turns_per_epoch"), info.get("trained_tokens_per_epoch"), info["tokens_per_epoch"], epochs)
