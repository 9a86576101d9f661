"""Episode rows: every trained step of a rollout in one row, each with the context its step row has.

A step row (data/sft.py) for step k is the conversation before step k plus the canonical rendering of
its action, trained on that last message only. For a causal language model the loss on assistant turn
k inside the whole conversation equals the loss of that step row, provided the chat template renders
the longer conversation's prefix exactly as it renders the step row (the prefix property: checked by
`repo-agent mask-audit` and by `sft-extract --rows episode --tokenizer`). So one row carries every
trained turn with `weight: 1` and everything else with `weight: 0` (OpenAI's and Together's chat
fine-tuning convention), at about P + T·(a+o) tokens instead of T·P + (a+o)·T²/2.

Which turns are trained is decided by the step-row rules, unchanged (data/sft.py: parse errors, refused
writes, mistakes, failed rollouts, tool errors, loops, duplicates of an earlier row, rows over
--max-tokens, the per-task cap). Where a trained turn's canonical target differs from what the model
actually wrote (an LLM teacher's whitespace or key order), the later turns' contexts hold what it wrote:
the row ends at that turn (trained on the canonical target) and the next row starts again from the
prompt, with the turn as written. Every row therefore holds the full prefix of its last trained turn;
an over-long turn is dropped exactly as its step row would be, and the turns before it still fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .rows import StepExample
from .states import format_protocol, iter_states, tools_for


@dataclass
class EpisodeRow:
    messages: list[dict[str, Any]]  # each with "weight": 1 on trained turns, 0 on every other message
    tools: list[dict[str, Any]] | None
    turns: list[StepExample]  # the trained turns, in order (their step-row provenance)

    def to_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {"messages": self.messages}
        if self.tools:
            row["tools"] = self.tools
        return row


def episode_rows(trace: dict[str, Any], trained: dict[int, StepExample], fmt: str) -> list[EpisodeRow]:
    """The fewest rows that give every trained turn (step index -> its step example) its step row's
    context: one per rollout unless a trained turn's canonical target differs from what was written."""
    if not trained:
        return []
    protocol = format_protocol(fmt)
    positions: dict[int, int] = {}  # step index -> index of its assistant message in the conversation
    written: dict[int, dict[str, Any]] = {}  # step index -> its assistant message as the conversation holds it
    contexts: dict[int, list[dict[str, Any]]] = {}
    previous: int | None = None
    for index, step, context in iter_states(trace, fmt):
        if previous is not None:
            written[previous] = context[positions[previous]]
        positions[index] = len(context)
        if index in trained:
            contexts[index] = list(context)
        previous = index
        if index >= max(trained):
            break
    groups: list[list[int]] = [[]]
    for index in sorted(trained):
        groups[-1].append(index)
        actual = written.get(index)
        if actual is not None and actual != trained[index].target and index != max(trained):
            groups.append([])  # the later turns saw what was written, not the canonical target
    tools = tools_for(trace, fmt) if protocol == "native" else None
    rows = []
    for group in (g for g in groups if g):
        last = group[-1]
        messages = [{**m, "weight": 0} for m in contexts[last]] + [{**trained[last].target, "weight": 1}]
        for index in group[:-1]:
            messages[positions[index]]["weight"] = 1
        rows.append(EpisodeRow(messages, tools, [trained[i] for i in group]))
    return rows


def turn_provenance(row: EpisodeRow) -> list[dict[str, Any]]:
    return [{"step_index": t.step_index, "tool": t.tool_name} for t in row.turns]

