"""GRPO: the rollout function's tokens and mask, one real TRL step on a tiny model, the refusals."""

import contextlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import BUNDLED_SUITE, REPO
from repo_agent.agent import AgentConfig
from repo_agent.models.base import Sampling
from repo_agent.suites.task import load_suite, with_tasks
from repo_agent.train.episode_tokens import conversation_of, render
from repo_agent.train.grpo_rollout import EpisodeRollouts, episode_prompt
from test_sealed_verdict import FIXED_GCD
from tiny_models import build_tiny_model, shared_tiny_model

TRAIN_SUITE = REPO / "eval" / "suites" / "bundled_train_suite.json"
TOOL_ACTION = '{"type":"tool_call","name":"list_files","args":{}}'


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return shared_tiny_model(tmp_path_factory)


@pytest.fixture(scope="module")
def tokenizer(tiny):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny)


def scripted_generation(tokenizer, replies):
    """The generation seam of EpisodeRollouts for ONE episode, fed fixed replies (text, ends with the
    end-of-turn token?), tokenized as a model would have produced them."""
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    calls = []

    @contextlib.contextmanager
    def generation(trainer):
        def generate(prompt_ids, max_new, seed):
            text, with_eos = replies[min(len(calls), len(replies) - 1)]
            calls.append(text)
            ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])[:max_new]
            if with_eos and len(ids) < max_new:
                ids.append(eos)
            body = ids[:-1] if ids and ids[-1] == eos else ids
            return ids, tokenizer.decode(body), "stop" if len(ids) < max_new else "length"
        yield generate

    return generation


def test_rollout_ids_decode_to_the_episode_and_mask_only_model_tokens(tokenizer, tmp_path):
    suite = load_suite(BUNDLED_SUITE)
    task = suite.task("gcd")
    agent = AgentConfig(max_iters=5, test_policy="on_write", verdict_fail_fast=False)
    read = '{"type":"tool_call","name":"read_file","args":{"rel_path":"python_programs/gcd.py"}}'
    fix = json.dumps({"type": "tool_call", "name": "write_file", "args": {"rel_path": "python_programs/gcd.py", "content": FIXED_GCD}})
    final = '{"type":"final","summary":"swapped the arguments"}'
    replies = [(read, True), ("not json at all", False), (fix, False), (final, True)]
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    rollouts = EpisodeRollouts(suite, agent, Sampling(max_tokens=4000), 8000, tmp_path, None, tokenizer, [eos])
    rollouts.generation = scripted_generation(tokenizer, replies)
    out = rollouts([episode_prompt(task, agent)], SimpleNamespace(state=SimpleNamespace(global_step=3)))
    trace = out["trace"][0]
    assert trace["verdict"]["outcome"] == "passed" and len(trace["steps"]) == 4
    assert Path(out["trace_path"][0]).is_file() and "step-00003" in out["trace_path"][0]
    prompt, completion, mask = out["prompt_ids"][0], out["completion_ids"][0], out["env_mask"][0]
    assert len(mask) == len(completion)
    conversation = conversation_of(trace)
    # prompt + completion decode to exactly the conversation, closed by the last reply's end-of-turn
    assert tokenizer.decode(prompt) == render(tokenizer, conversation[:2], generation_prompt=True)
    assert tokenizer.decode(prompt + completion) == render(tokenizer, conversation, generation_prompt=False).rstrip("\n")
    # model tokens: exactly the replies (+ their own end-of-turn), tool results never
    trained = tokenizer.decode([t for t, m in zip(completion, mask) if m])
    assert trained == read + "<|im_end|>" + "not json at all" + fix + final + "<|im_end|>"
    masked = tokenizer.decode([t for t, m in zip(completion, mask) if not m])
    assert masked.count("[tool_result]") == 3 and "[TESTS PASS]" in masked and read not in masked
    assert all(m == 0 for t, m in zip(completion, mask) if tokenizer.decode([t]) == "[")  # every "[tool_result]" bracket
    # the extras the rewards read
    assert out["reference_diff"][0].startswith("--- a/python_programs/gcd.py") and out["logprobs"] is None


def test_the_token_budget_ends_an_episode_with_its_own_stop_reason(tokenizer, tmp_path):
    suite = load_suite(BUNDLED_SUITE)
    task = suite.task("gcd")
    agent = AgentConfig(max_iters=5, test_policy="never")
    read = '{"type":"tool_call","name":"read_file","args":{"rel_path":"python_programs/gcd.py"}}'
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    rollouts = EpisodeRollouts(suite, agent, Sampling(max_tokens=4000), 120, tmp_path, None, tokenizer, [eos])
    rollouts.generation = scripted_generation(tokenizer, [(read, True)])
    out = rollouts([episode_prompt(task, agent)], SimpleNamespace(state=SimpleNamespace(global_step=0)))
    trace = out["trace"][0]
    assert trace["stop_reason"] == "token_budget"
    assert len(out["completion_ids"][0]) == 120  # cut at the budget, no end-of-turn after the cut: TRL sees it truncated
    assert out["completion_ids"][0][-1] != eos


def test_tasks_sharing_a_goal_text_are_told_apart_through_the_dataset(tmp_path):
    """Tasks synthesized from one program share their goal text; TRL hands rollout_func the prompt alone.
    Each row's prompt, after the datasets round trip TRL makes, still names its own task, and the model
    sees the same prompt either way."""
    from dataclasses import replace

    from datasets import Dataset

    from repo_agent.train.grpo_rollout import task_rows

    suite = load_suite(BUNDLED_SUITE)
    gcd = suite.task("gcd")
    other = next(t for t in suite.tasks if t.task_id != gcd.task_id)
    twins = with_tasks(suite, (gcd, replace(other, goal=gcd.goal)))
    agent = AgentConfig()
    rows = Dataset.from_list(task_rows(twins, agent)).to_list()
    rollouts = EpisodeRollouts(twins, agent, Sampling(), 100, tmp_path, None, None, [0])
    assert [rollouts.task_of(row["prompt"]).task_id for row in rows] == [gcd.task_id, other.task_id]
    assert [m["content"] for m in rows[0]["prompt"]] == [m["content"] for m in rows[1]["prompt"]]
    with pytest.raises(ValueError, match="goal of 2 tasks"):  # an untagged prompt cannot pick one silently
        rollouts.task_of(episode_prompt(gcd, agent))
    plain = EpisodeRollouts(suite, agent, Sampling(), 100, tmp_path, None, None, [0])
    assert plain.task_of(episode_prompt(gcd, agent)).task_id == gcd.task_id  # a goal text only one task has is enough


@pytest.fixture(scope="module")
def tool_call_adapter(tiny, tmp_path_factory):
    """A tiny LoRA adapter that mostly answers with a valid tool call (so a sampled group has rewards
    that differ: format 1 for the valid call, 0 for noise)."""
    from repo_agent.train.common import LocalTrainConfig
    from repo_agent.train.local import train

    root = tmp_path_factory.mktemp("tool-call-adapter")
    suite = load_suite(TRAIN_SUITE)
    agent = AgentConfig()
    rows = [{"messages": [*episode_prompt(t, agent), {"role": "assistant", "content": TOOL_ACTION}]} for t in suite.tasks]
    dataset = root / "rows.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ids = root / "ids.json"
    ids.write_text(json.dumps(["bundled/sft_only_task"]))
    train(LocalTrainConfig(method="sft", model=str(tiny), dataset=str(dataset), output=str(root / "adapter"), max_steps=40,
                           batch_size=2, learning_rate=3e-2, lora_r=8, lora_alpha=16, lora_dropout=0.0, task_ids_file=str(ids)))
    return root / "adapter"


def adapter_weights(folder):
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / "adapter_model.safetensors"))


def test_one_grpo_step_changes_the_adapter_and_keeps_every_trace(tiny, tool_call_adapter, tmp_path):
    from repo_agent.train.grpo import GrpoConfig, build_trainer

    config = GrpoConfig(output=str(tmp_path / "grpo"), model=str(tiny), suite=str(TRAIN_SUITE), from_adapter=str(tool_call_adapter),
                        rewards={"format": 1.0, "test_pass": 1.0}, num_generations=4, max_steps=1, max_tokens=24,
                        token_budget=400, max_iters=2, learning_rate=5e-2, test_policy="never", temperature=0.7)
    from repo_agent.train.grpo import train

    seen = []
    original = EpisodeRollouts.__call__

    def recording(self, prompts, trainer):
        seen.append([json.dumps(p) for p in prompts])
        return original(self, prompts, trainer)

    EpisodeRollouts.__call__ = recording
    try:
        outcome = train(config)
    finally:
        EpisodeRollouts.__call__ = original
    # TRL hands rollout_func the prompts already repeated num_generations times
    assert len(seen) == 1 and len(seen[0]) == 4 and len(set(seen[0])) == 1
    out = Path(outcome.output)
    traces = sorted((out / "rollouts" / "step-00000").glob("*.json"))
    assert len(traces) == 4 and all(json.loads(p.read_text())["status"] == "finished" for p in traces)
    before, after = adapter_weights(tool_call_adapter), adapter_weights(out)
    assert before.keys() == after.keys()
    assert any(not (before[k] == after[k]).all() for k in before), "one GRPO step left the adapter unchanged"
    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    step = next(r for r in log if "reward" in r)
    assert "frac_reward_zero_std" in step and step["frac_reward_zero_std"] == 0.0  # the group had variance
    assert (out / "reward.png").stat().st_size > 0 and (out / "mask_audit.html").is_file()
    tasks = json.loads((out / "trained_tasks.json").read_text())
    assert "bundled/sft_only_task" in tasks["task_ids"]  # --from-adapter's tasks carry over
    assert set(tasks["task_ids"]) >= set(load_suite(TRAIN_SUITE).task_ids)
    record = json.loads((out / "grpo_config.json").read_text())
    assert record["finished"] and record["summary"]["rollouts"] == 4
    again = train(config)  # a rerun of a finished run is a no-op
    assert again.skipped


def test_grpo_refuses_held_out_tasks(cli, tmp_path):
    result = cli("grpo", "--suite", BUNDLED_SUITE, "--output", tmp_path / "g", "--max-steps", "1")
    assert result.exit_code == 2
    assert "test split" in result.output and "bundled/gcd" in result.output or "bundled/" in result.output
    assert not (tmp_path / "g").exists()


def test_grpo_rejects_unknown_rewards(cli, tmp_path):
    result = cli("grpo", "--suite", TRAIN_SUITE, "--reward", "test_pass=1,vibes=2", "--output", tmp_path / "g")
    assert result.exit_code == 2 and "unknown reward 'vibes'" in result.output


def test_a_crashed_grpo_run_resumes_from_its_checkpoint(tiny, tmp_path):
    """Step 2's rollouts crash after checkpoint-1 was saved; the rerun resumes at step 1 and keeps step 0's traces."""
    from repo_agent.train.grpo import GrpoConfig, train

    config = GrpoConfig(output=str(tmp_path / "grpo"), model=str(tiny), suite=str(TRAIN_SUITE), rewards={"format": 1.0},
                        num_generations=2, max_steps=2, max_tokens=8, token_budget=64, max_iters=1, test_policy="never",
                        save_steps=1)
    original = EpisodeRollouts.play

    def crash_at_step_one(self, prompts, step, generate):
        if step == 1:
            raise KeyboardInterrupt("killed")
        return original(self, prompts, step, generate)

    EpisodeRollouts.play = crash_at_step_one
    try:
        with pytest.raises(KeyboardInterrupt):
            train(config)
    finally:
        EpisodeRollouts.play = original
    out = tmp_path / "grpo"
    assert (out / "checkpoints" / "checkpoint-1").is_dir()
    kept = sorted((out / "rollouts" / "step-00000").glob("*.json"))
    outcome = train(config)
    assert outcome.resumed_from and outcome.resumed_from.endswith("checkpoint-1") and outcome.steps == 2
    assert sorted((out / "rollouts" / "step-00000").glob("*.json")) == kept
    assert len(list((out / "rollouts" / "step-00001").glob("*.json"))) == 2
    steps = [json.loads(line)["step"] for line in (out / "training_log.jsonl").read_text().splitlines()]
    assert steps.count(1) >= 1 and steps.count(2) >= 1 and not (out / "checkpoints").exists()


def test_grpo_on_humaneval_runs_one_step_with_trls_own_generation(tiny, tmp_path):
    from repo_agent.train.grpo import GrpoConfig, train

    config = GrpoConfig(output=str(tmp_path / "he"), model=str(tiny), task_set="humaneval", rewards={"code_tests": 1.0},
                        num_generations=2, max_steps=1, max_completion_length=16)
    outcome = train(config)
    log = [json.loads(line) for line in (Path(outcome.output) / "training_log.jsonl").read_text().splitlines()]
    assert any("rewards/code_tests/mean" in r for r in log)
    tasks = json.loads((Path(outcome.output) / "trained_tasks.json").read_text())["task_ids"]
    assert all(t.startswith("humaneval/") for t in tasks) and len(tasks) > 100


def test_a_micro_batch_that_does_not_divide_the_group_is_refused_before_anything_loads(cli, tmp_path):
    result = cli("grpo", "--suite", TRAIN_SUITE, "--num-generations", "4", "--micro-batch", "3", "--output", tmp_path / "g")
    assert result.exit_code == 2 and "--micro-batch 3 must divide the step's 4 episodes" in result.output
    assert not (tmp_path / "g").exists()
