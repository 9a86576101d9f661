"""Early stop and one action per reply, end to end: scripted replies through the CLI, a tiny model built
from a config (local provider, batched), and a streaming OpenAI-compatible server on 127.0.0.1.

The promise pinned everywhere: early stop changes how much is generated, never which steps are parse
errors. A stopped reply is a prefix of what free decoding would have written, and that full reply is
a parse error too."""

from __future__ import annotations

import json
import threading

import pytest

from conftest import BUNDLED_SUITE
from fake_openai_server import FakeOpenAIServer
from repo_agent import protocol as P
from repo_agent.traces import read_trace
from tiny_models import LEARNED_ACTION, learnable_rows, shared_learned_adapter, shared_tiny_model

VALID_READ = '{"type":"tool_call","name":"read_file","args":{"rel_path":"python_programs/gcd.py"}}'
REPLIES = [
    "I think the bug is in gcd. The code is:\n```python\ndef gcd(a, b):\n    return a\n```",
    'Sure! Here is my call: {"type":"tool_call","name":"list_files","args":{}}',  # extra_text when free
    VALID_READ,
    '```json\n{"type":"final","summary":"x"}\n```',
    '{"type":"tool_call","nmae":"grep","args":{"pattern":"x"}}',  # a misspelt key
    '{"type":"tool_call","name":"grep","args":{"pattern":"gcd"},"summary":"both envelopes"}',
    '{"type":"tool_call","name":"read_file","args":{"rel_path":3}}',  # bad_args: never dead, values are not judged
    '{"type":"final","summary":"x"} I hope this helps!',
    "[1, 2, 3]",
    "",
    '{"type":"final","summary":"gave up"}',
]


def run_episode_cli(cli, out, *extra):
    result = cli("run", "--suite", BUNDLED_SUITE, "--task", "gcd", "--trace-dir", out, *extra)
    assert result.exit_code == 0, result.output
    return read_trace(out / "traces" / "bundled__gcd__r0.json")


def assert_same_parse_error_steps(free, early):
    """Step by step: same parse-error verdicts; a stopped reply is a strict prefix of the free one."""
    assert len(free["steps"]) == len(early["steps"])
    for f, e in zip(free["steps"], early["steps"]):
        assert (f["parse_error"] is None) == (e["parse_error"] is None), (f["raw_output"], e["raw_output"])
        assert f["stopped_early"] is False
        if e["stopped_early"]:
            assert e["parse_error"]["kind"] == "stopped_early"
            assert f["raw_output"].startswith(e["raw_output"]) and len(e["raw_output"]) < len(f["raw_output"])
        else:
            assert e["raw_output"] == f["raw_output"] and e["parse_error"] == f["parse_error"]
    assert free["metrics"]["parse_errors"] == early["metrics"]["parse_errors"]


# -- scripted replies ---------------------------------------------------------------------------------------

def test_scripted_replies_are_the_same_parse_errors_with_and_without_early_stop(cli, tmp_path):
    script = tmp_path / "replies.json"
    script.write_text(json.dumps(REPLIES))
    common = ("--llm-provider", "scripted", "--model", script, "--max-iters", str(len(REPLIES)))
    free = run_episode_cli(cli, tmp_path / "free", *common, "--no-early-stop")
    early = run_episode_cli(cli, tmp_path / "early", *common)
    assert_same_parse_error_steps(free, early)
    assert [s["stopped_early"] for s in early["steps"]] == [True, True, False, True, True, True, False, True, True,
                                                           False, False]
    assert [s["raw_output"] for s in early["steps"][:2]] == ["I", "S"]  # dead at the first character
    assert early["steps"][4]["raw_output"] == '{"type":"tool_call","nm'  # dead inside the misspelt key
    assert early["steps"][7]["raw_output"] == '{"type":"final","summary":"x"} I'
    assert "ERROR: stopped_early: generation was stopped at character 0" in early["steps"][0]["result_message"]["content"]
    assert free["steps"][1]["parse_error"]["kind"] == "extra_text"  # today's kinds when early stop is off
    assert free["decoding"] == {"early_stop": False, "constrained": None}
    assert early["decoding"] == {"early_stop": True, "constrained": None}
    # the partial text is what the model is shown it said: the next prompt holds it, not the full reply
    assert early["steps"][0]["assistant_message"]["content"] == "I"


# -- the local provider on a tiny model ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return shared_tiny_model(tmp_path_factory, "llama")


def _local(model, early_stop, adapter=None, max_tokens=24, constrained=None, **sampling):
    from repo_agent.models.base import ProviderConfig, Sampling
    from repo_agent.models.local_hf import LocalModel

    config = ProviderConfig(provider="local", model=str(model), adapter=str(adapter) if adapter else None,
                            sampling=Sampling(max_tokens=max_tokens, **sampling), early_stop=early_stop,
                            constrained=constrained)
    return LocalModel(config, seed=0)


def _chats():
    from repo_agent.prompts import goal_message, system_prompt

    system = {"role": "system", "content": system_prompt("json")}
    goals = ["Fix gcd.", "Fix quicksort so its tests pass.", "Fix bitcount.", "{", "Reply with JSON."]
    return [[system, {"role": "user", "content": goal_message(g)}] for g in goals] + [r["messages"][:1] for r in learnable_rows(3)]


def test_local_early_stop_only_cuts_replies_that_could_not_parse(tiny_llama, tmp_path_factory):
    adapter = shared_learned_adapter(tmp_path_factory, tiny_llama)
    pairs = [(_local(tiny_llama, False).complete(c), _local(tiny_llama, True).complete(c)) for c in _chats()]
    pairs += [(_local(tiny_llama, False, adapter).complete(c), _local(tiny_llama, True, adapter).complete(c))
              for c in [r["messages"][:1] for r in learnable_rows(2)]]
    stopped = 0
    for free, early in pairs:
        assert free.error is None and early.error is None and not free.stopped_early
        if early.stopped_early:
            stopped += 1
            assert early.finish_reason == "early_stop"
            assert isinstance(P.parse_action(free.content), P.ParseError), free.content
            assert free.content.startswith(early.content) and early.completion_tokens < free.completion_tokens
            assert P.parse_action(early.content, stopped_early=True).kind == "stopped_early"
        else:
            assert early.content == free.content and early.completion_tokens == free.completion_tokens
    assert stopped >= 3  # the untrained tiny model writes garbage: early stop must have fired
    assert pairs[-1][1].content == LEARNED_ACTION and not pairs[-1][1].stopped_early  # a valid reply runs to its end


def test_a_stopped_row_leaves_the_batch_while_the_others_go_on(tiny_llama):
    """In one batched generate: the dead row is answered at once (its caller moves on), the free row runs
    to its limit and gives exactly the reply it gives alone."""
    from repo_agent.hf_loading import load_model, load_tokenizer
    from repo_agent.models.local_hf import BatchingEngine, GenerationRequest

    tokenizer, model = load_tokenizer(tiny_llama, padding_side="left"), load_model(tiny_llama)
    prompt = list(tokenizer.apply_chat_template(_chats()[0], add_generation_prompt=True, return_dict=True)["input_ids"])
    engine = BatchingEngine(model, tokenizer)
    alone = engine.generate([GenerationRequest(prompt, 30, early_stop=False)])[0]
    requests = [GenerationRequest(prompt, 30, early_stop=True), GenerationRequest(prompt, 30, early_stop=False)]
    returned: list[bool] = []
    answered: list[tuple[int, bool]] = []  # (row, whether generate had returned when it was answered)
    for row, request in enumerate(requests):
        request.future.add_done_callback(lambda _f, row=row: answered.append((row, bool(returned))))
    results = engine.generate(requests, answer_early=True)
    returned.append(True)
    assert results[0].finish_reason == "early_stop" and results[0].completion_tokens < results[1].completion_tokens
    assert results[1].text == alone.text and results[1].completion_tokens == alone.completion_tokens == 30
    assert answered == [(0, False), (1, False)]  # both inside generate, the dead row first
    assert requests[0].future.result() == results[0]


def test_concurrent_local_rollouts_keep_batching_with_early_stop(tiny_llama):
    chats = _chats()[:5]
    sequential = [_local(tiny_llama, True, max_tokens=16).complete(c) for c in chats]
    engine = _local(tiny_llama, True).engine
    calls_before = len(engine.batch_sizes)
    replies = [None] * len(chats)
    barrier = threading.Barrier(len(chats))

    def worker(i):
        model = _local(tiny_llama, True, max_tokens=16)
        barrier.wait()
        replies[i] = model.complete(chats[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(chats))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert max(engine.batch_sizes[calls_before:]) > 1, "concurrent requests were not batched"
    assert [(r.content, r.stopped_early) for r in replies] == [(r.content, r.stopped_early) for r in sequential]


def test_local_cli_episode_records_stopped_steps_as_parse_errors(cli, tmp_path, tiny_llama):
    common = ("--llm-provider", "local", "--model", tiny_llama, "--max-iters", "3", "--max-tokens", "24")
    free = run_episode_cli(cli, tmp_path / "free", *common, "--no-early-stop")
    early = run_episode_cli(cli, tmp_path / "early", *common)
    first_free, first_early = free["steps"][0], early["steps"][0]  # same prompt, greedy: comparable
    assert first_early["stopped_early"] and first_early["parse_error"]["kind"] == "stopped_early"
    assert first_free["raw_output"].startswith(first_early["raw_output"]) and first_free["parse_error"] is not None
    for step in early["steps"]:
        assert step["parse_error"] is not None or not step["stopped_early"]
    assert early["metrics"]["tokens_out"] < free["metrics"]["tokens_out"]
    assert early["decoding"] == {"early_stop": True, "constrained": None}


# -- a streaming OpenAI-compatible server ----------------------------------------------------------------

PROSE = "The bug is in gcd. " * 100  # 1900 characters: 475 chunks of 4


def _openai(server, *extra):
    return ("--llm-provider", "openai", "--model", "fake", "--base-url", server.base_url, *extra)


def test_streamed_prose_is_cut_and_the_stream_closed(cli, tmp_path):
    with FakeOpenAIServer([PROSE, '{"type":"final","summary":"x"}'], stream_delay_s=0.01) as server:
        early = run_episode_cli(cli, tmp_path / "early", *_openai(server))
        free = run_episode_cli(cli, tmp_path / "free", *_openai(server, "--no-early-stop"))
        requests, streams = list(server.requests), dict(server.streams)
    assert all(r["stream"] is True and r["stream_options"] == {"include_usage": True} for r in requests)
    assert_same_parse_error_steps(free, early)
    first = early["steps"][0]
    assert first["raw_output"] == "The " and first["stopped_early"] and first["completion_tokens"] == 1
    assert first["prompt_tokens"] is None  # the server's usage comes last: a closed stream never sends it
    assert streams[0]["client_closed"] and streams[0]["written"] < streams[0]["events"] // 4
    free_stream = streams[2]  # the free episode's first request: read to the end
    assert not free_stream["client_closed"] and free_stream["written"] == free_stream["events"]
    assert free["steps"][0]["raw_output"] == PROSE and free["steps"][0]["prompt_tokens"] > 0


def test_streamed_reply_stops_at_the_end_of_its_first_action(cli, tmp_path):
    chatty = VALID_READ + " Now I will look at the tests." * 40
    for flag in ("--early-stop", "--no-early-stop"):  # one action per reply holds either way
        with FakeOpenAIServer([chatty, '{"type":"final","summary":"x"}'], stream_chunk_chars=1,
                              stream_delay_s=0.002) as server:
            trace = run_episode_cli(cli, tmp_path / flag, *_openai(server, flag))
            stream = dict(server.streams)[0]
        step = trace["steps"][0]
        assert step["raw_output"] == VALID_READ and step["parse_error"] is None and not step["stopped_early"]
        assert step["action"]["name"] == "read_file" and step["tool_ok"] is True
        assert stream["client_closed"] and stream["written"] < stream["events"] // 2


def test_streamed_replies_are_the_same_parse_errors_with_and_without_early_stop(cli, tmp_path):
    replies = [r for r in REPLIES if r]  # an empty streamed reply has no chunks: covered by scripted replies
    common = ("--max-iters", str(len(replies)))
    with FakeOpenAIServer(replies, stream_chunk_chars=3) as server:
        free = run_episode_cli(cli, tmp_path / "free", *_openai(server, *common, "--no-early-stop"))
        early = run_episode_cli(cli, tmp_path / "early", *_openai(server, *common))
    assert_same_parse_error_steps(free, early)
    assert [s["stopped_early"] for s in early["steps"]] == [True, True, False, True, True, True, False, False]
    # the final followed by prose arrives as chunks ending exactly at its "}": one action per reply makes
    # it a clean final in both modes, and the episode ends there
    assert early["steps"][-1]["action"] == free["steps"][-1]["action"] == {"type": "final", "summary": "x"}
    complete = early["steps"][2]  # a valid reply read to its end: the usage chunk counted its tokens
    assert complete["parse_error"] is None and complete["prompt_tokens"] > 0 and complete["completion_tokens"] > 0


def test_native_protocol_is_neither_streamed_nor_stopped_early(cli, tmp_path):
    call = {"content": "", "tool_calls": [{"id": "c1", "type": "function",
                                          "function": {"name": "final", "arguments": '{"summary": "x"}'}}]}
    with FakeOpenAIServer([call]) as server:
        trace = run_episode_cli(cli, tmp_path, *_openai(server, "--tool-protocol", "native"))
        request = server.requests[0]
    assert "stream" not in request and trace["steps"][0]["action"] == {"type": "final", "summary": "x"}
    assert trace["decoding"] == {"early_stop": False, "constrained": None}
