"""The resume rule of repo_agent/train/checkpoints.py on checkpoint folders built directly in every
half-written state a kill can leave (no training here; tests/test_training_resume.py resumes real runs).

The file names are the ones transformers 5 / TRL 1.16 write for a LoRA run on one process (checked
against real SFT and DPO checkpoints in tests/test_training_resume.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from repo_agent.train.checkpoints import incompleteness, resume_point

LORA_FILES = ("adapter_model.safetensors", "adapter_config.json", "optimizer.pt", "scheduler.pt", "rng_state.pth")
# the order the Trainer writes them in: weights, optimizer, scheduler, RNG, then trainer_state.json last
REQUIRED = ("adapter_model.safetensors", "adapter_config.json", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json")


def trainer_state(step: int) -> str:
    return json.dumps({"global_step": step, "max_steps": 10, "log_history": [{"step": s, "loss": 1.0 / s} for s in range(1, step + 1)],
                       "stateful_callbacks": {}}, indent=2) + "\n"


def make_checkpoint(root: Path, step: int, files=LORA_FILES, state: str | None = None) -> Path:
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    for name in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"{}" if name.endswith(".json") else b"\x80\x02weights")
    (folder / "training_args.bin").write_bytes(b"\x80\x02args")  # written, never needed to resume
    (folder / "trainer_state.json").write_text(trainer_state(step) if state is None else state)
    return folder


def test_a_complete_checkpoint_passes(tmp_path):
    assert incompleteness(make_checkpoint(tmp_path, 4), world_size=1) is None


@pytest.mark.parametrize("missing", REQUIRED)
def test_every_file_a_resume_needs_is_checked(tmp_path, missing):
    folder = make_checkpoint(tmp_path, 4)
    (folder / missing).unlink()
    reason = incompleteness(folder, world_size=1)
    assert reason is not None and (missing in reason or "weights" in reason), reason


def test_an_empty_file_counts_as_missing(tmp_path):
    folder = make_checkpoint(tmp_path, 4)
    (folder / "optimizer.pt").write_bytes(b"")  # created, killed before the first byte landed
    assert "optimizer.pt" in incompleteness(folder, world_size=1)


def test_trainer_state_cut_at_any_byte_is_refused(tmp_path):
    """trainer_state.json is written last but not atomically: every prefix a kill can leave is rejected."""
    text = trainer_state(6)
    folder = make_checkpoint(tmp_path, 6)
    for cut in range(len(text.rstrip())):
        (folder / "trainer_state.json").write_text(text[:cut])
        reason = incompleteness(folder, world_size=1)
        assert reason is not None and "trainer_state.json" in reason, (cut, text[:cut])


def test_a_state_for_another_step_is_refused(tmp_path):
    """A folder renamed or copied by hand: its state does not describe the step its name claims."""
    folder = make_checkpoint(tmp_path, 8, state=trainer_state(2))
    assert "says step 2" in incompleteness(folder, world_size=1)
    assert "says step None" in incompleteness(make_checkpoint(tmp_path, 9, state="[]"), world_size=1)


def test_the_cheapest_fake_only_a_state_file_is_refused(tmp_path):
    folder = make_checkpoint(tmp_path, 99, files=())
    assert "no model weights" in incompleteness(folder, world_size=1)


def test_full_and_sharded_models(tmp_path):
    full = make_checkpoint(tmp_path, 2, files=("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth"))
    assert incompleteness(full, world_size=1) is None
    sharded = make_checkpoint(tmp_path, 4, files=("model-00001-of-00002.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth"))
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    assert "model-00002-of-00002.safetensors" in incompleteness(sharded, world_size=1)
    (sharded / "model-00002-of-00002.safetensors").write_bytes(b"x")
    assert incompleteness(sharded, world_size=1) is None
    (sharded / "model.safetensors.index.json").write_text('{"weight_map": {"a": "model-0')
    assert "unreadable" in incompleteness(sharded, world_size=1)


def test_adapter_without_its_config_and_extra_files(tmp_path):
    folder = make_checkpoint(tmp_path, 2, files=("adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth"))
    assert "adapter_config.json" in incompleteness(folder, world_size=1)
    dpo = make_checkpoint(tmp_path, 4)
    needs_ref = ("ref/adapter_config.json", "ref/adapter_model.safetensors")
    assert "ref/adapter_model.safetensors" in incompleteness(dpo, extra_files=needs_ref, world_size=1)
    for name in needs_ref:
        (dpo / name).parent.mkdir(exist_ok=True)
        (dpo / name).write_bytes(b"x")
    assert incompleteness(dpo, extra_files=needs_ref, world_size=1) is None


def test_several_processes_need_one_rng_file_each(tmp_path):
    folder = make_checkpoint(tmp_path, 2, files=(*LORA_FILES[:4], "rng_state_0.pth"))
    assert "rng_state_1.pth" in incompleteness(folder, world_size=2)
    (folder / "rng_state_1.pth").write_bytes(b"x")
    assert incompleteness(folder, world_size=2) is None


def test_resume_picks_the_newest_complete_and_moves_the_incomplete_ones_out(tmp_path):
    output = tmp_path / "out"
    checkpoints = output / "checkpoints"
    make_checkpoint(checkpoints, 2)
    make_checkpoint(checkpoints, 4)
    make_checkpoint(checkpoints, 6, state=trainer_state(6)[:40])  # killed while writing its last file
    make_checkpoint(checkpoints, 8, files=("adapter_model.safetensors", "adapter_config.json")).joinpath("trainer_state.json").unlink()
    (checkpoints / "checkpoint-10").mkdir()  # killed right after the folder was made
    (checkpoints / "README.md").write_text("model card")  # other entries are left alone
    told: list[str] = []

    point = resume_point(output, world_size=1, move=True, notify=told.append)

    assert point.checkpoint == checkpoints / "checkpoint-4"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["README.md", "checkpoint-2", "checkpoint-4"]
    assert [s.name for s in point.skipped] == ["checkpoint-6", "checkpoint-8", "checkpoint-10"]
    for skipped in point.skipped:
        assert skipped.moved_to.parent == output / "incomplete_checkpoints"
        assert skipped.moved_to.name.startswith(skipped.name + ".") and skipped.moved_to.is_dir()
    assert (point.skipped[0].moved_to / "trainer_state.json").read_text() == trainer_state(6)[:40]  # kept as it was
    assert "trainer_state.json does not parse" in told[0] and "checkpoint-6" in told[0]
    assert "trainer_state.json is missing" in told[1] and "checkpoint-8" in told[1]
    assert told[-1].startswith("resuming from checkpoint-4")

    # a second crash leaving a folder of the same name again: nothing is overwritten
    make_checkpoint(checkpoints, 6, files=())
    again = resume_point(output, world_size=1, move=True)
    moved = sorted(p.name for p in (output / "incomplete_checkpoints").iterdir())
    assert len(moved) == 4 and again.skipped[0].moved_to.name in moved
    assert again.checkpoint == checkpoints / "checkpoint-4"


def test_with_nothing_complete_it_starts_over_and_says_so(tmp_path):
    output = tmp_path / "out"
    make_checkpoint(output / "checkpoints", 2, state="")
    told: list[str] = []
    point = resume_point(output, world_size=1, move=True, notify=told.append)
    assert point.checkpoint is None
    assert told[-1] == "no complete checkpoint left: starting over from step 0"
    assert not list((output / "checkpoints").iterdir())

    fresh = resume_point(tmp_path / "never-ran", world_size=1, move=True, notify=told.append)
    assert fresh.checkpoint is None and fresh.skipped == [] and fresh.messages() == []


def test_only_the_main_process_moves_folders(tmp_path, monkeypatch):
    output = tmp_path / "out"
    make_checkpoint(output / "checkpoints", 2)
    make_checkpoint(output / "checkpoints", 4, state="{")
    monkeypatch.setenv("RANK", "1")
    point = resume_point(output, world_size=1)
    assert point.checkpoint.name == "checkpoint-2" and point.skipped[0].moved_to is None
    assert (output / "checkpoints" / "checkpoint-4").is_dir()
    monkeypatch.setenv("RANK", "0")
    assert resume_point(output, world_size=1).skipped[0].moved_to is not None
    assert os.listdir(output / "checkpoints") == ["checkpoint-2"]
