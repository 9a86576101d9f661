"""Resuming real SFT and DPO runs (tiny models, TRL + PEFT) from the half-written states a kill leaves.

Each crashed state is made deterministically: the run is stopped by an exception raised from the
progress callback right after step 7 (the Trainer's own checkpoint-6 is complete on disk), then the
interrupted saves are built by hand next to it: a checkpoint whose trainer_state.json was cut short,
one with only its weights. The resumed run must skip them, say so, and end exactly where an
uninterrupted run ends (same losses, same adapter), which also proves the optimizer, scheduler and RNG
state were restored rather than started afresh. The one timing-dependent test (a real SIGKILL) is in
tests/test_finetune_local.py and asserts nothing about where the kill landed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import REPO
from tiny_models import shared_tiny_model

GOLDEN = REPO / "tests" / "golden"
pytestmark = pytest.mark.slow
STEPS, SAVE_EVERY, CRASH_AFTER = 10, 2, 6
SFT_FLAGS = ["--max-steps", str(STEPS), "--save-steps", str(SAVE_EVERY), "--batch-size", "1", "--learning-rate", "1e-3"]


class Crash(Exception):
    pass


class CrashAfter:
    """A progress sink that raises when step `step + 1` ends, i.e. after checkpoint `step` was saved
    and before the next save: the same state as a kill at that moment."""

    def __init__(self, step: int):
        self.step = step

    def update(self, step: int, total: int, loss: float | None) -> None:
        if loss is None and step > self.step:
            raise Crash(step)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return shared_tiny_model(tmp_path_factory, "llama")


def sft_config(model: Path, output: Path):
    from repo_agent.train.common import LocalTrainConfig

    # the CLI's defaults plus SFT_FLAGS: the resumed CLI run must count as the same run
    return LocalTrainConfig(method="sft", model=str(model), dataset=str(GOLDEN / "sft_json.jsonl"), output=str(output),
                            max_steps=STEPS, save_steps=SAVE_EVERY, batch_size=1, learning_rate=1e-3)


def crashed_copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def losses(output: Path) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (output / "training_log.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in records if "loss" in r]


def adapter(output: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(output / "adapter_model.safetensors")


def assert_same_training(resumed: Path, reference: Path) -> None:
    """Same loss at every step (each step logged once) and the same final adapter as the reference."""
    import torch

    got, want = losses(resumed), losses(reference)
    assert [s for s, _ in got] == [s for s, _ in want] == list(range(1, STEPS + 1))
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in want], rel=1e-5)
    a, b = adapter(resumed), adapter(reference)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def half_written(checkpoint: Path, step: int, keep: tuple[str, ...] | None = None, cut_state: bool = False) -> Path:
    """A copy of a real complete checkpoint renamed to `step`, as a kill during its save would leave it:
    only the files in `keep` (the ones written first), or every file but trainer_state.json cut short."""
    target = checkpoint.parent / f"checkpoint-{step}"
    shutil.copytree(checkpoint, target)
    state = json.loads((target / "trainer_state.json").read_text())
    state["global_step"] = step
    text = json.dumps(state, indent=2)
    (target / "trainer_state.json").write_text(text[: len(text) // 2] if cut_state else text)
    if keep is not None:
        for path in sorted(target.rglob("*"), reverse=True):
            if path.is_file() and path.relative_to(target).as_posix() not in keep:
                path.unlink()
    return target


@pytest.fixture(scope="module")
def sft_reference(tiny_llama, tmp_path_factory):
    from repo_agent.train.local import train

    output = tmp_path_factory.mktemp("sft-reference") / "out"
    train(sft_config(tiny_llama, output))
    return output


@pytest.fixture(scope="module")
def sft_crashed(tiny_llama, tmp_path_factory):
    from repo_agent.train.local import train

    output = tmp_path_factory.mktemp("sft-crashed") / "out"
    with pytest.raises(Crash):
        train(sft_config(tiny_llama, output), progress=CrashAfter(CRASH_AFTER))
    checkpoints = sorted(p.name for p in (output / "checkpoints").glob("checkpoint-*"))
    assert checkpoints == [f"checkpoint-{CRASH_AFTER}"], checkpoints  # rotation kept only the newest
    assert json.loads((output / "train_config.json").read_text())["finished"] is False
    return output


def test_the_trainer_writes_the_files_the_rule_checks(sft_crashed):
    """The rule's file names are the ones this transformers/TRL writes (a version bump renaming them fails here)."""
    from repo_agent.train.checkpoints import incompleteness

    checkpoint = sft_crashed / "checkpoints" / f"checkpoint-{CRASH_AFTER}"
    written = {p.name for p in checkpoint.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "optimizer.pt", "scheduler.pt", "rng_state.pth",
            "trainer_state.json"} <= written
    assert incompleteness(checkpoint, world_size=1) is None


def test_resume_skips_half_written_checkpoints_and_ends_like_an_uninterrupted_run(cli, tiny_llama, sft_crashed,
                                                                                    sft_reference, tmp_path):
    output = crashed_copy(sft_crashed, tmp_path / "out")
    complete = output / "checkpoints" / f"checkpoint-{CRASH_AFTER}"
    half_written(complete, 8, cut_state=True)  # killed while writing trainer_state.json, its last file
    half_written(complete, 10, keep=("adapter_model.safetensors", "adapter_config.json"))  # killed after the weights
    with open(output / "training_log.jsonl", "a") as log:  # steps logged after the last good save, then a torn line
        log.write(json.dumps({"step": 7, "loss": 9.9}) + "\n" + json.dumps({"step": 8, "loss": 9.9}) + "\n" + '{"step": 9, "lo')

    result = cli("finetune", "local", "sft", "--dataset", GOLDEN / "sft_json.jsonl", "--model", tiny_llama,
                 "--output", output, *SFT_FLAGS)

    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "skipped incomplete checkpoint-8: trainer_state.json does not parse" in text
    assert "skipped incomplete checkpoint-10: trainer_state.json is missing" in text
    assert f"resuming from checkpoint-{CRASH_AFTER}" in text
    summary = json.loads((output / "train_config.json").read_text())["summary"]
    assert summary["steps"] == STEPS and summary["resumed_from"].endswith(f"checkpoint-{CRASH_AFTER}")
    assert [s.split(":")[0] for s in summary["skipped_checkpoints"]] == ["skipped incomplete checkpoint-8",
                                                                          "skipped incomplete checkpoint-10"]
    assert_same_training(output, sft_reference)
    assert not (output / "checkpoints").exists() and not (output / "incomplete_checkpoints").exists()


@pytest.mark.parametrize("damage", ["only checkpoint half-written", "run record unreadable"])
def test_with_no_usable_checkpoint_the_run_starts_over_and_says_so(cli, tiny_llama, sft_crashed, sft_reference,
                                                                     tmp_path, damage):
    output = crashed_copy(sft_crashed, tmp_path / "out")
    if damage == "only checkpoint half-written":
        state = output / "checkpoints" / f"checkpoint-{CRASH_AFTER}" / "trainer_state.json"
        state.write_text(state.read_text()[:100])
        expected = "no complete checkpoint left: starting over from step 0"
    else:  # written atomically, so only a damaged disk or a hand edit does this: the checkpoints are kept, not trusted
        (output / "train_config.json").write_text('{"settings": {"method": "sf')
        expected = "its checkpoints cannot be checked against these settings"

    result = cli("finetune", "local", "sft", "--dataset", GOLDEN / "sft_json.jsonl", "--model", tiny_llama,
                 "--output", output, *SFT_FLAGS)

    assert result.exit_code == 0, result.output
    assert expected in " ".join(result.output.split())
    assert json.loads((output / "train_config.json").read_text())["summary"]["resumed_from"] is None
    assert_same_training(output, sft_reference)  # a fresh start with the same seed ends in the same place


def test_dpo_from_an_adapter_resumes_only_with_its_reference_copy(cli, tiny_llama, tmp_path):
    """DPO on top of --from-adapter saves the frozen reference adapter in every checkpoint's ref/;
    a save killed before ref/ was written is skipped, and the resumed run matches an uninterrupted one."""
    from repo_agent.train.common import LocalTrainConfig
    from repo_agent.train.local import train

    sft = tmp_path / "sft"
    train(LocalTrainConfig(method="sft", model=str(tiny_llama), dataset=str(GOLDEN / "sft_json.jsonl"), output=str(sft),
                           max_steps=2, learning_rate=1e-3))

    def dpo(output: Path) -> LocalTrainConfig:
        return LocalTrainConfig(method="dpo", model=str(tiny_llama), dataset=str(GOLDEN / "pairs_json.jsonl"), output=str(output),
                                from_adapter=str(sft), max_steps=4, save_steps=2, batch_size=1, learning_rate=5e-3)

    train(dpo(tmp_path / "reference"))
    crashed = tmp_path / "crashed"
    with pytest.raises(Crash):
        train(dpo(crashed), progress=CrashAfter(2))
    complete = crashed / "checkpoints" / "checkpoint-2"
    assert (complete / "ref" / "adapter_model.safetensors").is_file()  # what TRL writes: the rule relies on it
    half_written(complete, 4).joinpath("ref", "adapter_model.safetensors").unlink()

    result = cli("finetune", "local", "dpo", "--dataset", GOLDEN / "pairs_json.jsonl", "--model", tiny_llama,
                 "--from-adapter", sft, "--output", crashed, "--max-steps", "4", "--save-steps", "2",
                 "--batch-size", "1", "--learning-rate", "5e-3")

    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "skipped incomplete checkpoint-4: missing or empty: ref/adapter_model.safetensors" in text
    assert "resuming from checkpoint-2" in text
    import torch

    got, want = losses(crashed), losses(tmp_path / "reference")
    assert [s for s, _ in got] == [s for s, _ in want] == [1, 2, 3, 4]
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in want], rel=1e-5)
    a, b = adapter(crashed), adapter(tmp_path / "reference")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert not (crashed / "ref").exists() and not (crashed / "checkpoints").exists()
