"""A rollout's conversation states, rendered in the protocol of the requested format: what the model
saw before each step, and the canonical target of each valid action (shared by step rows, episode rows
and preference pairs).

When the requested format's protocol differs from the trace's (a JSON-protocol trace exported as
`native`, or the reverse), the turns are converted: the system prompt becomes that protocol's prompt,
valid actions become tool calls (or JSON content), tool results keep their text. Parse-error turns keep
their raw text.
"""

from __future__ import annotations

import json
from typing import Any

from .. import protocol as P
from ..toolsets import ToolSet, toolset_named
from .check import is_valid_action


def trace_toolset(trace: dict[str, Any]) -> ToolSet:
    return toolset_named(trace.get("toolset"))


def trace_protocol(trace: dict[str, Any]) -> str:
    return trace.get("tool_protocol") or (trace.get("agent_config") or {}).get("tool_protocol") or "json"


def format_protocol(fmt: str) -> str:
    return "native" if fmt == "native" else "json"


def _arguments(action: P.Action) -> tuple[str, str]:
    if isinstance(action, P.Final):
        return "final", json.dumps({"summary": action.summary}, ensure_ascii=False, separators=(",", ":"))
    return action.name, json.dumps(action.args, ensure_ascii=False, separators=(",", ":"))


def _call_id(step: dict[str, Any], index: int, same_protocol: bool) -> str:
    calls = step.get("raw_tool_calls") or []
    if same_protocol and calls and isinstance(calls[0], dict) and calls[0].get("id"):
        return str(calls[0]["id"])
    return f"call_{index}"


def render_target(action: P.Action, protocol: str, call_id: str) -> dict[str, Any]:
    """The canonical assistant message for a valid action in `protocol`."""
    if protocol == "native":
        name, arguments = _arguments(action)
        call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        return {"role": "assistant", "content": "", "tool_calls": [call]}
    return {"role": "assistant", "content": P.render_action(action)}


def step_action(step: dict[str, Any]) -> P.Action | None:
    """The step's parsed action, or None for a parse error (or an action a trace stored malformed)."""
    action = step.get("action")
    if step.get("parse_error") or not isinstance(action, dict) or not is_valid_action(action):
        return None
    if action["type"] == "final":
        return P.Final(summary=action["summary"])
    return P.ToolCall(name=action["name"], args=action["args"])


def step_target(step: dict[str, Any], trace: dict[str, Any], fmt: str) -> dict[str, Any] | None:
    action = step_action(step)
    if action is None:
        return None
    protocol = format_protocol(fmt)
    return render_target(action, protocol, _call_id(step, step.get("index", 0), trace_protocol(trace) == protocol))


def emitted_message(step: dict[str, Any], trace: dict[str, Any], fmt: str) -> dict[str, Any]:
    """The assistant message as the model emitted it (for the losing side of a validity pair)."""
    if trace_protocol(trace) == format_protocol(fmt):
        return dict(step["assistant_message"])
    return {"role": "assistant", "content": step.get("raw_output") or ""}


def _converted_turn(step: dict[str, Any], index: int, protocol: str) -> list[dict[str, Any]]:
    action = step_action(step)
    result_text = step["result_message"]["content"]
    if action is None:
        return [{"role": "assistant", "content": step.get("raw_output") or ""}, {"role": "user", "content": result_text}]
    target = render_target(action, protocol, f"call_{index}")
    if protocol == "native":
        return [target, {"role": "tool", "tool_call_id": f"call_{index}", "content": result_text}]
    return [target, {"role": "user", "content": result_text}]


def tools_for(trace: dict[str, Any], fmt: str) -> list[dict[str, Any]] | None:
    if format_protocol(fmt) != "native":
        return None
    return trace.get("tools") if trace_protocol(trace) == "native" and trace.get("tools") else trace_toolset(trace).openai_tools()


def iter_states(trace: dict[str, Any], fmt: str) -> Iterator[tuple[int, dict[str, Any], list[dict[str, Any]]]]:
    """Yield (k, step k, messages the model saw before step k), in the protocol of `fmt`.

    The yielded list is reused and grows after each yield: copy it (`list(...)`) to keep it.
    """
    protocol = format_protocol(fmt)
    same = trace_protocol(trace) == protocol
    messages = list(trace["prompt_messages"])
    if not same and messages and messages[0].get("role") == "system":
        from ..prompts import system_prompt

        messages[0] = {"role": "system", "content": system_prompt(protocol, trace_toolset(trace).name)}
    for index, step in enumerate(trace["steps"]):
        yield index, step, messages
        if step.get("result_message") is None:  # `final` accepted: nothing follows
            return
        if same:
            messages.append(step["assistant_message"])
            messages.append(step["result_message"])
        else:
            messages.extend(_converted_turn(step, index, protocol))
