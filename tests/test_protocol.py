import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repo_agent import protocol as P


def kind(text):
    result = P.parse_action(text)
    return result.kind if isinstance(result, P.ParseError) else result.type


@pytest.mark.parametrize(
    "text,expected",
    [
        ('{"type":"tool_call","name":"read_file","args":{"rel_path":"x.py","max_chars":4000}}', "tool_call"),
        ('  {"type":"final","summary":"done"}\n', "final"),
        ("", "empty"),
        ("   \n", "empty"),
        ("I will read the file now.", "invalid_json"),
        ('{"type":"tool_call",', "invalid_json"),
        ('Sure! {"type":"final","summary":"x"}', "extra_text"),
        ('```json\n{"type":"final","summary":"x"}\n```', "extra_text"),
        ("[1, 2]", "not_object"),
        ('"read_file"', "not_object"),
        ('{"name":"read_file","args":{}}', "unknown_type"),
        ('{"type":"call","name":"read_file","args":{}}', "unknown_type"),
        ('{"type":"tool_call","name":"run_tests","args":{}}', "unknown_tool"),
        ('{"type":"tool_call","name":"read_file","args":{"rel_path":7}}', "bad_args"),
        ('{"type":"tool_call","name":"read_file","args":{"path":"x.py"}}', "bad_args"),
        ('{"type":"tool_call","name":"grep","args":{"pattern":"x","max_matches":0}}', "bad_args"),
        ('{"type":"tool_call","name":"read_file"}', "bad_envelope"),
        ('{"type":"tool_call","name":"read_file","args":{"rel_path":"a"},"why":"x"}', "bad_envelope"),
        ('{"type":"final"}', "bad_envelope"),
        ("[" * 100000, "invalid_json"),
    ],
)
def test_parse_error_kinds(text, expected):
    assert kind(text) == expected


def test_render_is_canonical_and_round_trips():
    action = P.ToolCall("list_files", {"rel_dir": ".", "max_files": 200})
    text = P.render_action(action)
    assert text == '{"type":"tool_call","name":"list_files","args":{"rel_dir":".","max_files":200}}'
    assert P.parse_action(text) == action


def test_feedback_names_the_kind_and_shows_the_shape():
    error = P.parse_action("hello")
    from repo_agent.toolsets import FILES

    feedback = FILES.parse_error_feedback(error, native=False)
    assert feedback.startswith("ERROR: invalid_json")
    assert '{"type":"final","summary":' in feedback
    for name in P.TOOL_NAMES:
        assert f'"name":"{name}"' in feedback


def test_native_calls():
    call = lambda name, args: [{"id": "c1", "type": "function", "function": {"name": name, "arguments": args}}]
    assert P.parse_native(call("read_file", '{"rel_path":"a.py"}')) == P.ToolCall("read_file", {"rel_path": "a.py"})
    assert P.parse_native(call("final", '{"summary":"ok"}')) == P.Final("ok")
    assert P.parse_native(None).kind == "no_tool_call"
    assert P.parse_native(call("grep", "{not json")).kind == "bad_args"
    assert P.parse_native(call("rm", "{}")).kind == "unknown_tool"
    assert P.parse_native(call("grep", '{"pattern":"a"}') * 2).kind == "multiple_tool_calls"
    from repo_agent.toolsets import FILES

    assert [t["function"]["name"] for t in FILES.openai_tools()] == [*P.TOOL_NAMES, "final"]


def _valid_or_classified(result):
    if isinstance(result, P.ParseError):
        assert result.kind in P.PARSE_ERROR_KINDS
        assert isinstance(result.detail, str)
    else:
        # a valid action must survive its own canonical rendering
        assert P.parse_action(P.render_action(result)) == result


@settings(max_examples=400, deadline=None)
@given(st.text())
def test_parser_is_total_on_arbitrary_text(text):
    _valid_or_classified(P.parse_action(text))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
envelope_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["tool_call", "final", "x"]), "name": st.sampled_from([*P.TOOL_NAMES, "nope"]),
     "args": json_values, "summary": json_values},
    optional={"extra": json_values},
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(json_values, envelope_like))
def test_parser_is_total_on_arbitrary_json(value):
    text = json.dumps(value)
    result = P.parse_action(text)
    _valid_or_classified(result)
    if not isinstance(value, dict):
        assert result.kind == "not_object"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=10), json_values, max_size=4), max_size=3))
def test_native_parser_is_total(calls):
    _valid_or_classified(P.parse_native(calls))


def test_the_system_prompt_names_no_task_of_any_suite():
    """A worked example that names a task teaches the model to write that task's file everywhere."""
    import re
    import sys
    from pathlib import Path

    from repo_agent.prompts import system_prompt
    from repo_agent.suites.task import load_suite

    repo = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(repo / "benchmarks"))
    from verdict_cost import QUIXBUGS_NAMES

    names = set(QUIXBUGS_NAMES)
    for suite_file in (repo / "eval" / "suites").glob("*_suite.json"):
        names |= {t.name for t in load_suite(suite_file).tasks}
    assert len(names) >= 50
    for protocol in ("json", "native"):
        text = system_prompt(protocol)
        leaked = sorted(n for n in names if re.search(rf"(?<![A-Za-z0-9]){re.escape(n)}(?![A-Za-z0-9])", text))
        assert leaked == [], f"{protocol} prompt names tasks: {leaked}"
