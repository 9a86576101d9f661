"""The loss-mask audit: it passes what is right and fails, with a clear message, on each known bug class."""

import json
import shutil

import pytest

from conftest import BUNDLED_SUITE
from repo_agent.train.mask_audit import EITHER, audit_episode, audit_sft_row
from repo_agent.train.episode_tokens import conversation_of
from test_sealed_verdict import FINAL, FIXED_GCD, write
from tiny_models import shared_tiny_model

READ = json.dumps({"type": "tool_call", "name": "read_file", "args": {"rel_path": "python_programs/gcd.py"}})
# Like templates that drop earlier turns' reasoning: an earlier reply is rendered differently once a later
# message follows, so turn k's tokens are not a prefix of turn k+1's rendering.
NOT_PREFIX_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'assistant' and not loop.last %}"
    "<|im_start|>assistant\n(earlier reply)<|im_end|>\n{% else %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return shared_tiny_model(tmp_path_factory)


@pytest.fixture(scope="module")
def broken(tiny, tmp_path_factory):
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("not-prefix") / "model"
    shutil.copytree(tiny, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = NOT_PREFIX_TEMPLATE
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A recorded episode: read, a reply that does not parse, the fix, final."""
    from typer.testing import CliRunner

    from repo_agent.cli import app

    root = tmp_path_factory.mktemp("audit-run")
    script = root / "replies.json"
    script.write_text(json.dumps([READ, "not json", write("python_programs/gcd.py", FIXED_GCD), FINAL]))
    result = CliRunner().invoke(app, ["run", "--suite", str(BUNDLED_SUITE), "--task", "gcd", "--trace-dir", str(root / "run"),
                                      "--llm-provider", "scripted", "--model", str(script), "--test-policy", "on_write"])
    assert result.exit_code == 0, result.output
    return root / "run"


def test_recorded_episodes_pass_the_audit(cli, tiny, run):
    result = cli("mask-audit", "--trace-dir", run, "--model", tiny)
    assert result.exit_code == 0, result.output
    assert "mask audit passed: 1 sequence(s)" in result.output and "convention:" in result.output
    page = (run / "mask_audit.html").read_text()
    assert 'class="t"' in page and 'class="m"' in page and "bad" not in page.split("</style>")[1].replace("'bad'", "")


def test_a_template_that_is_not_prefix_preserving_fails(cli, broken, run):
    result = cli("mask-audit", "--trace-dir", run, "--model", broken)
    assert result.exit_code == 1
    assert "not prefix-preserving" in result.output


def test_wrong_masks_and_lengths_fail(tiny, run):
    from transformers import AutoTokenizer

    from repo_agent.train.mask_audit import replay_trace
    from repo_agent.traces import read_trace

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    trace = read_trace(next((run / "traces").glob("*.json")))
    tokens = replay_trace(tokenizer, trace)
    conversation = conversation_of(trace)
    good = audit_episode(tokenizer, "good", conversation, tokens.prompt_ids, tokens.completion_ids, tokens.mask)
    assert not good.problems and not good.mismatches()
    assert sum(1 for e in good.expected if e == 1) > 0 and sum(good.trained) > 0
    # tool results trained on: every token of the completion marked as the model's
    everything = audit_episode(tokenizer, "all", conversation, tokens.prompt_ids, tokens.completion_ids,
                               [1] * len(tokens.mask))
    wrong = everything.mismatches()
    assert wrong and "[tool_result]" in "".join(everything.pieces[i] for i in wrong)
    # a mask shifted by one token (misaligned after re-tokenisation)
    shifted = audit_episode(tokenizer, "shift", conversation, tokens.prompt_ids, tokens.completion_ids, [0] + tokens.mask[:-1])
    assert shifted.mismatches()
    short = audit_episode(tokenizer, "short", conversation, tokens.prompt_ids, tokens.completion_ids, tokens.mask[:-3])
    assert any("mask has" in p for p in short.problems)
    other = [*conversation[:-1], {"role": "assistant", "content": "something else"}]
    decoded = audit_episode(tokenizer, "other", other, tokens.prompt_ids, tokens.completion_ids, tokens.mask)
    assert any("do not decode" in p for p in decoded.problems)


def test_a_budget_cut_inside_a_trained_turn_fails_unless_truncated_completions_are_masked(tiny, run):
    from transformers import AutoTokenizer

    from repo_agent.train.mask_audit import replay_trace
    from repo_agent.traces import read_trace

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    trace = read_trace(next((run / "traces").glob("*.json")))
    full = replay_trace(tokenizer, trace)
    first_reply_end = next(i for i in range(len(full.mask)) if full.mask[i] == 1 and full.mask[i + 1] == 0)
    cut = replay_trace(tokenizer, trace, token_budget=first_reply_end)  # the budget ends inside the first reply
    assert cut.budget_cut and cut.mask[-1] == 1
    args = (tokenizer, "cut", conversation_of(trace), cut.prompt_ids, cut.completion_ids, cut.mask)
    assert not audit_episode(*args, truncated=True, mask_truncated=True, continued=conversation_of(trace, True)).problems
    unmasked = audit_episode(*args, truncated=True, mask_truncated=False, continued=conversation_of(trace, True))
    assert any("inside a trained turn" in p for p in unmasked.problems)


def sft_row(weight_earlier=0):
    return {"messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "GOAL:\nFix gcd."},
                         {"role": "assistant", "content": READ, "weight": weight_earlier},
                         {"role": "user", "content": "[tool_result]\ndef gcd(a, b): ..."},
                         {"role": "assistant", "content": FINAL, "weight": 1}]}


def test_sft_rows_are_audited_as_trl_masks_them(cli, tiny, broken, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    item = audit_sft_row(tokenizer, "row", sft_row())
    assert not item.problems and not item.mismatches()
    trained_text = "".join(p for p, t in zip(item.pieces, item.trained) if t)
    assert trained_text.startswith(FINAL) and READ not in trained_text  # only the last reply (and its end of turn)
    both = audit_sft_row(tokenizer, "w", sft_row(weight_earlier=1))  # an episode row: two trained turns
    assert not both.problems and not both.mismatches()
    both_text = "".join(p for p, t in zip(both.pieces, both.trained) if t)
    assert READ in both_text and FINAL in both_text and "[tool_result]" not in both_text and "GOAL" not in both_text
    assert any("inside a trained turn" in p for p in audit_sft_row(tokenizer, "cut", sft_row(), max_length=20).problems)
    dataset = tmp_path / "sft.jsonl"
    dataset.write_text(json.dumps(sft_row()) + "\n" + json.dumps(sft_row()) + "\n")
    assert cli("mask-audit", "--dataset", dataset, "--model", tiny).exit_code == 0
    result = cli("mask-audit", "--dataset", dataset, "--model", broken)
    assert result.exit_code == 1 and "not a prefix" in result.output
    assert (tmp_path / "sft.mask_audit.html").is_file()
    assert EITHER not in item.expected


def test_sft_extract_audits_the_masks_of_what_it_wrote(cli, tiny, broken, run, tmp_path):
    out = tmp_path / "sft.jsonl"
    result = cli("sft-extract", "--trace-dir", run, "--output", out, "--tokenizer", tiny, "--mask-audit", "--allow-held-out")
    assert result.exit_code == 0, result.output
    assert "mask audit passed: 3 sequence(s)" in result.output and (tmp_path / "sft.mask_audit.html").is_file()
    result = cli("sft-extract", "--trace-dir", run, "--output", tmp_path / "bad.jsonl", "--tokenizer", broken, "--mask-audit", "--allow-held-out")
    assert result.exit_code == 1 and "not a prefix" in result.output
    assert cli("sft-extract", "--trace-dir", run, "--output", tmp_path / "x.jsonl", "--mask-audit").exit_code == 2
