"""`data check` and `check_file`: each rule rejects what it should, and our own outputs pass."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from repo_agent.data import CheckReport, check_file
from test_data_helpers import call, final

SYSTEM = {"role": "system", "content": "You are a repo-fixing agent."}
GOAL = {"role": "user", "content": "GOAL:\nFix gcd."}
GREP = call("grep", pattern="def gcd")
RESULT = {"role": "user", "content": "[tool_result]\npython_programs/gcd.py:1: def gcd(a, b):"}


def w(message: dict, weight: int) -> dict:
    return {**message, "weight": weight}


def assistant(content: str) -> dict:
    return {"role": "assistant", "content": content}


def good_sft() -> dict:
    return copy.deepcopy({"messages": [w(SYSTEM, 0), w(GOAL, 0), w(assistant(GREP), 0), w(RESULT, 0), w(assistant(final()), 1)]})


def good_pref() -> dict:
    return copy.deepcopy({"input": {"messages": [SYSTEM, GOAL]}, "preferred_output": [assistant(GREP)],
                          "non_preferred_output": [assistant("I will grep.")]})


def write_rows(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def errors_of(tmp_path: Path, row, kind: str = "auto") -> list[str]:
    report = check_file(write_rows(tmp_path / "f.jsonl", [row]), kind)
    assert isinstance(report, CheckReport) and report.count == 1
    assert report.ok == (report.error_count == 0)
    return report.errors


def test_good_rows_pass(tmp_path):
    assert errors_of(tmp_path, good_sft()) == []
    assert errors_of(tmp_path, good_pref()) == []
    trl = {"prompt": [SYSTEM, GOAL], "completion": [assistant(GREP)]}
    assert errors_of(tmp_path, trl) == []
    report = check_file(write_rows(tmp_path / "two.jsonl", [good_sft(), good_sft()]))
    assert report.ok and report.kind == "sft" and report.count == 2
    assert report.sdk is not None and report.sdk["is_check_passed"]  # the together SDK's checker ran too


@pytest.mark.parametrize("mutate,expected", [
    (lambda r: r["messages"].pop(1), "must start with system or user"),
    (lambda r: r["messages"].insert(2, w(GOAL, 0)), "roles must alternate"),
    (lambda r: r["messages"].append(w(RESULT, 0)), "last message must be the assistant"),
    (lambda r: r["messages"][1].update(weight=1), "would train on the input"),
    (lambda r: r["messages"][1].pop("weight"), "give every message a weight"),
    (lambda r: r["messages"][-1].update(weight=0), "nothing to train on"),
    (lambda r: r["messages"][-1].update(weight=2), "weight"),
    (lambda r: r["messages"][-1].update(content="Sure! " + GREP), "not a valid tool call (extra_text"),
    (lambda r: r["messages"][-1].update(content=call("run_tests")), "not a valid tool call (unknown_tool"),
    (lambda r: r["messages"].insert(3, w({"role": "system", "content": "x"}, 0)), "system is only allowed first"),
    (lambda r: r["messages"][0].update(role="narrator"), "narrator"),
    (lambda r: r.update(text="also a text row"), "Additional properties"),
])
def test_sft_rules(tmp_path, mutate, expected):
    row = good_sft()
    mutate(row)
    errors = errors_of(tmp_path, row)
    assert any(expected in e for e in errors), errors


def test_an_earlier_unparseable_turn_is_allowed_when_not_trained(tmp_path):
    row = good_sft()
    row["messages"][2]["content"] = "I think the bug is in gcd."
    assert errors_of(tmp_path, row) == []


@pytest.mark.parametrize("mutate,expected", [
    (lambda r: r["preferred_output"].append(assistant(final())), "is too long"),
    (lambda r: r.update(non_preferred_output=r["preferred_output"]), "identical"),
    (lambda r: r["preferred_output"][0].update(content="prose"), "not a valid tool call"),
    (lambda r: r["preferred_output"][0].update(role="user"), "assistant"),
    (lambda r: r["input"]["messages"].append(assistant(GREP)), "assistant must follow user"),
    (lambda r: r["input"]["messages"][1].update(weight=0), "weights belong to SFT rows"),
])
def test_preference_rules(tmp_path, mutate, expected):
    row = good_pref()
    mutate(row)
    errors = errors_of(tmp_path, row)
    assert any(expected in e for e in errors), errors


def test_native_rules(tmp_path):
    tool_call = {"id": "call_0", "type": "function", "function": {"name": "grep", "arguments": '{"pattern":"def gcd"}'}}
    target = {"role": "assistant", "content": "", "tool_calls": [{**tool_call, "id": "call_1", "function": {"name": "final", "arguments": '{"summary":"ok"}'}}]}
    messages = [SYSTEM, GOAL, {"role": "assistant", "content": "", "tool_calls": [tool_call]},
                {"role": "tool", "tool_call_id": "call_0", "content": "[tool_result]\nx"}, target]
    tools = [{"type": "function", "function": {"name": "grep"}}]
    row = {"messages": [w(m, 1 if i == 4 else 0) for i, m in enumerate(messages)], "tools": tools}
    assert errors_of(tmp_path, row) == []
    no_tools = {"messages": row["messages"]}
    assert any("no `tools` field" in e for e in errors_of(tmp_path, no_tools))
    wrong_id = json.loads(json.dumps(row))
    wrong_id["messages"][3]["tool_call_id"] = "call_9"
    assert any("matches no call" in e for e in errors_of(tmp_path, wrong_id))
    bad_args = json.loads(json.dumps(row))
    bad_args["messages"][4]["tool_calls"][0]["function"] = {"name": "read_file", "arguments": "{}"}
    assert any("bad_args" in e for e in errors_of(tmp_path, bad_args))


def test_file_level_problems(tmp_path, cli):
    broken = write_rows(tmp_path / "broken.jsonl", [good_sft(), "{not json", good_sft()])
    report = check_file(broken)
    assert not report.ok and report.count == 3 and report.error_count == 1 and "line 2" in report.errors[0]
    empty = write_rows(tmp_path / "empty.jsonl", [])
    assert not check_file(empty).ok and "no examples" in check_file(empty).errors[0]
    unknown = write_rows(tmp_path / "unknown.jsonl", [{"text": "hello"}])
    assert "cannot tell the kind" in check_file(unknown).errors[0]
    assert not check_file(write_rows(tmp_path / "k.jsonl", [good_pref()]), "sft").ok  # forced kind is honoured
    result = cli("data", "check", broken)
    assert result.exit_code == 1 and "FAILED" in result.output and "line 2" in result.output
    result = cli("data", "check", write_rows(tmp_path / "ok.jsonl", [good_sft()]), "--json")
    assert result.exit_code == 0 and json.loads(result.output)["ok"] is True


@pytest.fixture
def without_fast_validator(monkeypatch):
    """Force the pure-`jsonschema` path (what users without jsonschema-rs get)."""
    import repo_agent.data.check as check

    monkeypatch.setattr(check, "_FAST", {})


@pytest.mark.parametrize("mutate,expected", [
    (lambda r: r["messages"].insert(2, w(GOAL, 0)), "roles must alternate"),
    (lambda r: r["messages"][-1].update(weight=2), "weight"),
    (lambda r: r["messages"][-1].update(content="Sure! " + GREP), "not a valid tool call (extra_text"),
    (lambda r: r["messages"][-1].update(content=call("read_file", rel_path="")), "bad_args"),
    (lambda r: r["messages"][0].update(role="narrator"), "narrator"),
])
def test_same_verdicts_without_the_fast_validator(tmp_path, without_fast_validator, mutate, expected):
    assert errors_of(tmp_path, good_sft()) == [] and errors_of(tmp_path, good_pref()) == []
    row = good_sft()
    mutate(row)
    assert any(expected in e for e in errors_of(tmp_path, row))


from hypothesis import given, settings, strategies as st  # noqa: E402

from repo_agent import protocol as P  # noqa: E402
from repo_agent.data.check import is_valid_action  # noqa: E402

_values = st.one_of(st.none(), st.booleans(), st.integers(-3, 300_000), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=5), st.lists(st.integers(), max_size=2))
_arg_keys = st.sampled_from(["rel_dir", "max_files", "rel_path", "max_chars", "pattern", "max_matches", "content", "x"])
_actions = st.fixed_dictionaries(
    {"type": st.sampled_from(["tool_call", "final", "other"])},
    optional={"name": st.sampled_from([*P.TOOL_NAMES, "final", "run_tests"]),
              "args": st.one_of(st.dictionaries(_arg_keys, _values, max_size=3), _values),
              "summary": _values, "extra": _values},
)


@settings(max_examples=400, deadline=None)
@given(_actions)
def test_fast_action_check_agrees_with_the_protocol_parser(value):
    from repo_agent.toolsets import ALL_TOOL_SCHEMAS

    assert is_valid_action(value) == (not isinstance(P.parse_object(value, ALL_TOOL_SCHEMAS), P.ParseError))
