"""`repo-agent finetune local sft` on tiny models built from a config (no download)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO
from tiny_models import shared_tiny_model

GOLDEN = REPO / "tests" / "golden"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return shared_tiny_model(tmp_path_factory, "llama")


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory):
    return shared_tiny_model(tmp_path_factory, "qwen2")


@pytest.fixture(scope="module")
def sft_data(tmp_path_factory):
    """Golden sft-extract output (Together rows with weights) and its provenance sidecar."""
    folder = tmp_path_factory.mktemp("sft-data")
    shutil.copy(GOLDEN / "sft_json.jsonl", folder / "sft.jsonl")
    shutil.copy(GOLDEN / "sft_json.meta.jsonl", folder / "sft.meta.jsonl")
    return folder / "sft.jsonl"


@pytest.fixture(scope="module")
def sft_run(tiny_llama, sft_data, tmp_path_factory):
    from repo_agent.cli import app
    from typer.testing import CliRunner

    output = tmp_path_factory.mktemp("sft-run") / "out"
    args = ["finetune", "local", "sft", "--dataset", str(sft_data), "--model", str(tiny_llama), "--output", str(output),
            "--max-steps", "3", "--learning-rate", "1e-3", "--batch-size", "2", "--lora-r", "8", "--lora-alpha", "16"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    return output, result, args


def _chat_tokens(tokenizer, messages):
    return tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]


def test_only_the_last_assistant_message_carries_loss(tiny_qwen, tmp_path):
    """The collator of the real trainer: every prompt token is masked (-100), the completion is exactly the
    last assistant message plus the end-of-turn token. Qwen2 tokenizer, so its reload stability is covered too."""
    from repo_agent.train.common import LocalTrainConfig
    from repo_agent.train.local import build_trainer

    rows = [json.loads(line) for line in (GOLDEN / "sft_json.jsonl").read_text().splitlines()]
    config = LocalTrainConfig(method="sft", model=str(tiny_qwen), dataset=str(GOLDEN / "sft_json.jsonl"), output=str(tmp_path))
    trainer, info = build_trainer(config)
    tokenizer = trainer.processing_class
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    for row_index in range(3):
        messages = [{k: v for k, v in m.items() if k != "weight"} for m in rows[row_index]["messages"]]
        full = _chat_tokens(tokenizer, messages)
        prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
        labels = batch["labels"][row_index].tolist()
        assert batch["input_ids"][row_index].tolist()[: len(full)] == full
        assert all(label == -100 for label in labels[: len(prompt)]), "a prompt token carries loss"
        trained = [t for t in labels if t != -100]
        assert trained == full[len(prompt):]
        assert tokenizer.decode(trained).startswith(messages[-1]["content"] + "<|im_end|>")
    assert info["examples"] == len(rows) and info["dropped_too_long"] == 0
    assert info["task_ids"] == ["bundled/gcd"]


def test_sft_trains_the_adapter_and_writes_every_artefact(sft_run, sft_data, tiny_llama):
    from safetensors.torch import load_file

    output, result, _ = sft_run
    assert result.exit_code == 0, result.output
    weights = load_file(output / "adapter_model.safetensors")
    lora_b = {k: v for k, v in weights.items() if "lora_B" in k}
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b.values()), "LoRA B starts at zero: training must move it"
    adapter_config = json.loads((output / "adapter_config.json").read_text())
    assert adapter_config["r"] == 8 and adapter_config["lora_alpha"] == 16
    assert Path(adapter_config["base_model_name_or_path"]).resolve() == Path(tiny_llama).resolve()

    record = json.loads((output / "train_config.json").read_text())
    assert record["finished"] is True and record["summary"]["steps"] == 3
    trl = record["trl_args"]
    assert trl["bf16"] is False and trl["gradient_checkpointing"] is False  # TRL's defaults are wrong for CPU LoRA
    assert trl["learning_rate"] == 1e-3 and trl["completion_only_loss"] is True
    assert trl["max_length"] == record["data"]["longest_example_tokens"]  # nothing is cut
    log = [json.loads(line) for line in (output / "training_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3]
    assert (output / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (output / "dataset.sha256").read_text().split()[0] == hashlib.sha256(sft_data.read_bytes()).hexdigest()
    sidecar_tasks = {json.loads(line)["task_id"] for line in sft_data.with_name("sft.meta.jsonl").read_text().splitlines()}
    assert json.loads((output / "trained_tasks.json").read_text())["task_ids"] == sorted(sidecar_tasks)
    assert (output / "tokenizer.json").is_file() and not (output / "checkpoints").exists()


def test_rerun_is_a_no_op_and_other_settings_are_refused(sft_run):
    from repo_agent.cli import app
    from typer.testing import CliRunner

    output, first, args = sft_run
    assert first.exit_code == 0
    before = {p.name: p.stat().st_mtime_ns for p in output.iterdir()}
    again = CliRunner().invoke(app, args, catch_exceptions=False)
    assert again.exit_code == 0 and "nothing to do" in again.output
    assert {p.name: p.stat().st_mtime_ns for p in output.iterdir()} == before
    changed = CliRunner().invoke(app, [*args[:-4], "--lora-r", "4", "--lora-alpha", "8"], catch_exceptions=False)
    assert changed.exit_code == 2 and "other settings" in changed.output


def test_over_long_examples_are_dropped_and_counted(cli, tiny_llama, sft_data, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    rows = [json.loads(line) for line in sft_data.read_text().splitlines()]
    lengths = sorted(len(_chat_tokens(tokenizer, [{k: v for k, v in m.items() if k != "weight"} for m in r["messages"]])) for r in rows)
    limit = lengths[len(lengths) // 2]
    expected_dropped = sum(1 for n in lengths if n > limit)
    result = cli("finetune", "local", "sft", "--dataset", sft_data, "--model", tiny_llama, "--output", tmp_path / "out",
                 "--max-steps", "1", "--max-seq-len", limit)
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "out" / "train_config.json").read_text())["data"]
    assert data["dropped_too_long"] == expected_dropped > 0
    assert data["examples"] == len(rows) - expected_dropped and data["max_length"] == limit

    too_short = cli("finetune", "local", "sft", "--dataset", sft_data, "--model", tiny_llama, "--output", tmp_path / "none",
                    "--max-steps", "1", "--max-seq-len", lengths[0] - 1)
    assert too_short.exit_code == 2 and "raise --max-seq-len" in too_short.output


def test_bad_datasets_are_refused_before_anything_is_written(cli, tiny_llama, tmp_path):
    broken = tmp_path / "broken.jsonl"
    good = (GOLDEN / "sft_json.jsonl").read_text().splitlines()[0]
    broken.write_text(good + "\n{not json\n")
    result = cli("finetune", "local", "sft", "--dataset", broken, "--model", tiny_llama, "--output", tmp_path / "a")
    assert result.exit_code == 2 and "line 2" in result.output
    pairs = cli("finetune", "local", "sft", "--dataset", GOLDEN / "pairs_json.jsonl", "--model", tiny_llama, "--output", tmp_path / "b")
    assert pairs.exit_code == 2 and "needs sft" in pairs.output
    missing = cli("finetune", "local", "sft", "--dataset", GOLDEN / "sft_json.jsonl", "--model", tmp_path / "nope", "--output", tmp_path / "c")
    assert missing.exit_code == 2 and "not found" in missing.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_task_ids_come_from_file_metadata_sidecar_or_traces(tmp_path):
    from repo_agent.provenance import trained_task_ids

    rows = [json.loads(line) for line in (GOLDEN / "sft_json.jsonl").read_text().splitlines()]
    dataset = tmp_path / "sft.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert trained_task_ids(dataset, rows, None, None) == (None, None)  # nothing known: no list is invented

    traces = tmp_path / "traces"
    traces.mkdir()
    for task in ("bundled/a", "bundled/b"):
        (traces / f"{task.split('/')[1]}.json").write_text(json.dumps({"task_id": task, "steps": []}))
    (traces / "corrupt.json").write_text("{cut")
    assert trained_task_ids(dataset, rows, None, str(traces))[0] == ["bundled/a", "bundled/b"]

    shutil.copy(GOLDEN / "sft_json.meta.jsonl", tmp_path / "sft.meta.jsonl")
    assert trained_task_ids(dataset, rows, None, str(traces))[0] == ["bundled/gcd"]  # the sidecar wins over traces
    stale = rows[:-1]
    assert trained_task_ids(dataset, stale, None, None) == (None, None)  # a sidecar for another row count is ignored

    tagged = [{**r, "metadata": {"task_id": f"bundled/t{i % 2}"}} for i, r in enumerate(rows)]
    assert trained_task_ids(dataset, tagged, None, None)[0] == ["bundled/t0", "bundled/t1"]

    listed = tmp_path / "ids.txt"
    listed.write_text("bundled/x\nbundled/y\n")
    assert trained_task_ids(dataset, tagged, str(listed), None)[0] == ["bundled/x", "bundled/y"]


def _newest_checkpoint_step(checkpoints: Path) -> int:
    steps = []
    for name in os.listdir(checkpoints) if checkpoints.is_dir() else []:
        if name.startswith("checkpoint-") and name[len("checkpoint-"):].isdigit():
            steps.append(int(name[len("checkpoint-"):]))
    return max(steps, default=0)


def test_a_run_killed_at_any_moment_resumes_and_finishes(tiny_llama, sft_data, tmp_path):
    """The one real SIGKILL: it lands once training has started saving (often in the middle of a save),
    at a moment that depends on the machine's speed. Whatever it hit, the rerun must finish all the
    steps, log each exactly once, and say whether it resumed or started over. Which checkpoint it
    resumed from is deliberately not asserted (tests/test_training_resume.py covers that on states
    built deterministically)."""
    output = tmp_path / "out"
    steps = 40
    command = [str(Path(sys.executable).parent / "repo-agent"), "finetune", "local", "sft", "--dataset", str(sft_data),
               "--model", str(tiny_llama), "--output", str(output), "--max-steps", str(steps), "--save-steps", "2",
               "--batch-size", "1", "--learning-rate", "1e-3"]
    chooser = random.Random()
    target = chooser.choice(range(2, steps // 2 + 1, 2))  # kill once checkpoint-`target` (or a later one) is being saved
    jitter = chooser.uniform(0.0, 0.1)
    moment = f"kill after checkpoint-{target} appeared + {jitter:.3f}s"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 600  # generous: only a broken run gets anywhere near it
        # progress, not a clock: the folder appears when its save starts (its files follow one by one)
        while _newest_checkpoint_step(output / "checkpoints") < target:
            assert process.poll() is None, f"the run ended (exit {process.returncode}) before checkpoint-{target}"
            assert time.monotonic() < deadline, f"no checkpoint-{target} within 600 s"
            time.sleep(0.01)
        time.sleep(jitter)
        # at least steps/2 steps remain after checkpoint-`target`: the run cannot have finished
        assert process.poll() is None, f"the run finished before the kill ({moment})"
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert json.loads((output / "train_config.json").read_text())["finished"] is False

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=900)

    assert resumed.returncode == 0, f"{moment}\n{resumed.stderr[-3000:]}"
    said = " ".join(resumed.stderr.split())
    assert "resuming from checkpoint-" in said or "starting over" in said, (moment, said[-2000:])
    summary = json.loads((output / "train_config.json").read_text())["summary"]
    assert summary["steps"] == steps
    assert ("resuming from checkpoint-" in said) == (summary["resumed_from"] is not None)
    logged = [json.loads(line)["step"] for line in (output / "training_log.jsonl").read_text().splitlines()
              if '"loss"' in line]
    assert logged == list(range(1, steps + 1)), moment  # steps before the kill kept, none counted twice
    assert not (output / "checkpoints").exists() and not (output / "incomplete_checkpoints").exists()
    print(f"{moment}: resumed from {summary['resumed_from']}; skipped {summary['skipped_checkpoints']}")
