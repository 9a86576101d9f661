"""`repo-agent finetune local dpo` on a tiny model: Together preference rows converted on the fly,
optionally continuing from an SFT adapter."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import REPO
from tiny_models import shared_tiny_model

GOLDEN = REPO / "tests" / "golden"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return shared_tiny_model(tmp_path_factory, "llama")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pairs")
    shutil.copy(GOLDEN / "pairs_json.jsonl", folder / "pairs.jsonl")
    shutil.copy(GOLDEN / "pairs_json.meta.jsonl", folder / "pairs.meta.jsonl")
    return folder / "pairs.jsonl"


@pytest.fixture(scope="module")
def sft_adapter(tiny_llama, tmp_path_factory):
    from repo_agent.cli import app
    from typer.testing import CliRunner

    output = tmp_path_factory.mktemp("dpo-base") / "sft"
    result = CliRunner().invoke(app, ["finetune", "local", "sft", "--dataset", str(GOLDEN / "sft_json.jsonl"), "--model",
                                      str(tiny_llama), "--output", str(output), "--max-steps", "2", "--learning-rate", "1e-3"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return output


def test_dpo_rows_mask_the_prompt(tiny_llama, pairs, tmp_path):
    """Chosen and rejected are scored on their own tokens only: the prompt is outside the completion mask."""
    from repo_agent.train.common import LocalTrainConfig
    from repo_agent.train.local import build_trainer

    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    trainer, info = build_trainer(LocalTrainConfig(method="dpo", model=str(tiny_llama), dataset=str(pairs), output=str(tmp_path)))
    tokenizer = trainer.processing_class
    example = trainer.train_dataset[0]
    prompt_ids = tokenizer.apply_chat_template(rows[0]["input"]["messages"], add_generation_prompt=True, tokenize=True,
                                               return_dict=True)["input_ids"]
    batch = trainer.data_collator([example])
    # the collator stacks chosen then rejected; each has the prompt unmasked-out and its own answer in the mask
    for row, answer in ((0, rows[0]["preferred_output"][0]["content"]), (1, rows[0]["non_preferred_output"][0]["content"])):
        ids = batch["input_ids"][row].tolist()
        mask = batch["completion_mask"][row].tolist()
        assert ids[: len(prompt_ids)] == prompt_ids
        assert not any(mask[: len(prompt_ids)]), "a prompt token is inside the DPO completion mask"
        scored = [t for t, m in zip(ids, mask) if m]
        assert tokenizer.decode(scored).startswith(answer)
    assert info["examples"] == len(rows) and info["task_ids"] == ["bundled/gcd"]


def test_dpo_continues_from_the_sft_adapter(cli, tiny_llama, pairs, sft_adapter, tmp_path):
    from safetensors.torch import load_file

    output = tmp_path / "dpo"
    result = cli("finetune", "local", "dpo", "--dataset", pairs, "--model", tiny_llama, "--from-adapter", sft_adapter,
                 "--output", output, "--max-steps", "3", "--learning-rate", "5e-3", "--beta", "0.1")
    assert result.exit_code == 0, result.output
    before, after = load_file(sft_adapter / "adapter_model.safetensors"), load_file(output / "adapter_model.safetensors")
    assert before.keys() == after.keys()
    assert any(not before[k].equal(after[k]) for k in before), "DPO left the SFT adapter unchanged"
    assert not (output / "ref").exists()  # the frozen reference copy is not part of the result
    log = [json.loads(line) for line in (output / "training_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3]
    assert all("rewards/margins" in r for r in log if "loss" in r)
    record = json.loads((output / "train_config.json").read_text())
    assert record["finished"] and record["trl_args"]["beta"] == 0.1 and record["settings"]["from_adapter"] == str(sft_adapter)
    assert json.loads((output / "trained_tasks.json").read_text())["task_ids"] == ["bundled/gcd"]


def test_dpo_refuses_sft_rows(cli, tiny_llama, tmp_path):
    result = cli("finetune", "local", "dpo", "--dataset", GOLDEN / "sft_json.jsonl", "--model", tiny_llama, "--output", tmp_path / "x")
    assert result.exit_code == 2 and "needs pref" in result.output
