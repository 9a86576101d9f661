"""The JSON tool protocol: schemas, parsing with classified errors, canonical rendering.

Every function here is total over model output: whatever a model writes, `parse_action` returns either
a valid `ToolCall` / `Final` or a `ParseError` with a stable `kind`. It never raises.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Union

from jsonschema import Draft202012Validator

from .envelope import ENVELOPE_KEYS
from .protocol_prefix import dead_point

TOOL_RESULT_PREFIX = "[tool_result]"

TOOL_SCHEMAS: dict[str, dict[str, Any]] = {
    "list_files": {
        "description": "List files under a directory of the workspace (recursive, sorted).",
        "parameters": {
            "type": "object",
            "properties": {
                "rel_dir": {"type": "string", "description": "Directory relative to the workspace root."},
                "max_files": {"type": "integer", "minimum": 1, "maximum": 5000},
            },
            "additionalProperties": False,
        },
        "example": {"rel_dir": ".", "max_files": 200},
    },
    "read_file": {
        "description": "Read a text file of the workspace.",
        "parameters": {
            "type": "object",
            "properties": {
                "rel_path": {"type": "string", "minLength": 1},
                "max_chars": {"type": "integer", "minimum": 1, "maximum": 200000},
            },
            "required": ["rel_path"],
            "additionalProperties": False,
        },
        "example": {"rel_path": "src/report.py", "max_chars": 4000},
    },
    "grep": {
        "description": "Search files for a Python regular expression; prints path:line: text.",
        "parameters": {
            "type": "object",
            "properties": {
                "pattern": {"type": "string", "minLength": 1},
                "rel_dir": {"type": "string"},
                "max_matches": {"type": "integer", "minimum": 1, "maximum": 1000},
            },
            "required": ["pattern"],
            "additionalProperties": False,
        },
        "example": {"pattern": "def render_table", "rel_dir": ".", "max_matches": 50},
    },
    "write_file": {
        "description": "Create or overwrite a file of the workspace with the full new content.",
        "parameters": {
            "type": "object",
            "properties": {
                "rel_path": {"type": "string", "minLength": 1},
                "content": {"type": "string"},
            },
            "required": ["rel_path", "content"],
            "additionalProperties": False,
        },
        "example": {"rel_path": "src/report.py", "content": "def render_table(rows):\n    ...\n"},
    },
}
TOOL_NAMES = tuple(TOOL_SCHEMAS)

FINAL_SCHEMA: dict[str, Any] = {
    "description": "End the episode and summarise what was changed and why.",
    "parameters": {
        "type": "object",
        "properties": {"summary": {"type": "string"}},
        "required": ["summary"],
        "additionalProperties": False,
    },
}


_VALIDATORS: dict[int, tuple[dict[str, Any], dict[str, Draft202012Validator]]] = {}


def _arg_validators(schemas: dict[str, dict[str, Any]]) -> dict[str, Draft202012Validator]:
    """Argument validators of a tool set's schemas, built once per schema table (tool sets are constants)."""
    entry = _VALIDATORS.get(id(schemas))
    if entry is None or entry[0] is not schemas:
        entry = (schemas, {name: Draft202012Validator(spec["parameters"]) for name, spec in schemas.items()})
        _VALIDATORS[id(schemas)] = entry
    return entry[1]
_TOOL_CALL_ENVELOPE = Draft202012Validator(
    {
        "type": "object",
        "properties": {
            "type": {"const": "tool_call"},
            "name": {"type": "string"},
            "args": {"type": "object"},
        },
        "required": ["type", "name", "args"],
        "additionalProperties": False,
    }
)
_FINAL_ENVELOPE = Draft202012Validator(
    {
        "type": "object",
        "properties": {"type": {"const": "final"}, "summary": {"type": "string"}},
        "required": ["type", "summary"],
        "additionalProperties": False,
    }
)

# Stable parse-error kinds. Traces, metrics and pair mining depend on these names: only add, never rename.
PARSE_ERROR_KINDS = (
    "empty",  # nothing but whitespace
    "invalid_json",  # no JSON object could be read at all
    "extra_text",  # a JSON object surrounded by prose or code fences
    "not_object",  # valid JSON but not an object (list, string, number...)
    "unknown_type",  # "type" is missing or not tool_call/final
    "bad_envelope",  # missing/extra top-level keys, wrong types of name/args/summary
    "unknown_tool",  # tool_call naming a tool that does not exist
    "bad_args",  # args that violate the tool's JSON schema
    "no_tool_call",  # native protocol: the reply carried no function call
    "multiple_tool_calls",  # native protocol: more than one function call in one turn
    "stopped_early",  # generation was stopped once the reply could no longer become a valid action
)


@dataclass(frozen=True)
class ToolCall:
    name: str
    args: dict[str, Any]
    type: str = field(default="tool_call", init=False)


@dataclass(frozen=True)
class Final:
    summary: str
    type: str = field(default="final", init=False)


@dataclass(frozen=True)
class ParseError:
    kind: str
    detail: str


Action = Union[ToolCall, Final]


def render_action(action: Action) -> str:
    """Canonical compact JSON of an action: the exact bytes a well-behaved model should emit."""
    if isinstance(action, Final):
        obj: dict[str, Any] = {"type": "final", "summary": action.summary}
    else:
        obj = {"type": "tool_call", "name": action.name, "args": action.args}
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def action_to_dict(action: Action) -> dict[str, Any]:
    return json.loads(render_action(action))


def action_from_dict(obj: dict[str, Any], schemas: dict[str, dict[str, Any]] = TOOL_SCHEMAS) -> Action:
    result = parse_object(obj, schemas)
    if isinstance(result, ParseError):
        raise ValueError(f"not a valid action ({result.kind}): {result.detail}")
    return result


def _find_embedded_object(text: str) -> Any:
    """Return the first JSON value that starts at a '{' inside `text`, or None."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            value, _ = decoder.raw_decode(text, start)
            return value
        except (ValueError, RecursionError):
            start = text.find("{", start + 1)
    return None


def parse_action(text: Any, stopped_early: bool = False, schemas: dict[str, dict[str, Any]] = TOOL_SCHEMAS) -> Action | ParseError:
    """Parse one assistant reply under the JSON protocol. Total: never raises.

    `stopped_early`: the provider stopped generating because the reply had gone dead (protocol_prefix);
    such a reply is the `stopped_early` parse error, saying where and why it went wrong."""
    try:
        if stopped_early and isinstance(text, str):
            dead = dead_point(text)
            if dead is not None:
                return ParseError("stopped_early", f"generation was stopped at character {dead[0]}: {dead[1]}")
        return _parse_action(text, schemas)
    except Exception as exc:  # defensive: a parser bug must be data, not a crash
        return ParseError("invalid_json", f"unreadable reply ({type(exc).__name__})")


def _parse_action(text: Any, schemas: dict[str, dict[str, Any]]) -> Action | ParseError:
    if not isinstance(text, str):
        return ParseError("invalid_json", "the reply is not text")
    stripped = text.strip()
    if not stripped:
        return ParseError("empty", "the reply is empty")
    try:
        value = json.loads(stripped)
    except (ValueError, RecursionError):
        embedded = _find_embedded_object(stripped)
        if isinstance(embedded, dict):
            return ParseError(
                "extra_text", "the reply holds a JSON object but also other text (prose or code fences)"
            )
        return ParseError("invalid_json", "the reply is not valid JSON")
    return parse_object(value, schemas)


def parse_object(value: Any, schemas: dict[str, dict[str, Any]] = TOOL_SCHEMAS) -> Action | ParseError:
    if not isinstance(value, dict):
        return ParseError("not_object", f"expected one JSON object, got {type(value).__name__}")
    kind = value.get("type")
    if kind == "final":
        if not _FINAL_ENVELOPE.is_valid(value):
            return ParseError("bad_envelope", _first_error(_FINAL_ENVELOPE, value, 'a final needs exactly "type" and "summary"'))
        return Final(summary=value["summary"])
    if kind != "tool_call":
        return ParseError("unknown_type", f'"type" must be "tool_call" or "final", got {_short(kind)}')
    if not _TOOL_CALL_ENVELOPE.is_valid(value):
        return ParseError("bad_envelope", _first_error(_TOOL_CALL_ENVELOPE, value, 'a tool_call needs exactly "type", "name" and "args"'))
    return check_tool_call(value["name"], value["args"], schemas)


def check_tool_call(name: Any, args: Any, schemas: dict[str, dict[str, Any]] = TOOL_SCHEMAS) -> ToolCall | ParseError:
    if not isinstance(name, str) or name not in schemas:
        return ParseError("unknown_tool", f"unknown tool {_short(name)}; tools are {', '.join(schemas)}")
    if not isinstance(args, dict):
        return ParseError("bad_args", f'"args" of {name} must be an object')
    validator = _arg_validators(schemas)[name]
    if not validator.is_valid(args):
        return ParseError("bad_args", _first_error(validator, args, f"invalid args for {name}"))
    return ToolCall(name=name, args=args)


def _first_error(validator: Draft202012Validator, value: Any, fallback: str) -> str:
    try:
        error = next(iter(sorted(validator.iter_errors(value), key=lambda e: list(e.path))))
    except StopIteration:
        return fallback
    where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
    return f"{fallback}: at {where}: {_short(error.message, 200)}"


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_native(tool_calls: list[dict[str, Any]] | None, schemas: dict[str, dict[str, Any]] = TOOL_SCHEMAS) -> Action | ParseError:
    """Parse an OpenAI-style `tool_calls` list (native protocol). Total: never raises."""
    try:
        if not tool_calls:
            return ParseError("no_tool_call", "the reply carried no function call")
        if len(tool_calls) > 1:
            return ParseError("multiple_tool_calls", f"{len(tool_calls)} function calls in one turn; make exactly one")
        function = tool_calls[0].get("function") or {}
        name = function.get("name")
        raw_args = function.get("arguments") or "{}"
        try:
            args = json.loads(raw_args) if isinstance(raw_args, str) else raw_args
        except (ValueError, RecursionError):
            return ParseError("bad_args", f"arguments of {_short(name)} are not valid JSON")
        if name == "final" and "final" not in schemas:
            if not isinstance(args, dict) or not isinstance(args.get("summary"), str):
                return ParseError("bad_args", 'final needs {"summary": "..."}')
            return Final(summary=args["summary"])
        return check_tool_call(name, args, schemas)
    except Exception as exc:
        return ParseError("invalid_json", f"unreadable function call ({type(exc).__name__})")


def action_json_schema(tool_schemas: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """JSON Schema of one reply under the JSON protocol with the given tools: a tool_call of each tool
    (its name as a constant, its argument schema) or a final. Keys are listed in canonical order, so a
    grammar built from it (constrained decoding) produces the canonical rendering."""
    variants: list[dict[str, Any]] = [
        {"type": "object",
         "properties": {"type": {"const": "tool_call"}, "name": {"const": name}, "args": spec["parameters"]},
         "required": list(ENVELOPE_KEYS["tool_call"]), "additionalProperties": False}
        for name, spec in tool_schemas.items()
    ]
    variants.append({"type": "object",
                     "properties": {"type": {"const": "final"}, **FINAL_SCHEMA["parameters"]["properties"]},
                     "required": list(ENVELOPE_KEYS["final"]), "additionalProperties": False})
    return {"title": "repo-agent action", "anyOf": variants}


def tool_result_message(body: str) -> str:
    return f"{TOOL_RESULT_PREFIX}\n{body}"
