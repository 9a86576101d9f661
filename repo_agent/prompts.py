"""The system prompt and goal message shown to the model. Part of the wire format: changing the text
changes what fine-tuned models were trained on, so each tool set's prompt is versioned (toolsets.py)
and the version is recorded in every trace."""

from __future__ import annotations

from .toolsets import FILES, toolset_named

PROMPT_VERSION = FILES.prompt_version  # the files tool set's: 2 = examples that name no task of any suite


def system_prompt(tool_protocol: str, toolset: str = "files") -> str:
    return toolset_named(toolset).system_prompt(tool_protocol)


def goal_message(goal: str) -> str:
    return f"GOAL:\n{goal}"
