"""Golden files: a deterministic trace set (oracle + scripted episodes, run for real) always gives the
same bytes, and every example's prompt is exactly what the model saw at that step.

Regenerate the golden files after an intended format change with:
    REPO_AGENT_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_data_golden.py -q
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from repo_agent.traces import conversation_at, read_trace
from test_data_helpers import golden_fixture, read_jsonl

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("REPO_AGENT_UPDATE_GOLDEN") == "1"
ALL_STEPS = ("--no-require-success", "--no-require-valid-tool-ok", "--keep-loops")


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    trace_dir = tmp_path_factory.mktemp("golden_traces")
    return trace_dir, golden_fixture(trace_dir)


def extract(cli, kind: str, fmt: str, trace_dir: Path, out: Path, *extra: str):
    command = "sft-extract" if kind == "sft" else "pairs-extract"
    flags = ALL_STEPS if kind == "sft" else ()
    result = cli(command, "--trace-dir", trace_dir, "--output", out, "--format", fmt, "--allow-held-out", *flags, *extra)
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("kind,fmt", [("sft", "json"), ("sft", "native"), ("sft", "trl"), ("pairs", "json"), ("pairs", "trl")])
def test_outputs_match_golden_files_byte_for_byte(cli, fixture, tmp_path, kind, fmt):
    trace_dir, _ = fixture
    first = extract(cli, kind, fmt, trace_dir, tmp_path / "a" / f"{kind}.jsonl")
    second = extract(cli, kind, fmt, trace_dir, tmp_path / "b" / f"{kind}.jsonl")
    assert first.read_bytes() == second.read_bytes()
    meta = first.with_name(f"{kind}.meta.jsonl")
    assert meta.read_bytes() == second.with_name(f"{kind}.meta.jsonl").read_bytes()
    for produced, golden in ((first, GOLDEN / f"{kind}_{fmt}.jsonl"), (meta, GOLDEN / f"{kind}_{fmt}.meta.jsonl")):
        if UPDATE:
            GOLDEN.mkdir(exist_ok=True)
            golden.write_bytes(produced.read_bytes())
        assert golden.exists(), f"missing golden file {golden}; run with REPO_AGENT_UPDATE_GOLDEN=1"
        assert produced.read_bytes() == golden.read_bytes(), f"{produced.name} differs from {golden}"


def test_every_sft_prompt_is_what_the_model_saw(cli, fixture, tmp_path):
    trace_dir, built = fixture
    out = extract(cli, "sft", "json", trace_dir, tmp_path / "sft.jsonl")
    rows, meta = read_jsonl(out), read_jsonl(out.with_name("sft.meta.jsonl"))
    assert len(rows) == len(meta) > 0
    seen_by_rollout = {trace["rollout_id"]: model.seen for trace, model in built["bad"].values()}
    compared_with_seen = 0
    for row, where in zip(rows, meta):
        trace = read_trace(trace_dir / where["trace"])
        k = where["step_index"]
        prompt = [{key: v for key, v in m.items() if key != "weight"} for m in row["messages"][:-1]]
        assert prompt == conversation_at(trace, k)
        assert json.dumps(prompt, ensure_ascii=False) == json.dumps(conversation_at(trace, k), ensure_ascii=False)
        if where["rollout_id"] in seen_by_rollout:
            assert prompt == seen_by_rollout[where["rollout_id"]][k]
            compared_with_seen += 1
        # the target is the canonical action of that step, never a parse error
        step = trace["steps"][k]
        assert step["parse_error"] is None
        assert json.loads(row["messages"][-1]["content"]) == step["action"]
        assert [m["weight"] for m in row["messages"]] == [0] * (len(row["messages"]) - 1) + [1]
    assert compared_with_seen >= 6
    # the prompt of a later step keeps an earlier parse error exactly as the model wrote it
    prose = [r for r, w in zip(rows, meta) if w["rollout_id"] == "gcd__prose_then_fix" and w["step_index"] >= 1]
    assert prose and all(r["messages"][2]["content"] == "Let me look at the code first." for r in prose)


def test_default_filters_count_what_they_remove(cli, fixture, tmp_path):
    trace_dir, built = fixture
    out = tmp_path / "sft.jsonl"
    refused = cli("sft-extract", "--trace-dir", trace_dir, "--output", out)  # gcd is held out by the split rule
    assert refused.exit_code == 3 and "held-out task" in refused.output and not out.exists()
    result = cli("sft-extract", "--trace-dir", trace_dir, "--output", out, "--allow-held-out")
    assert result.exit_code == 0, result.output
    stats = json.loads(out.with_name("sft.stats.json").read_text())
    traces = [read_trace(p) for p in sorted((trace_dir / "traces").glob("*.json"))]
    tampered = [t for t in traces if t["tampered"]]
    assert [t["rollout_id"] for t in tampered] == ["gcd__tamper"]  # its refused write of the test file
    assert stats["removed"]["tampered_or_suspicious_rollout"] == len(tampered[0]["steps"])  # every step of it
    traces = [t for t in traces if not t["tampered"]]
    parse_errors = sum(1 for t in traces for s in t["steps"] if s["parse_error"])
    mistakes = sum(1 for t in traces for s in t["steps"] if s.get("mistake"))
    failed_valid = sum(1 for t in traces if not t["metrics"]["passed"] for s in t["steps"]
                       if not s["parse_error"] and not s["refused"])
    tool_errors_in_passed = sum(1 for t in traces if t["metrics"]["passed"] for s in t["steps"] if s["tool_ok"] is False)
    assert parse_errors == 2 and failed_valid > 0 and tool_errors_in_passed == 1 and mistakes == 1
    assert stats["removed"]["parse_error"] == parse_errors
    assert stats["removed"]["mistake"] == mistakes  # in a rollout that passed: removed for being a mistake
    assert stats["removed"]["rollout_failed"] == failed_valid
    assert stats["removed"]["tool_error"] == tool_errors_in_passed
    assert stats["rollouts_read"] == len(traces) + len(tampered) == 10
    assert stats["steps_seen"] == sum(len(t["steps"]) for t in traces + tampered)
    assert stats["examples"] + sum(stats["removed"].values()) == stats["steps_seen"]
    assert stats["check"]["ok"] is True
    passed_ids = {t["rollout_id"] for t in traces if t["metrics"]["passed"]}
    assert {m["rollout_id"] for m in read_jsonl(out.with_name("sft.meta.jsonl"))} <= passed_ids


def test_pairs_come_from_one_state_and_all_three_sources(cli, fixture, tmp_path):
    trace_dir, _ = fixture
    out = extract(cli, "pairs", "json", trace_dir, tmp_path / "pairs.jsonl")
    rows, meta = read_jsonl(out), read_jsonl(out.with_name("pairs.meta.jsonl"))
    assert len(rows) == len(meta)
    assert {m["source"] for m in meta} == {"divergence", "validity", "loops"}
    for row, m in zip(rows, meta):
        k = m["step_index"]
        chosen_trace = read_trace(trace_dir / m["chosen"]["trace"])
        rejected_trace = read_trace(trace_dir / m["rejected"]["trace"])
        # both sides saw exactly this conversation
        assert row["input"]["messages"] == conversation_at(chosen_trace, k) == conversation_at(rejected_trace, k)
        chosen_step, rejected_step = chosen_trace["steps"][k], rejected_trace["steps"][k]
        assert chosen_step["parse_error"] is None and not chosen_step["loop"] and chosen_step["tool_ok"] is not False
        assert json.loads(row["preferred_output"][0]["content"]) == chosen_step["action"]
        assert row["preferred_output"] != row["non_preferred_output"]
        assert not chosen_step.get("mistake") and m["chosen"]["mistake"] is False
        gap = m["outcome_gap"]  # the sidecar names the recorded outcome of this step that differs
        if m["source"] == "validity":
            assert rejected_step["parse_error"] or rejected_step["tool_ok"] is False
            if rejected_step["parse_error"]:  # the loser is shown exactly as the model wrote it
                assert gap == "parse_error"
                assert row["non_preferred_output"][0]["content"] == rejected_step["raw_output"]
            else:
                assert gap == ("refused" if rejected_step["refused"] else "tool_error")
        elif m["source"] == "loops":
            assert gap == "loop" and rejected_step["loop"] == "repeat" and m["rejected"]["rollout_id"] == "gcd__loops"
        else:  # a write whose tests passed beats one whose tests failed, from the very same state
            assert gap == "tests"
            assert chosen_step["test_snippet"].startswith("[TESTS PASS]")
            assert rejected_step["test_snippet"].startswith("[TESTS FAIL]") and rejected_step["mistake"]
            assert m["chosen"]["tests"] == "pass" and m["rejected"]["tests"] == "fail"
    assert {m["outcome_gap"] for m in meta} == {"tests", "parse_error", "tool_error", "refused", "loop"}
    stats = json.loads(out.with_name("pairs.stats.json").read_text())
    assert stats["removed"]["no_outcome_gap"] > 0  # oracles exploring differently, both passing: no pair
    assert stats["removed"]["mistake_never_wins"] == 1  # the branch's mistake vs the tamper's refused write
    assert stats["pairs_by_outcome_gap"] == {g: sum(1 for m in meta if m["outcome_gap"] == g) for g in stats["pairs_by_outcome_gap"]}


def test_a_lower_outcome_gap_brings_back_exploration_pairs(cli, fixture, tmp_path):
    trace_dir, _ = fixture
    strict = read_jsonl(extract(cli, "pairs", "json", trace_dir, tmp_path / "s.jsonl").with_name("s.meta.jsonl"))
    loose = read_jsonl(extract(cli, "pairs", "json", trace_dir, tmp_path / "l.jsonl", "--min-outcome-gap", "none")
                       .with_name("l.meta.jsonl"))
    extra = [m for m in loose if m["outcome_gap"] == "remaining_steps"]
    assert extra and len(loose) > len(strict)
    assert all(m["chosen"]["passed"] and m["rejected"]["passed"] for m in extra)
    bad = cli("pairs-extract", "--trace-dir", trace_dir, "--output", tmp_path / "x.jsonl", "--min-outcome-gap", "any")
    assert bad.exit_code != 0 and not (tmp_path / "x.jsonl").exists()


def test_sources_are_selectable_and_counted(cli, fixture, tmp_path):
    trace_dir, _ = fixture
    out = extract(cli, "pairs", "json", trace_dir, tmp_path / "p.jsonl", "--sources", "loops")
    meta = read_jsonl(out.with_name("p.meta.jsonl"))
    stats = json.loads(out.with_name("p.stats.json").read_text())
    assert {m["source"] for m in meta} == {"loops"}
    assert stats["pairs_by_source"] == {"loops": len(meta)}
    assert stats["removed"]["source_not_selected:validity"] > 0
    assert stats["removed"]["source_not_selected:divergence"] > 0
    bad = cli("pairs-extract", "--trace-dir", trace_dir, "--output", tmp_path / "x.jsonl", "--sources", "vibes")
    assert bad.exit_code != 0 and not (tmp_path / "x.jsonl").exists()


@pytest.mark.parametrize("fmt", ["json", "native", "trl"])
def test_fast_line_encoder_equals_the_pure_export_functions(fixture, fmt):
    from repo_agent.data.export import SftLineEncoder, dumps_line, sft_exporter
    from repo_agent.data.sft import SftOptions, trace_examples
    from repo_agent.data.stats import DataStats

    trace_dir, _ = fixture
    options = SftOptions(fmt=fmt, require_success=False, require_valid_tool_ok=False, skip_loops=False)
    encoder, export, compared = SftLineEncoder(fmt), sft_exporter(fmt), 0
    for path in sorted((trace_dir / "traces").glob("*.json")):
        encoder.new_trace()
        for example in trace_examples(read_trace(path), path.name, options, DataStats("sft", "-", fmt)):
            assert encoder.encode(example) == dumps_line(export(example))
            compared += 1
    assert compared >= 20
