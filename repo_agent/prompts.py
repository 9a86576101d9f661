"""The system prompt and goal message shown to the model. Part of the wire format: changing the text
changes what fine-tuned models were trained on, so it is versioned and recorded in every trace."""

from __future__ import annotations

import json

from .protocol import TOOL_SCHEMAS, expected_shape_hint

PROMPT_VERSION = 2  # 2: the examples name no task of any suite (version 1 showed gcd, a held-out task)

_RULES_JSON = """Rules:
- Every reply is exactly ONE JSON object and nothing else: no prose, no code fences.
- A tool call is {"type":"tool_call","name":TOOL,"args":{...}}; when you are done reply {"type":"final","summary":"..."}.
- Every tool result comes back as a user message starting with [tool_result].
- Paths are relative to the workspace root. write_file replaces the whole file: send the complete new content.
- You cannot run tests; the driver runs them."""

_RULES_NATIVE = """Rules:
- Call exactly one function per turn. When you are done call final with a summary.
- Every tool result starts with [tool_result].
- Paths are relative to the workspace root. write_file replaces the whole file: send the complete new content.
- You cannot run tests; the driver runs them."""


def system_prompt(tool_protocol: str) -> str:
    head = "You are a repo-fixing agent. You fix a bug in a small repository by using tools."
    if tool_protocol == "native":
        return f"{head}\n\n{_RULES_NATIVE}"
    tools = "\n".join(
        f"- {name}: {spec['description']} args schema: {json.dumps(spec['parameters'], separators=(',', ':'))}"
        for name, spec in TOOL_SCHEMAS.items()
    )
    return f"{head}\n\nTools:\n{tools}\n\n{_RULES_JSON}\n\n{expected_shape_hint()}"


def goal_message(goal: str) -> str:
    return f"GOAL:\n{goal}"
