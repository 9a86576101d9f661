"""A model that replays given replies, in order. For tests and demos: no network, no weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..protocol_prefix import dead_point
from .base import ModelReply


class ScriptedModel:
    """Replays `replies` (strings, or dicts with "content" and optional "tool_calls").

    The messages it was sent are kept in `seen`, so tests can compare them with a trace.
    With `early_stop`, a JSON-protocol reply is "generated" character by character and cut where it
    goes dead (protocol_prefix.ReplyStop), as a local model or a streamed server reply would be; it is
    never cut at the end of its first object, so a script says exactly what the model wrote.
    """

    def __init__(self, replies: list[Any], early_stop: bool = False):
        self.replies = list(replies)
        self.early_stop = early_stop
        self.seen: list[list[dict[str, Any]]] = []

    @classmethod
    def from_file(cls, path: str | Path, early_stop: bool = False) -> "ScriptedModel":
        """A JSON list, or JSON Lines with one reply per line."""
        text = Path(path).read_text(encoding="utf-8")
        try:
            data = json.loads(text)
            replies = data if isinstance(data, list) else [data]
        except ValueError:
            replies = [json.loads(line) for line in text.splitlines() if line.strip()]
        return cls(replies, early_stop=early_stop)

    @classmethod
    def from_name(cls, name: str, early_stop: bool = False) -> "ScriptedModel":
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"scripted provider: --model (or --script) must name a file of replies, got {name!r}")
        return cls.from_file(path, early_stop=early_stop)

    def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> ModelReply:
        self.seen.append([dict(m) for m in messages])
        index = len(self.seen) - 1
        if index >= len(self.replies):
            return ModelReply(content="", error=f"scripted replies exhausted after {len(self.replies)}")
        reply = self.replies[index]
        if isinstance(reply, dict):
            content, tool_calls = reply.get("content") or "", reply.get("tool_calls")
        else:
            content, tool_calls = str(reply), None
        if self.early_stop and not tools:
            dead = dead_point(content)
            if dead is not None:
                return ModelReply(content=content[: dead[0] + 1], tool_calls=tool_calls, finish_reason="early_stop",
                                  stopped_early=True)
        return ModelReply(content=content, tool_calls=tool_calls)
