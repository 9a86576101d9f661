"""A model that replays given replies, in order. For tests and demos: no network, no weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .base import ModelReply


class ScriptedModel:
    """Replays `replies` (strings, or dicts with "content" and optional "tool_calls").

    The messages it was sent are kept in `seen`, so tests can compare them with a trace.
    """

    def __init__(self, replies: list[Any]):
        self.replies = list(replies)
        self.seen: list[list[dict[str, Any]]] = []

    @classmethod
    def from_file(cls, path: str | Path) -> "ScriptedModel":
        """A JSON list, or JSON Lines with one reply per line."""
        text = Path(path).read_text(encoding="utf-8")
        try:
            data = json.loads(text)
            replies = data if isinstance(data, list) else [data]
        except ValueError:
            replies = [json.loads(line) for line in text.splitlines() if line.strip()]
        return cls(replies)

    @classmethod
    def from_name(cls, name: str, suite: Any, task: Any) -> "ScriptedModel":
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"scripted provider: --model (or --script) must name a file of replies, got {name!r}")
        return cls.from_file(path)

    def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> ModelReply:
        self.seen.append([dict(m) for m in messages])
        index = len(self.seen) - 1
        if index >= len(self.replies):
            return ModelReply(content="", error=f"scripted replies exhausted after {len(self.replies)}")
        reply = self.replies[index]
        if isinstance(reply, dict):
            return ModelReply(content=reply.get("content") or "", tool_calls=reply.get("tool_calls"))
        return ModelReply(content=str(reply))
