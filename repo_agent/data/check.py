"""`data check`: validate an SFT or preference JSONL file before anything is uploaded or trained on.

Together's local checker only proves each line is a JSON object; its server enforces the real rules
later, after an upload. This module enforces them here: the shape with jsonschema, then the rules a
schema cannot say (role order, where weights may be 1, that targets are valid tool calls), and, when the
together SDK is importable, its own file check on top.

Kinds: `sft` (Together chat rows, `messages` [+ `tools`]), `sft-trl` (`prompt`/`completion`),
`pref` (Together preference rows), `pref-trl` (`prompt`/`chosen`/`rejected`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from .. import protocol as P
from ..toolsets import ALL_TOOL_SCHEMAS

KINDS = ("sft", "sft-trl", "pref", "pref-trl")
MAX_ERRORS_LISTED = 50

_MESSAGE = {
    "type": "object",
    "properties": {
        "role": {"enum": ["system", "user", "assistant", "tool"]},
        "content": {"type": ["string", "null"]},
        "weight": {"enum": [0, 1]},
        "tool_call_id": {"type": "string"},
        "tool_calls": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "type": {"const": "function"},
                    "function": {
                        "type": "object",
                        "properties": {"name": {"type": "string"}, "arguments": {"type": "string"}},
                        "required": ["name", "arguments"],
                    },
                },
                "required": ["type", "function"],
            },
        },
    },
    "required": ["role", "content"],
    "additionalProperties": False,
}
_ASSISTANT = {"allOf": [_MESSAGE, {"properties": {"role": {"const": "assistant"}}}]}
_ONE_ASSISTANT = {"type": "array", "items": _ASSISTANT, "minItems": 1, "maxItems": 1}
_CONVERSATION = {"type": "array", "items": _MESSAGE, "minItems": 1}
_TOOLS = {"type": "array", "items": {"type": "object", "required": ["type", "function"]}}

SCHEMAS: dict[str, dict[str, Any]] = {
    "sft": {"type": "object", "properties": {"messages": {**_CONVERSATION, "minItems": 2}, "tools": _TOOLS},
            "required": ["messages"], "additionalProperties": False},
    "sft-trl": {"type": "object", "properties": {"prompt": _CONVERSATION, "completion": _ONE_ASSISTANT, "tools": _TOOLS},
                "required": ["prompt", "completion"], "additionalProperties": False},
    "pref": {"type": "object", "properties": {
        "input": {"type": "object", "properties": {"messages": _CONVERSATION, "tools": _TOOLS},
                  "required": ["messages"], "additionalProperties": False},
        "preferred_output": _ONE_ASSISTANT, "non_preferred_output": _ONE_ASSISTANT},
        "required": ["input", "preferred_output", "non_preferred_output"], "additionalProperties": False},
    "pref-trl": {"type": "object", "properties": {"prompt": _CONVERSATION, "chosen": _ONE_ASSISTANT,
                                                  "rejected": _ONE_ASSISTANT, "tools": _TOOLS},
                 "required": ["prompt", "chosen", "rejected"], "additionalProperties": False},
}
_VALIDATORS = {kind: Draft202012Validator(schema) for kind, schema in SCHEMAS.items()}


# One schema accepting exactly the actions that are valid under some tool set (data rows do not say
# which tool set they come from); a test checks it agrees with `protocol.parse_object` on generated inputs.
ACTION_SCHEMA = P.action_json_schema(ALL_TOOL_SCHEMAS)
_FAST: dict[str, Any] | None = None


def _fast() -> dict[str, Any]:
    """Compiled jsonschema-rs validators when that package is installed (about 100x faster than
    `jsonschema` here). They only answer valid/invalid; every error message still comes from
    `jsonschema` and `protocol`, so the verdicts and the texts do not depend on which is installed."""
    global _FAST
    if _FAST is None:
        try:
            import jsonschema_rs
        except ImportError:
            _FAST = {}
        else:
            _FAST = {kind: jsonschema_rs.validator_for(schema) for kind, schema in SCHEMAS.items()}
            _FAST["action"] = jsonschema_rs.validator_for(ACTION_SCHEMA)
    return _FAST


def _fast_valid(name: str, value: Any) -> bool | None:
    """True/False from the fast validator, or None when it is missing or cannot take the value."""
    validator = _fast().get(name)
    if validator is None:
        return None
    try:
        return bool(validator.is_valid(value))
    except Exception:  # values the Rust side cannot convert (NaN, huge ints): let jsonschema decide
        return None


def is_valid_action(value: Any) -> bool:
    """Whether `value` (a parsed JSON value) is one valid action; same answer as `protocol.parse_object`."""
    fast = _fast_valid("action", value)
    if fast is not None:
        return fast
    return not isinstance(P.parse_object(value, ALL_TOOL_SCHEMAS), P.ParseError)


@dataclass
class CheckReport:
    ok: bool
    kind: str
    count: int
    errors: list[str] = field(default_factory=list)  # the first MAX_ERRORS_LISTED, "line N: ..."
    error_count: int = 0
    sdk: dict[str, Any] | None = None  # the together SDK's own verdict, when it ran

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "kind": self.kind, "count": self.count, "error_count": self.error_count,
                "errors": self.errors, "sdk": self.sdk}


def detect_kind(row: Any) -> str | None:
    if not isinstance(row, dict):
        return None
    if "messages" in row:
        return "sft"
    if "input" in row or "preferred_output" in row:
        return "pref"
    if "chosen" in row or "rejected" in row:
        return "pref-trl"
    if "completion" in row:
        return "sft-trl"
    return None


# ---------------------------------------------------------------------------------------------------
# Rules a schema cannot express


def _role_errors(messages: list[dict[str, Any]]) -> list[str]:
    """Start with system or user; then user, assistant, user|tool, assistant, ...; end on assistant."""
    errors: list[str] = []
    roles = [m.get("role") for m in messages]
    start = 1 if roles and roles[0] == "system" else 0
    if start >= len(roles) or roles[start] != "user":
        return ["the conversation must start with system or user, then user"]
    for i in range(start + 1, len(roles)):
        previous, role = roles[i - 1], roles[i]
        if role == "system":
            errors.append(f"message {i}: system is only allowed first")
        elif role == "assistant" and previous not in ("user", "tool"):
            errors.append(f"message {i}: assistant must follow user or tool, not {previous}")
        elif role in ("user", "tool") and previous != "assistant":
            errors.append(f"message {i}: {role} must follow assistant, not {previous} (roles must alternate)")
        if role == "tool":
            calls = messages[i - 1].get("tool_calls") or []
            ids = {c.get("id") for c in calls}
            if not calls:
                errors.append(f"message {i}: tool result without a tool call before it")
            elif messages[i].get("tool_call_id") not in ids:
                errors.append(f"message {i}: tool_call_id {messages[i].get('tool_call_id')!r} matches no call before it")
    if roles[-1] != "assistant":
        errors.append("the last message must be the assistant's")
    return errors


def _quick_action_ok(message: dict[str, Any]) -> bool:
    """A fast yes for the common case; False means "ask the protocol parser", not "invalid"."""
    try:
        calls = message.get("tool_calls")
        if calls:
            if len(calls) != 1:
                return False
            function = calls[0]["function"]
            args = json.loads(function["arguments"]) if isinstance(function["arguments"], str) else function["arguments"]
            if function["name"] == "final":
                return isinstance(args, dict) and isinstance(args.get("summary"), str)
            return _fast_valid("action", {"type": "tool_call", "name": function["name"], "args": args}) is True
        content = message.get("content")
        return isinstance(content, str) and _fast_valid("action", json.loads(content)) is True
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return False


def action_error(message: dict[str, Any]) -> str | None:
    """None if the assistant message is one valid action of our protocol (JSON content or one tool call)."""
    if _quick_action_ok(message):
        return None
    if message.get("tool_calls"):
        result = P.parse_native(message["tool_calls"])
    else:
        result = P.parse_action(message.get("content"))
    if isinstance(result, P.ParseError):
        return f"{result.kind}: {result.detail}"
    return None


def _weight_errors(messages: list[dict[str, Any]]) -> list[str]:
    weighted = [m for m in messages if "weight" in m]
    if not weighted:
        return []
    errors: list[str] = []
    if len(weighted) != len(messages):
        # Together turns train_on_inputs on when any weight is given; unweighted messages then count as 1
        errors.append("some messages carry a weight and others not: give every message a weight (0 or 1)")
    for i, m in enumerate(messages):
        if m.get("weight") == 1 and m.get("role") != "assistant":
            errors.append(f"message {i}: weight 1 on a {m.get('role')} message would train on the input")
    if not any(m.get("weight") == 1 for m in messages):
        errors.append("no message has weight 1: nothing to train on")
    return errors


def _trained_messages(messages: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    if any("weight" in m for m in messages):
        return [(i, m) for i, m in enumerate(messages) if m.get("weight") == 1]
    return [(len(messages) - 1, messages[-1])]


def _tools_errors(messages: list[dict[str, Any]], tools: Any) -> list[str]:
    if any(m.get("tool_calls") for m in messages) and not tools:
        return ["tool_calls are used but the row has no `tools` field"]
    return []


def record_errors(row: Any, kind: str) -> list[str]:
    """All problems of one parsed row for `kind` (empty list = valid)."""
    if _fast_valid(kind, row) is not True:
        schema_errors = [f"{'/'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message[:200]}"
                         for e in _VALIDATORS[kind].iter_errors(row)]
        if schema_errors:
            return schema_errors[:5]
    errors: list[str] = []
    if kind == "sft":
        messages = row["messages"]
        errors += _weight_errors(messages)
        trained = _trained_messages(messages)
        tools = row.get("tools")
    elif kind == "sft-trl":
        messages = row["prompt"] + row["completion"]
        trained = [(len(messages) - 1, messages[-1])]
        tools = row.get("tools")
    else:
        prompt = row["input"]["messages"] if kind == "pref" else row["prompt"]
        chosen, rejected = (row["preferred_output"], row["non_preferred_output"]) if kind == "pref" else (row["chosen"], row["rejected"])
        messages = prompt + chosen
        tools = row["input"].get("tools") if kind == "pref" else row.get("tools")
        trained = [(len(messages) - 1, chosen[0])]
        if chosen[0] == rejected[0]:
            errors.append("the preferred and non-preferred outputs are identical")
        if any("weight" in m for m in prompt + chosen + rejected):
            errors.append("weights belong to SFT rows, not to preference rows")
    if kind == "sft-trl" and any("weight" in m for m in messages):
        errors.append("weights belong to Together chat rows, not to TRL rows")
    errors += _role_errors(messages)
    errors += _tools_errors(messages, tools)
    for index, message in trained:
        problem = action_error(message)
        if problem:
            errors.append(f"message {index}: the trained assistant message is not a valid tool call ({problem})")
    return errors


def sdk_check(path: Path) -> dict[str, Any] | None:
    """The together SDK's own checker, when installed (it only checks JSON-object lines and size)."""
    try:
        from together.lib.utils.files import check_file as together_check
    except ImportError:
        try:
            from together.utils import check_file as together_check  # older SDKs
        except ImportError:
            return None
    if Path(path).suffix != ".jsonl":
        return {"is_check_passed": True, "message": "skipped: the together SDK only checks .jsonl files"}
    report = together_check(Path(path))
    return {"is_check_passed": bool(report.get("is_check_passed")), "message": report.get("message"),
            "num_samples": report.get("num_samples")}


def check_file(path: str | Path, kind: str = "auto", *, use_sdk: bool = True) -> CheckReport:
    """Validate every line of `path` as `kind` ("auto" = from the first row). Never raises for bad data."""
    path = Path(path)
    errors: list[str] = []
    error_count = 0
    count = 0

    def note_problem(message: str) -> None:
        nonlocal error_count
        error_count += 1
        if len(errors) < MAX_ERRORS_LISTED:
            errors.append(message)

    if kind != "auto" and kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose auto or one of {', '.join(KINDS)}")
    try:
        handle = open(path, encoding="utf-8")
    except OSError as exc:
        return CheckReport(ok=False, kind=kind, count=0, errors=[f"cannot read {path}: {exc}"], error_count=1)
    with handle:
        try:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                count += 1
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    note_problem(f"line {number}: not valid JSON ({exc})")
                    continue
                if kind == "auto":
                    kind = detect_kind(row) or "auto"
                    if kind == "auto":
                        note_problem(f"line {number}: cannot tell the kind of file from keys {sorted(row)[:6] if isinstance(row, dict) else type(row).__name__}")
                        break
                for problem in record_errors(row, kind):
                    note_problem(f"line {number}: {problem}")
        except UnicodeDecodeError as exc:
            note_problem(f"the file is not UTF-8 ({exc})")
    if count == 0:
        note_problem("the file holds no examples")
    sdk = sdk_check(path) if use_sdk and count else None
    ok = error_count == 0 and (sdk is None or sdk["is_check_passed"])
    return CheckReport(ok=ok, kind=kind, count=count, errors=errors, error_count=error_count, sdk=sdk)
