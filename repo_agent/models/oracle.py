"""A teacher that knows the task's reference fix. It explores like an agent would (list_files, grep,
read_file), writes the fixed file(s), then ends with `final`. The seed varies the exploration so that
several rollouts of one task differ. It produces valid teacher traces with no LLM at all.
"""

from __future__ import annotations

import random
from typing import Any

from ..protocol import Final, ToolCall, render_action
from ..suites.task import Suite, TaskSpec
from .base import ModelReply


class OracleModel:
    def __init__(self, suite: Suite, task: TaskSpec, seed: int):
        self.plan = oracle_plan(task, suite.reference_text(task), random.Random(seed))

    def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> ModelReply:
        step = sum(1 for m in messages if m.get("role") == "assistant")
        action = self.plan[min(step, len(self.plan) - 1)]
        if tools:  # native protocol: answer with a function call
            name, args = ("final", {"summary": action.summary}) if isinstance(action, Final) else (action.name, action.args)
            import json

            call = {"id": f"call_{step}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
            return ModelReply(content="", tool_calls=[call])
        return ModelReply(content=render_action(action))


def oracle_plan(task: TaskSpec, reference: dict[str, str], rng: random.Random) -> list[ToolCall | Final]:
    explore: list[ToolCall] = []
    if rng.random() < 0.7:
        explore.append(ToolCall("list_files", {"rel_dir": ".", "max_files": rng.choice([100, 200])}))
    if not explore or rng.random() < 0.5:
        explore.append(ToolCall("grep", {"pattern": f"def {task.name}", "rel_dir": ".", "max_matches": 50}))
    rng.shuffle(explore)
    plan: list[ToolCall | Final] = list(explore)
    for path in task.target_files:
        plan.append(ToolCall("read_file", {"rel_path": path, "max_chars": rng.choice([4000, 8000])}))
    test_files = [a for a in task.test.args if a.endswith(".py") and "::" not in a]
    if test_files and rng.random() < 0.5:
        plan.append(ToolCall("read_file", {"rel_path": test_files[0], "max_chars": 4000}))
    for path, text in reference.items():
        plan.append(ToolCall("write_file", {"rel_path": path, "content": text}))
    changed = ", ".join(reference)
    plan.append(Final(summary=f"Fixed the bug in {changed} so that the tests of {task.name} pass."))
    return plan
