"""Rollout pairs that share their exploration and diverge at the first write (TeacherOptions.branch_pairs).

The leader of a pair (rollout 2i) is an ordinary rollout. The follower (rollout 2i+1) asks a model
seeded like the leader's (`shared`) for as long as that model does not write a file: given the same
conversation it gives the same replies (the oracle always; an LLM server when its sampling honours the
seed), so both rollouts stay in the same conversation state. At the step where `shared` would write,
the follower asks its own model (`own`, seeded with its own seed) instead, and keeps doing so. The two
writes then leave one state, both are executed and recorded, and the pair miner finds them with their
outcomes (tests after the write, refusal, validity). If the prefix does diverge earlier (a server that
ignores the seed), the follower is just another rollout.
"""

from __future__ import annotations

from typing import Any

from .. import protocol as P
from .base import Model, ModelReply


WRITING_TOOLS = ("write_file", "replace_in_file")  # a bash command's writes show only after it ran: no fork there


def writes_a_file(reply: ModelReply, native: bool, schemas: dict[str, Any] = P.TOOL_SCHEMAS) -> bool:
    action = P.parse_native(reply.tool_calls, schemas) if native else P.parse_action(reply.content, schemas=schemas)
    return isinstance(action, P.ToolCall) and action.name in WRITING_TOOLS


class BranchingModel:
    def __init__(self, shared: Model, own: Model, schemas: dict[str, Any] = P.TOOL_SCHEMAS):
        self.shared, self.own, self.schemas = shared, own, schemas
        self.forked = False

    def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> ModelReply:
        if not self.forked:
            reply = self.shared.complete(messages, tools)
            if reply.error or not writes_a_file(reply, bool(tools), self.schemas):
                return reply
            self.forked = True
        return self.own.complete(messages, tools)
