"""Which checkpoint a killed training run resumes from: the newest COMPLETE one.

The Hugging Face Trainer (and every TRL trainer built on it: SFT, DPO, GRPO) saves `checkpoint-N`
in place and non-atomically: the weights, then optimizer.pt and scheduler.pt, then the RNG state,
then trainer_state.json, written last and in one go. A kill at any moment of a save leaves a folder
with only some of these, or with a cut trainer_state.json. transformers' own `get_last_checkpoint`
returns the highest-numbered folder regardless, and the resumed run then dies on it ("Can't find a
valid checkpoint") or, worse, silently starts from a fresh optimizer when only optimizer.pt is missing.

So a checkpoint counts only when trainer_state.json parses and names step N, and the weights,
optimizer, scheduler and RNG files are all there and non-empty. Incomplete folders are moved out of
the checkpoint folder (inside it, the Trainer's rotation would list them, sort them by mtime, and
delete or overwrite them) into OUTPUT/incomplete_checkpoints/, so nothing is lost and the user can
see what was skipped and why.

Call `resume_point(output)` before `trainer.train(resume_from_checkpoint=...)` in every trainer that
checkpoints into OUTPUT/checkpoints.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

CHECKPOINTS = "checkpoints"
INCOMPLETE = "incomplete_checkpoints"
TRAINER_STATE = "trainer_state.json"
OPTIMIZER = "optimizer.pt"
SCHEDULER = "scheduler.pt"
_NAME = re.compile(r"^checkpoint-(\d+)$")
# One of these holds the weights, as transformers / PEFT name them: a LoRA adapter (with its config),
# a full model in one file, or a sharded model (an index naming its shards).
_ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
_FULL_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
_SHARD_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


@dataclass
class Skipped:
    """An incomplete checkpoint: where it was, why it was skipped, where it was moved to (if it was)."""

    name: str
    reason: str
    moved_to: Path | None = None

    def describe(self) -> str:
        where = f"; moved to {self.moved_to}" if self.moved_to else ""
        return f"skipped incomplete {self.name}: {self.reason}{where}"


@dataclass
class ResumePoint:
    checkpoint: Path | None  # None: start over
    skipped: list[Skipped] = field(default_factory=list)

    def messages(self) -> list[str]:
        """What to tell the user, one line each."""
        lines = [s.describe() for s in self.skipped]
        if self.checkpoint is not None:
            lines.append(f"resuming from {self.checkpoint.name} ({self.checkpoint})")
        elif self.skipped:
            lines.append("no complete checkpoint left: starting over from step 0")
        return lines


def step_of(folder: Path) -> int | None:
    match = _NAME.match(folder.name)
    return int(match.group(1)) if match else None


def _present(folder: Path, name: str) -> bool:
    path = folder / name
    try:
        return path.is_file() and path.stat().st_size > 0
    except OSError:  # vanished while we looked (another process moved it)
        return False


def _weights_problem(folder: Path) -> str | None:
    for name in _ADAPTER_WEIGHTS:
        if _present(folder, name):
            return None if _present(folder, "adapter_config.json") else "adapter_config.json is missing"
    for name in _FULL_WEIGHTS:
        if _present(folder, name):
            return None
    for name in _SHARD_INDEXES:
        if _present(folder, name):
            try:
                shards = set(json.loads((folder / name).read_text(encoding="utf-8"))["weight_map"].values())
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                return f"{name} is unreadable"
            missing = sorted(s for s in shards if not _present(folder, s))
            return f"weight shards missing: {', '.join(missing)}" if missing else None
    return "no model weights (adapter_model.safetensors, model.safetensors, pytorch_model.bin, ...)"


def _rng_files(world_size: int) -> list[str]:
    # the Trainer's own names: one file for a single process, one per rank otherwise
    return ["rng_state.pth"] if world_size <= 1 else [f"rng_state_{rank}.pth" for rank in range(world_size)]


def incompleteness(folder: Path, *, extra_files: Iterable[str] = (), world_size: int | None = None) -> str | None:
    """Why `folder` cannot be resumed from, or None when it is complete.

    extra_files: paths (relative to the folder) a particular trainer also needs, e.g. DPO's frozen
    reference adapter "ref/adapter_model.safetensors"."""
    step = step_of(folder)
    if step is None:
        return f"{folder.name} is not named checkpoint-N"
    state_path = folder / TRAINER_STATE
    if not _present(folder, TRAINER_STATE):
        return f"{TRAINER_STATE} is missing (the save was interrupted before its last file)"
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"{TRAINER_STATE} does not parse ({exc.__class__.__name__}: cut short by an interrupted write)"
    if not isinstance(state, dict) or state.get("global_step") != step:
        found = state.get("global_step") if isinstance(state, dict) else None
        return f"{TRAINER_STATE} says step {found!r}, not {step}"
    problem = _weights_problem(folder)
    if problem:
        return problem
    if world_size is None:
        world_size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    needed = [OPTIMIZER, SCHEDULER, *_rng_files(world_size), *extra_files]
    missing = [name for name in needed if not _present(folder, name)]
    if missing:
        return f"missing or empty: {', '.join(missing)}"
    return None


def is_main_process() -> bool:
    # torchrun / accelerate launch set RANK; only rank 0 moves folders (the others pick the same one)
    return int(os.environ.get("RANK", "0") or 0) == 0


def _move_aside(folder: Path, quarantine: Path) -> Path | None:
    quarantine.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = quarantine / f"{folder.name}.{stamp}"
    suffix = 1
    while target.exists():
        suffix += 1
        target = quarantine / f"{folder.name}.{stamp}.{suffix}"
    try:
        folder.rename(target)
    except FileNotFoundError:  # another process moved it first
        return None
    return target


def resume_point(output: Path, *, checkpoints: Path | None = None, quarantine: Path | None = None,
                 extra_files: Iterable[str] = (), world_size: int | None = None, move: bool | None = None,
                 notify: Callable[[str], None] | None = None) -> ResumePoint:
    """The newest complete checkpoint under OUTPUT/checkpoints (None: start over).

    Every incomplete `checkpoint-N` is moved to OUTPUT/incomplete_checkpoints/checkpoint-N.<time>
    (only by the main process when `move` is None); complete older ones stay where they are for the
    Trainer's own rotation. Each decision is passed to `notify` as one line."""
    checkpoints = Path(checkpoints) if checkpoints is not None else Path(output) / CHECKPOINTS
    quarantine = Path(quarantine) if quarantine is not None else Path(output) / INCOMPLETE
    move = is_main_process() if move is None else move
    extra = tuple(extra_files)
    folders = sorted((p for p in checkpoints.iterdir() if p.is_dir() and step_of(p) is not None),
                     key=lambda p: step_of(p) or 0, reverse=True) if checkpoints.is_dir() else []
    chosen: Path | None = None
    skipped: list[Skipped] = []
    for folder in folders:
        reason = incompleteness(folder, extra_files=extra, world_size=world_size)
        if reason is None:
            chosen = chosen or folder
            continue
        skipped.append(Skipped(folder.name, reason, _move_aside(folder, quarantine) if move else None))
    point = ResumePoint(chosen, sorted(skipped, key=lambda s: step_of(Path(s.name)) or 0))
    if notify is not None:
        for line in point.messages():
            notify(line)
    return point
