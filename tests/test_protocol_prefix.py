"""The early-stop rule (repo_agent/protocol_prefix.py) against the parser it must agree with.

Soundness is the property that matters: a prefix the rule calls dead must be a parse error whatever
follows, or early stop would change which steps are parse errors. It is checked against
`parse_action` itself on valid actions rendered every way JSON allows, on mutations of them, and on
arbitrary text. Completeness is only checked on the replies the rule is for (prose, fences, bad keys).
"""

from __future__ import annotations

import json

import jsonschema
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from repo_agent import protocol as P
from repo_agent.protocol_prefix import STOP_COMPLETE, STOP_DEAD, ActionPrefix, ReplyStop, dead_point

SAFE_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


def _args(name: str) -> st.SearchStrategy:
    schema = P.TOOL_SCHEMAS[name]["parameters"]
    fields = {}
    for key, spec in schema["properties"].items():
        if spec["type"] == "integer":
            fields[key] = st.integers(spec.get("minimum", 0), spec.get("maximum", 10**6))
        else:
            fields[key] = SAFE_TEXT.filter(lambda t, least=spec.get("minLength", 0): len(t) >= least)
    required = {k: v for k, v in fields.items() if k in schema.get("required", [])}
    optional = {k: v for k, v in fields.items() if k not in required}
    return st.fixed_dictionaries(required, optional=optional)


actions = st.one_of(
    *[_args(name).map(lambda args, n=name: P.ToolCall(name=n, args=args)) for name in P.TOOL_NAMES],
    SAFE_TEXT.map(lambda s: P.Final(summary=s)),
)


@st.composite
def renderings(draw) -> str:
    """A valid action written any way json.loads accepts: key order, spacing, indentation, escapes,
    Unicode whitespace around it, and repeated keys whose last value wins."""
    action = draw(actions)
    obj = P.action_to_dict(action)
    keys = draw(st.permutations(list(obj)))
    text = json.dumps({k: obj[k] for k in keys}, ensure_ascii=draw(st.booleans()),
                      indent=draw(st.sampled_from([None, 0, 2, "\t"])),
                      separators=draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,\r\n", " :\t")])))
    if draw(st.booleans()):  # a repeated "type" whose bad first value is overwritten
        text = '{"type": [1, {"x": -0.5e+3}, null, true, NaN, -Infinity],' + text[1:]
    around = st.sampled_from(["", " ", "\n", "\t\r", "\u3000", "\x1c", "\u2003\n"])
    return draw(around) + text + draw(around)


@settings(max_examples=400, deadline=None)
@given(renderings())
def test_no_prefix_of_a_valid_action_is_ever_dead(text):
    assert not isinstance(P.parse_action(text), P.ParseError)
    prefix = ActionPrefix()
    for index, char in enumerate(text):
        assert prefix.feed(char), f"killed at {index}: {prefix.reason}: {text[: index + 1]!r}"
    assert prefix.complete


@settings(max_examples=400, deadline=None)
@given(renderings(), st.integers(min_value=0), st.text(min_size=1, max_size=3), st.lists(renderings(), max_size=3))
def test_a_dead_prefix_is_a_parse_error_whatever_follows(valid, position, inserted, tails):
    """Mutate a valid action; if the rule calls the result dead at k, no continuation of text[:k+1]
    parses: not the rest of the mutated text, not the rest of the original, not other actions."""
    cut = position % (len(valid) + 1)
    text = valid[:cut] + inserted + valid[cut:]
    dead = dead_point(text)
    assume(dead is not None)
    head = text[: dead[0] + 1]
    for suffix in [text[dead[0] + 1:], valid[cut:], "", "}", '"}', '"}}', *tails, *(t[1:] for t in tails)]:
        assert isinstance(P.parse_action(head + suffix), P.ParseError), head + suffix


JSONISH = st.lists(st.sampled_from(['{', '}', '[', ']', '"', ':', ',', ' ', '\n', '\\', 't', 'u', 'f', 'n', 'a', 'l',
                                     's', 'e', 'r', 'y', 'p', '_', '0', '1', '9', '.', '-', '+', 'E', 'I', 'N',
                                     '"type"', '"tool_call"', '"final"', '"summary"', '"args"', '"name"', '"grep"']),
                    max_size=40).map("".join)


@settings(max_examples=600, deadline=None)
@given(JSONISH)
def test_whatever_parses_was_never_dead(text):
    if not isinstance(P.parse_action(text), P.ParseError):
        assert dead_point(text) is None


@pytest.mark.parametrize("text,dies_at", [
    ("The code is: ```python\ndef gcd(a, b):", 0),  # the base model's usual reply: dead at once
    ("```json\n{\"type\":\"final\"", 0),
    ("  \n Sure!", 4),
    ('[{"type":"final","summary":"x"}]', 0),
    ('{"type":"tool_call","nme":"grep"', 22),  # no action has a key starting "nm"
    ('{"type":"tool_call","name":"grep","summary":"x"}', 42),  # keys of both envelopes
    ('{"type":"final","summary":"x"} Hope this helps!', 31),  # one object, then prose
    ('{"type":"final","summary":"x"}{"type":"final"', 30),
    ('{"type":"final","summary":"line\nbreak"}', 31),  # a raw newline inside a string
    ('{"type":"final","summary":"x",}', 30),  # a trailing comma
    ("{'type': 'final'}", 1),  # Python dict syntax
    ('{"type":"final","summary":"\\q"}', 28),
    ('{"type":01}', 9),
    ('{"type":tru}', 11),
])
def test_replies_that_cannot_parse_die_where_they_go_wrong(text, dies_at):
    assert dead_point(text)[0] == dies_at
    assert isinstance(P.parse_action(text), P.ParseError)


def test_values_are_not_judged_because_a_repeated_key_can_overwrite_them():
    # a bad "type" value is not fatal: json.loads keeps the last of repeated keys
    prefix = '{"type":"call","args":7,'
    assert dead_point(prefix) is None
    action = P.parse_action(prefix + '"type":"tool_call","name":"grep","args":{"pattern":"x"}}')
    assert action == P.ToolCall("grep", {"pattern": "x"})


def test_stopped_early_replies_are_their_own_parse_error_kind_and_valid_ones_stay_valid():
    assert "stopped_early" in P.PARSE_ERROR_KINDS
    error = P.parse_action("The code", stopped_early=True)
    assert error.kind == "stopped_early" and "character 0" in error.detail
    assert P.parse_action("The code").kind == "invalid_json"  # without the flag: today's kinds
    # the flag cannot turn a valid reply into an error (a provider that claims a stop it did not need)
    assert P.parse_action('{"type":"final","summary":"x"}', stopped_early=True) == P.Final("x")


def test_reply_stop_one_action_per_reply_and_early_stop():
    free, early = ReplyStop(early_stop=False), ReplyStop(early_stop=True)
    for piece in ["Sure", "! ", '{"type":"final",', '"summary":"x"}', " more"]:
        free.feed(piece)
        early.feed(piece)
    assert free.reason == STOP_COMPLETE  # prose then an object: stops at the object's end, a parse error anyway
    assert early.reason == STOP_DEAD and early.prefix.dead_at == 0
    both = ReplyStop(early_stop=True)
    assert both.feed('{"type":"final","summary":"x"') is None
    assert both.feed("}.") == STOP_DEAD  # a piece that closes the object and adds prose: dead wins
    clean = ReplyStop(early_stop=True)
    assert clean.feed('{"type":"final","summary":"x"}') == STOP_COMPLETE


# -- the action-union schema behind constrained decoding --------------------------------------------------

json_values = st.recursive(st.none() | st.booleans() | st.integers(-5, 300000) | st.text(max_size=6),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                           max_leaves=8)
envelopes = st.fixed_dictionaries(
    {"type": st.sampled_from(["tool_call", "final", "other"])},
    optional={"name": st.sampled_from([*P.TOOL_NAMES, "nope"]), "summary": json_values, "extra": json_values,
              "args": st.one_of(json_values, st.fixed_dictionaries({}, optional={
                  "rel_path": st.one_of(st.text(max_size=4), st.integers()), "rel_dir": st.text(max_size=3),
                  "max_files": st.integers(-2, 6000), "max_chars": st.integers(-2, 300000), "pattern": st.text(max_size=3),
                  "max_matches": st.integers(-2, 1200), "content": st.text(max_size=3), "other": st.none()}))})


@settings(max_examples=500, deadline=None)
@given(st.one_of(envelopes, json_values, actions.map(P.action_to_dict)))
def test_the_action_schema_accepts_exactly_what_the_parser_accepts(value):
    schema = P.action_json_schema(P.TOOL_SCHEMAS)
    assert jsonschema.Draft202012Validator(schema).is_valid(value) == (not isinstance(P.parse_object(value), P.ParseError))


def test_the_action_schema_follows_the_tool_set_it_is_given():
    only_grep = P.action_json_schema({"grep": P.TOOL_SCHEMAS["grep"]})
    names = [v["properties"]["name"]["const"] for v in only_grep["anyOf"] if "name" in v["properties"]]
    assert names == ["grep"]
    validator = jsonschema.Draft202012Validator(only_grep)
    assert validator.is_valid({"type": "tool_call", "name": "grep", "args": {"pattern": "x"}})
    assert not validator.is_valid({"type": "tool_call", "name": "read_file", "args": {"rel_path": "x"}})
    assert validator.is_valid({"type": "final", "summary": "x"})
