"""Episode rows: every trained step of a rollout in one row, with the same loss per turn as step rows.

The equivalence is checked on a tiny model in fp32: for the same traces, the per-token losses of every
trained turn from episode rows equal those from step rows, and one optimizer step over all trained turns
gives the same LoRA update. Duplicates, mistakes and parse errors are weighted as step rows treat them,
a turn whose canonical target differs from what was written ends its row, and a chat template that is not
prefix-preserving is refused.
"""

from __future__ import annotations

import json

import pytest

from test_data_helpers import FIX_GCD, call, final, golden_fixture, read_jsonl, scripted
from test_mask_audit import NOT_PREFIX_TEMPLATE  # noqa: F401  (the `broken` fixture's template)
from test_mask_audit import broken, tiny  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow


# A valid reply in another key order and spacing: trained on its canonical form, while the later turns saw
# it as written, so its rollout needs a second row.
REORDERED = '{ "name": "read_file",  "type": "tool_call", "args": {"rel_path": "python_programs/gcd.py"} }'


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    trace_dir = tmp_path_factory.mktemp("episode-traces")
    golden_fixture(trace_dir)
    scripted(trace_dir, "gcd__reordered", [REORDERED, call("write_file", rel_path="python_programs/gcd.py", content=FIX_GCD),
                                           final("fixed")])
    return trace_dir


def extract(cli, traces, out, rows, *extra):
    result = cli("sft-extract", "--trace-dir", traces, "--output", out, "--rows", rows, "--allow-held-out",
                 "--no-require-success", *extra)
    assert result.exit_code == 0, result.output
    return read_jsonl(out), read_jsonl(out.with_name(out.stem + ".meta.jsonl")), json.loads(
        out.with_name(out.stem + ".stats.json").read_text())


def turn_losses(model, tokenizer, row):
    """Per trained turn (in order): the per-token cross-entropy of its tokens, as training computes it."""
    import torch

    from repo_agent.train.episode_tokens import weighted_sequence

    seq = weighted_sequence(tokenizer, row["messages"], row.get("tools"))
    assert not seq.problems
    ids = torch.tensor([seq.ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float()
    losses = torch.nn.functional.cross_entropy(logits[:-1], ids[0, 1:], reduction="none")
    return [losses[start - 1:end - 1] for start, end in seq.turns]


def test_episode_rows_train_every_turn_exactly_as_step_rows_do(cli, traces, tiny, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    step_rows, step_meta, step_stats = extract(cli, traces, tmp_path / "step.jsonl", "step")
    episode_rows, episode_meta, episode_stats = extract(cli, traces, tmp_path / "episode.jsonl", "episode")
    # the same trained turns, whatever the row kind (duplicates, mistakes, parse errors, refusals alike)
    step_turns = [(m["rollout_id"], m["step_index"]) for m in step_meta]
    episode_turns = [(m["rollout_id"], t["step_index"]) for m in episode_meta for t in m["turns"]]
    assert sorted(step_turns) == sorted(episode_turns) and len(set(step_turns)) == len(step_turns)
    assert step_stats["removed"] == episode_stats["removed"] and step_stats["removed"]["duplicate"] > 0
    assert episode_stats["row_count"] < len(step_rows) and episode_stats["trained_turns"] == len(step_rows)
    for row, meta in zip(episode_rows, episode_meta):
        weights = [m["weight"] for m in row["messages"] if m["role"] == "assistant"]
        assert sum(weights) == len(meta["turns"]) and row["messages"][-1]["weight"] == 1
    # the reordered reply was trained on its canonical form, so its rollout needs a second row
    reordered = [m for m in episode_meta if m["rollout_id"] == "gcd__reordered"]
    assert [[t["step_index"] for t in m["turns"]] for m in reordered] == [[0], [1, 2]]
    second = episode_rows[episode_meta.index(reordered[1])]["messages"]
    assert REORDERED in [m["content"] for m in second]  # the later turns' context: the reply as written

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny, torch_dtype=torch.float32).eval()
    by_turn = {}
    for row, meta in zip(step_rows, step_meta):
        (losses,) = turn_losses(model, tokenizer, row)
        by_turn[(meta["rollout_id"], meta["step_index"])] = losses
    worst = 0.0
    for row, meta in zip(episode_rows, episode_meta):
        for turn, losses in zip(meta["turns"], turn_losses(model, tokenizer, row)):
            step = by_turn[(meta["rollout_id"], turn["step_index"])]
            assert step.shape == losses.shape
            worst = max(worst, float((step - losses).abs().max()))
    assert worst <= 1e-5, worst


def test_one_optimizer_step_gives_the_same_lora_update(tiny, traces, cli, tmp_path):
    """The real trainer, one step over all trained turns (one batch), from the same LoRA init: the adapters
    after the step agree whichever row kind carried the turns."""
    import torch
    from safetensors.torch import load_file

    from repo_agent.train.common import LocalTrainConfig
    from repo_agent.train.local import train

    adapters = {}
    for kind in ("step", "episode"):
        rows, _, _ = extract(cli, traces, tmp_path / f"{kind}.jsonl", kind)
        config = LocalTrainConfig(method="sft", model=str(tiny), dataset=str(tmp_path / f"{kind}.jsonl"),
                                  output=str(tmp_path / f"out-{kind}"), max_steps=1, batch_size=len(rows),
                                  learning_rate=1e-3, lora_r=4, lora_alpha=8, lora_dropout=0.0, seed=0)
        outcome = train(config)
        assert outcome.steps == 1
        adapters[kind] = load_file(str(tmp_path / f"out-{kind}" / "adapter_model.safetensors"))
        record = json.loads((tmp_path / f"out-{kind}" / "train_config.json").read_text())
        adapters[kind + ":turns"] = record["data"]["trained_turns_per_epoch"]
        adapters[kind + ":tokens"] = (record["data"]["tokens_per_epoch"], record["data"]["trained_tokens_per_epoch"])
    assert adapters["step:turns"] == adapters["episode:turns"]
    assert adapters["step:tokens"][1] == adapters["episode:tokens"][1]  # the same trained tokens...
    assert adapters["episode:tokens"][0] < adapters["step:tokens"][0]  # ...in fewer tokens processed
    moved = 0.0
    for name, value in adapters["step"].items():
        other = adapters["episode"][name]
        assert torch.allclose(value, other, atol=1e-6, rtol=1e-4), name
        moved = max(moved, float(value.abs().max()))
    assert moved > 0


def test_a_template_that_is_not_prefix_preserving_is_refused(cli, traces, broken, tmp_path):
    out = tmp_path / "episode.jsonl"
    result = cli("sft-extract", "--trace-dir", traces, "--output", out, "--rows", "episode", "--allow-held-out",
                 "--tokenizer", broken)
    assert result.exit_code == 1 and "not prefix-preserving" in result.output and "--rows step" in result.output
    assert not out.exists()
    good = tmp_path / "good.jsonl"
    extract(cli, traces, good, "episode")
    audit = cli("mask-audit", "--dataset", good, "--model", broken)
    assert audit.exit_code == 1
    refused = cli("sft-extract", "--trace-dir", traces, "--output", tmp_path / "t.jsonl", "--rows", "episode",
                  "--format", "trl", "--allow-held-out")
    assert refused.exit_code == 2 and "weights" in refused.output


def test_episode_rows_pass_the_mask_audit(cli, traces, tiny, tmp_path):
    out = tmp_path / "episode.jsonl"
    result = cli("sft-extract", "--trace-dir", traces, "--output", out, "--rows", "episode", "--allow-held-out",
                 "--no-require-success", "--tokenizer", tiny, "--mask-audit")
    assert result.exit_code == 0, result.output
    assert "mask audit passed" in result.output
