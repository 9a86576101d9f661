"""The two row types extraction produces, shared by the extractors (sft.py, episodes.py, pairs.py) and
the exporters that turn them into Together's or TRL's shapes (export.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StepExample:
    """One training example: `messages[target_index]` is the action to learn, everything before is context."""

    messages: list[dict[str, Any]]
    target_index: int
    tools: list[dict[str, Any]] | None
    task_id: str
    rollout_id: str
    step_index: int
    trace_path: str
    tool_name: str  # the target's tool, or "final"
    decoding: dict[str, Any] | None = None  # the trace's decoding label (early stop, constraint), if recorded

    @property
    def prompt(self) -> list[dict[str, Any]]:
        return self.messages[: self.target_index]

    @property
    def target(self) -> dict[str, Any]:
        return self.messages[self.target_index]


@dataclass(frozen=True)
class PreferencePair:
    prompt: list[dict[str, Any]]
    chosen: dict[str, Any]
    rejected: dict[str, Any]
    tools: list[dict[str, Any]] | None
    meta: dict[str, Any]  # provenance and why `chosen` won; goes to the sidecar, never into the data row
