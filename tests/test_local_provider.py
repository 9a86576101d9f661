"""The `local` provider: JSON-complete stopping, seeded sampling, dynamic batching, adapters, and a real
episode through the CLI, all on a tiny model built from a config."""

from __future__ import annotations

import json
import threading

import pytest
from hypothesis import given, strategies as st

from conftest import BUNDLED_SUITE
from tiny_models import LEARNED_ACTION, learnable_rows, shared_learned_adapter, shared_tiny_model


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return shared_tiny_model(tmp_path_factory, "llama")


@pytest.fixture(scope="module")
def learned_adapter(tiny_llama, tmp_path_factory):
    return shared_learned_adapter(tmp_path_factory, tiny_llama)


def _model(model, adapter=None, seed=0, **sampling):
    """Free decoding (no early stop): these tests pin token limits, batching and sampling on whole
    replies; early stop has its own tests (test_early_stop.py)."""
    from repo_agent.models.base import ProviderConfig, Sampling
    from repo_agent.models.local_hf import LocalModel

    config = ProviderConfig(provider="local", model=str(model), adapter=str(adapter) if adapter else None,
                            sampling=Sampling(**{"max_tokens": 40, **sampling}), early_stop=False)
    return LocalModel(config, seed=seed)


# -- the stop rule, pure ----------------------------------------------------------------------------------

def _complete_after(text: str) -> int | None:
    from repo_agent.protocol_prefix import JsonObjectScanner

    scanner = JsonObjectScanner()
    for index, char in enumerate(text):
        if scanner.feed(char):
            return index + 1
    return None


def test_scanner_stops_exactly_at_the_end_of_the_first_object():
    action = '{"type":"tool_call","name":"write_file","args":{"rel_path":"a.py","content":"d = {\\"k\\": \\"}\\"}\\n"}}'
    assert _complete_after(action + "\nmore text {}") == len(action)
    assert _complete_after("I can't say \"hi\" {\"a\": {\"b\": \"}\"}} tail") == len("I can't say \"hi\" {\"a\": {\"b\": \"}\"}}")
    assert _complete_after('{"a": "unterminated }') is None
    assert _complete_after("no json at all") is None


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(), lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=10))
def test_scanner_agrees_with_the_json_parser(value):
    text = json.dumps({"v": value})
    assert _complete_after(text + "trailing") == len(text)


def test_text_tool_calls_are_read_in_openai_shape():
    from repo_agent.models.local_hf import parse_text_tool_calls

    calls = parse_text_tool_calls('<tool_call>\n{"name": "read_file", "arguments": {"rel_path": "a.py"}}\n</tool_call>')
    assert calls[0]["function"]["name"] == "read_file" and json.loads(calls[0]["function"]["arguments"]) == {"rel_path": "a.py"}
    assert parse_text_tool_calls('{"name": "final", "arguments": {"summary": "x"}}')[0]["function"]["name"] == "final"
    assert parse_text_tool_calls("Sure! Here is the fix.") is None


# -- generation with a tiny model ---------------------------------------------------------------------------

def test_learned_adapter_replies_with_the_action_and_stops_at_its_closing_brace(tiny_llama, learned_adapter):
    from transformers import AutoTokenizer

    prompt = learnable_rows()[0]["messages"][:1]
    reply = _model(tiny_llama, learned_adapter, max_tokens=64).complete(prompt)
    assert reply.error is None
    assert reply.content == LEARNED_ACTION and reply.finish_reason == "stop"
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    assert reply.completion_tokens == len(tokenizer(LEARNED_ACTION)["input_ids"])  # no end-of-turn token was needed
    assert reply.prompt_tokens == len(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True,
                                                                    return_dict=True)["input_ids"])
    base = _model(tiny_llama, None, max_tokens=64).complete(prompt)
    assert base.content != LEARNED_ACTION  # the adapter, not luck, produced it


def test_max_tokens_bounds_the_reply(tiny_llama):
    reply = _model(tiny_llama, max_tokens=5).complete([{"role": "user", "content": "GOAL:\nFix gcd."}])
    assert reply.error is None and 1 <= reply.completion_tokens <= 5
    assert reply.finish_reason in ("length", "stop")


def test_a_prompt_beyond_the_context_is_an_error_reply(tiny_llama):
    llm = _model(tiny_llama)
    words = " ".join(f"w{i}" for i in range(40000))
    reply = llm.complete([{"role": "user", "content": words}])
    assert reply.error and "exceeds the model's context" in reply.error


def test_concurrent_requests_are_batched_and_give_the_sequential_answers(tiny_llama, learned_adapter):
    """Greedy and seeded-sampled replies do not depend on which requests share a batch."""
    prompts = [r["messages"][:1] for r in learnable_rows(6)]
    settings = [dict(temperature=0.0), dict(temperature=0.9, top_p=0.9), dict(temperature=0.0),
                dict(temperature=1.2), dict(temperature=0.0), dict(temperature=0.7, top_p=0.5)]
    sequential = [_model(tiny_llama, None, max_tokens=12, **s).complete(p).content for p, s in zip(prompts, settings)]
    llm = _model(tiny_llama, None, max_tokens=12)
    engine = llm.engine
    sizes_before = len(engine.batch_sizes)
    results = [None] * len(prompts)
    barrier = threading.Barrier(len(prompts))

    def worker(i):
        model = _model(tiny_llama, None, max_tokens=12, **settings[i])
        barrier.wait()
        results[i] = model.complete(prompts[i]).content

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert max(engine.batch_sizes[sizes_before:]) > 1, "concurrent requests were not batched"
    assert results == sequential
    assert len({r for r, s in zip(sequential, settings) if s["temperature"] > 0}) > 1  # sampling did sample


def test_a_rollout_samples_differently_per_call_but_reproducibly_per_seed(tiny_llama):
    prompt = [{"role": "user", "content": "GOAL:\nFix gcd."}]
    first = _model(tiny_llama, temperature=1.0, max_tokens=8)
    replies = [first.complete(prompt).content for _ in range(3)]
    again = _model(tiny_llama, temperature=1.0, max_tokens=8)
    assert [again.complete(prompt).content for _ in range(3)] == replies
    assert len(set(replies)) > 1


# -- the CLI --------------------------------------------------------------------------------------------------

def test_cli_episode_with_local_provider_and_adapter(cli, tiny_llama, learned_adapter, tmp_path):
    result = cli("run", "--suite", BUNDLED_SUITE, "--task", "gcd", "--llm-provider", "local", "--model", tiny_llama,
                 "--adapter", learned_adapter, "--max-iters", "3", "--max-tokens", "24", "--trace-dir", tmp_path)
    assert result.exit_code == 0, result.output
    trace = json.loads((tmp_path / "traces" / "bundled__gcd__r0.json").read_text())
    assert trace["status"] == "finished" and trace["provider"] == "local" and trace["error"] is None
    steps = trace["steps"]
    assert 1 <= len(steps) <= 3
    assert trace["stop_reason"] in ("max_iters", "final")
    for step in steps:
        assert step["prompt_tokens"] > 0 and 0 < step["completion_tokens"] <= 24
        assert (step["parse_error"] is None) == (step["action"] is not None)
    assert trace["metrics"]["parse_errors"] == sum(1 for s in steps if s["parse_error"])
    assert trace["metrics"]["tokens_out"] == sum(s["completion_tokens"] for s in steps)


def test_cli_native_protocol_on_a_template_without_tools(cli, tiny_llama, tmp_path):
    result = cli("run", "--suite", BUNDLED_SUITE, "--task", "gcd", "--llm-provider", "local", "--model", tiny_llama,
                 "--tool-protocol", "native", "--max-iters", "2", "--max-tokens", "8", "--trace-dir", tmp_path)
    assert result.exit_code == 0, result.output
    trace = json.loads((tmp_path / "traces" / "bundled__gcd__r0.json").read_text())
    assert trace["tool_protocol"] == "native" and len(trace["steps"]) == 2
    assert all(s["parse_error"]["kind"] == "no_tool_call" for s in trace["steps"])


def test_cli_unknown_model_is_a_clear_error(cli, tmp_path):
    result = cli("run", "--suite", BUNDLED_SUITE, "--task", "gcd", "--llm-provider", "local", "--model", tmp_path / "missing",
                 "--trace-dir", tmp_path / "run")
    assert result.exit_code == 2 and "not found" in " ".join(result.output.split())


def test_prefix_kv_cache_reuse_changes_no_reply(tiny_llama):
    """Shared prefixes (system prompt across rollouts, earlier turns within one) are prefilled once and
    reused; replies are identical to generation without the cache, alone and batched."""
    from repo_agent.hf_loading import load_model, load_tokenizer
    from repo_agent.models.local_hf import BatchingEngine, GenerationRequest
    from repo_agent.prompts import goal_message, system_prompt

    tokenizer, model = load_tokenizer(tiny_llama), load_model(tiny_llama)
    system = {"role": "system", "content": system_prompt("json")}
    chats = [[system, {"role": "user", "content": goal_message("Fix gcd.")}],
             [system, {"role": "user", "content": goal_message("Fix quicksort.")}]]
    chats.append(chats[0] + [{"role": "assistant", "content": "hello"}, {"role": "user", "content": "[tool_result]\nERROR: x"}])
    prompts = [list(tokenizer.apply_chat_template(c, add_generation_prompt=True, return_dict=True)["input_ids"]) for c in chats]

    def replies(engine):
        alone = [engine.generate([GenerationRequest(p, 10, 0.9 if i == 1 else 0.0, 1.0, seed=3)])[0].text
                 for i, p in enumerate(prompts)]
        batched = [r.text for r in engine.generate([GenerationRequest(p, 10, 0.9 if i == 1 else 0.0, 1.0, seed=3)
                                                    for i, p in enumerate(prompts)])]
        return alone, batched

    cached = BatchingEngine(model, tokenizer, prefix_cache=True)
    assert replies(cached) == replies(BatchingEngine(model, tokenizer, prefix_cache=False))
    assert cached._prefixes and min(len(k) for k in cached._prefixes) >= 64
