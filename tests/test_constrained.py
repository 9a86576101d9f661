"""Constrained decoding (`--constrained json`): a grammar of the action union for local models (xgrammar,
on a tiny model built from a config), `response_format` for OpenAI-compatible servers (checked against a
fake server on 127.0.0.1), and the label that keeps constrained results apart from free ones in traces,
reports, `report compare` and the SFT sidecar."""

from __future__ import annotations

import json

import pytest

from conftest import REPO
from fake_openai_server import FakeOpenAIServer
from repo_agent import protocol as P
from repo_agent.protocol_prefix import dead_point
from tiny_models import LEARNED_ACTION, learnable_rows, shared_learned_adapter, shared_tiny_model

TEST_SUITE = REPO / "eval" / "suites" / "bundled_test_suite.json"
LIST = '{"type":"tool_call","name":"list_files","args":{"rel_dir":"."}}'
FINAL = '{"type":"final","summary":"looked around"}'


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return shared_tiny_model(tmp_path_factory, "llama")


def _local(model, adapter=None, max_tokens=80, tool_schemas=None, **sampling):
    from repo_agent.models.base import ProviderConfig, Sampling
    from repo_agent.models.local_hf import LocalModel

    config = ProviderConfig(provider="local", model=str(model), adapter=str(adapter) if adapter else None,
                            sampling=Sampling(max_tokens=max_tokens, **sampling), constrained="json")
    return LocalModel(config, seed=0, tool_schemas=tool_schemas)


def _chat(goal):
    from repo_agent.prompts import goal_message, system_prompt

    return [{"role": "system", "content": system_prompt("json")}, {"role": "user", "content": goal_message(goal)}]


GOALS = ["Fix gcd.", "Fix quicksort.", "Fix bitcount.", "Reply.", "Find the bug.", "x"]


def _complete_together(model, chats):
    """Concurrent calls: the engine batches them, so six replies cost little more than one."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(chats)) as pool:
        return list(pool.map(model.complete, chats))


def test_a_constrained_untrained_model_writes_only_valid_prefixes_and_valid_actions(tiny_llama):
    replies = _complete_together(_local(tiny_llama), [_chat(goal) for goal in GOALS])
    finished = 0
    for reply in replies:
        assert reply.error is None and not reply.stopped_early
        assert dead_point(reply.content) is None, reply.content  # never off the grammar, control characters included
        assert reply.content.startswith('{"type":')
        if reply.finish_reason == "stop":  # not cut by max_tokens: schema-valid, canonical JSON
            finished += 1
            action = P.parse_action(reply.content)
            assert not isinstance(action, P.ParseError), reply.content
            assert P.render_action(action) == reply.content
    assert finished >= 1
    # the same model decoding freely writes garbage: the formatting is the constraint's doing
    from repo_agent.models.base import ProviderConfig, Sampling
    from repo_agent.models.local_hf import LocalModel

    free = LocalModel(ProviderConfig(provider="local", model=str(tiny_llama), sampling=Sampling(max_tokens=80),
                                     early_stop=False), seed=0)
    assert all(isinstance(P.parse_action(r.content), P.ParseError) for r in _complete_together(free, [_chat(g) for g in GOALS]))


def test_a_learned_action_survives_the_grammar(tiny_llama, tmp_path_factory):
    adapter = shared_learned_adapter(tmp_path_factory, tiny_llama)
    reply = _local(tiny_llama, adapter).complete(learnable_rows(1)[0]["messages"][:1])
    assert reply.content == LEARNED_ACTION and reply.finish_reason == "stop"


def test_the_grammar_follows_the_tool_set_it_is_built_from(tiny_llama):
    model = _local(tiny_llama, tool_schemas={"grep": P.TOOL_SCHEMAS["grep"]}, temperature=1.0)
    actions = [P.parse_action(model.complete(_chat("Fix gcd.")).content) for _ in range(8)]
    valid = [a for a in actions if not isinstance(a, P.ParseError)]
    assert valid and all(isinstance(a, P.Final) or a.name == "grep" for a in valid)
    assert any(isinstance(a, P.ToolCall) for a in valid)


def test_constrained_and_free_rows_share_a_batch_without_touching_each_other(tiny_llama):
    from repo_agent.hf_loading import load_model, load_tokenizer
    from repo_agent.models.local_hf import BatchingEngine, GenerationRequest

    tokenizer, model = load_tokenizer(tiny_llama, padding_side="left"), load_model(tiny_llama)
    schema = json.dumps(P.action_json_schema(P.TOOL_SCHEMAS))
    prompt = list(tokenizer.apply_chat_template(_chat("Fix gcd."), add_generation_prompt=True, return_dict=True)["input_ids"])
    engine = BatchingEngine(model, tokenizer)
    alone_free = engine.generate([GenerationRequest(prompt, 20)])[0].text
    alone_constrained = engine.generate([GenerationRequest(prompt, 20, schema=schema)])[0].text
    together = engine.generate([GenerationRequest(prompt, 20, schema=schema), GenerationRequest(prompt, 20)])
    assert [r.text for r in together] == [alone_constrained, alone_free]
    assert alone_constrained.startswith('{"type":') and not alone_free.startswith('{"type":')


# -- OpenAI-compatible servers and the command line ----------------------------------------------------

def test_a_server_gets_the_action_schema_as_response_format(cli, tmp_path):
    with FakeOpenAIServer([FINAL]) as server:
        common = ("run", "--suite", TEST_SUITE, "--task", "bundled/clamp", "--llm-provider", "openai",
                  "--model", "fake", "--base-url", server.base_url)
        assert cli(*common, "--trace-dir", tmp_path / "c", "--constrained", "json").exit_code == 0
        assert cli(*common, "--trace-dir", tmp_path / "f").exit_code == 0
        constrained, free = server.requests
    assert constrained["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "repo_agent_action", "schema": P.action_json_schema(P.TOOL_SCHEMAS)}}
    assert constrained["stream"] is True and "response_format" not in free


@pytest.mark.parametrize("flags,message", [
    (("--constrained", "yaml", "--llm-provider", "local", "--model", "m"), "--constrained must be one of json"),
    (("--constrained", "json", "--tool-protocol", "native", "--llm-provider", "openai", "--model", "m", "--base-url",
      "http://127.0.0.1:9/v1"), "does not apply to --tool-protocol native"),
    (("--constrained", "json", "--llm-provider", "oracle"), "--constrained needs --llm-provider local or openai"),
])
def test_constraints_that_cannot_apply_are_refused(cli, tmp_path, flags, message):
    result = cli("run", "--suite", TEST_SUITE, "--task", "bundled/clamp", "--trace-dir", tmp_path, *flags)
    assert result.exit_code == 2 and message in " ".join(result.output.replace("│", " ").split())
    assert not (tmp_path / "traces").exists()


def _eval(cli, run_dir, server, *flags):
    result = cli("eval", "--suite", TEST_SUITE, "--trace-dir", run_dir, "--llm-provider", "openai", "--model", "fake",
                 "--base-url", server.base_url, "--num-workers", "2", *flags)
    assert result.exit_code == 0, result.output
    return json.loads((run_dir / "report.json").read_text())


def test_constrained_runs_are_labelled_in_traces_reports_comparisons_and_sft_sidecars(cli, tmp_path):
    with FakeOpenAIServer([LIST, FINAL]) as server:
        free = _eval(cli, tmp_path / "free", server, "--no-early-stop")
        early = _eval(cli, tmp_path / "early", server)
        constrained = _eval(cli, tmp_path / "constrained", server, "--constrained", "json")
    trace = json.loads(next((tmp_path / "constrained" / "traces").glob("*.json")).read_text())
    assert trace["decoding"] == {"early_stop": True, "constrained": "json"}
    assert constrained["decoding"] == trace["decoding"] and constrained["model"] == "openai:fake [constrained json]"
    assert free["decoding"] == {"early_stop": False, "constrained": None} and free["model"] == "openai:fake"
    assert "Decoding: constrained (json), early stop on." in (tmp_path / "constrained" / "report.md").read_text()
    assert "not comparable with free decoding" in (tmp_path / "constrained" / "report.md").read_text()

    result = cli("report", "compare", tmp_path / "free", tmp_path / "constrained", "--out", tmp_path / "cmp",
                 "--resamples", "200")
    assert result.exit_code == 0, result.output
    comparison = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert any("decoded differently" in w and "constrained decoding cannot emit" in w for w in comparison["warnings"])
    assert comparison["candidate"]["decoding"] == {"early_stop": True, "constrained": "json"}
    assert "decoded differently" in " ".join(result.output.split())

    result = cli("report", "compare", tmp_path / "free", tmp_path / "early", "--out", tmp_path / "cmp2", "--resamples", "200")
    warnings = json.loads((tmp_path / "cmp2" / "comparison.json").read_text())["warnings"]
    assert result.exit_code == 0 and any("early stop cuts unparseable replies short" in w for w in warnings)
    result = cli("report", "compare", tmp_path / "early", tmp_path / "early", "--out", tmp_path / "cmp3", "--resamples", "200")
    assert not [w for w in json.loads((tmp_path / "cmp3" / "comparison.json").read_text())["warnings"] if "decod" in w]

    out = tmp_path / "sft" / "train.jsonl"
    result = cli("sft-extract", "--trace-dir", tmp_path / "constrained", "--output", out, "--no-require-success",
                 "--allow-held-out")
    assert result.exit_code == 0, result.output
    meta = [json.loads(line) for line in out.with_name("train.meta.jsonl").read_text().splitlines()]
    assert meta and all(m["decoding"] == {"early_stop": True, "constrained": "json"} for m in meta)
