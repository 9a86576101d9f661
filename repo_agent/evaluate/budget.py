"""Evaluation budgets sized from the suite, so a student is never cut off by the harness.

With the `files` tool set a fine-tuned student rewrites a whole file in one `write_file` reply: the
reply budget must hold the largest target file of the evaluated tasks, JSON-escaped inside the action
envelope, in the student's own tokens. With `edit` it fixes with one `replace_in_file` of the changed
lines, as its teacher did: the budget must hold the largest such reply for a task's minimal fix. The
step budget comes from what the teacher needed on the training tasks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..protocol import ToolCall, render_action
from ..suites.task import Suite

MARGIN_TOKENS = 32  # the closing of the envelope and a little slack
MIN_ITERS, ITERS_SLACK = 5, 2


@dataclass(frozen=True)
class TokenBudget:
    max_tokens: int
    largest_task: str | None
    needed: int  # tokens of the largest whole-file write, before the context cap
    too_large: list[str]  # tasks whose write cannot fit in the model's context


def write_action_tokens(suite: Suite, count: Callable[[str], int], toolset: str = "files") -> dict[str, int]:
    """Per task: tokens of the largest fixing action it could need: a whole-file write_file (buggy or
    fixed text), or with `edit` the replace_in_file of its minimal fix (whole-file where none applies)."""
    if toolset == "edit":
        return {task.task_id: _replace_tokens(suite, task, count) for task in suite.tasks}
    sizes: dict[str, int] = {}
    for task in suite.tasks:
        base = suite.root / task.base
        texts: dict[str, str] = {}
        for path in task.target_files:
            if (base / path).is_file():
                texts[path] = (base / path).read_text(encoding="utf-8", errors="replace")
        for path, text in suite.reference_text(task).items():
            if len(text) > len(texts.get(path, "")):
                texts[path] = text
        sizes[task.task_id] = max((count(render_action(ToolCall("write_file", {"rel_path": p, "content": t})))
                                   for p, t in texts.items()), default=0)
    return sizes


def _replace_tokens(suite: Suite, task: Any, count: Callable[[str], int]) -> int:
    from ..teacher.speech import replacement

    buggy, fixed = suite.buggy_text(task), suite.teacher_fix(task)[0]
    sizes = []
    for path, text in fixed.items():
        edit = replacement(buggy.get(path, ""), text)
        args = {"rel_path": path, "old": edit[0], "new": edit[1]} if edit else {"rel_path": path, "content": text}
        sizes.append(count(render_action(ToolCall("replace_in_file" if edit else "write_file", args))))
    return max(sizes, default=0)


def reply_budget(suite: Suite, count: Callable[[str], int], context: int | None, toolset: str = "files") -> TokenBudget:
    sizes = write_action_tokens(suite, count, toolset)
    largest = max(sizes, key=sizes.get) if sizes else None
    needed = (sizes[largest] if largest else 0) + MARGIN_TOKENS
    limit = needed if not context else min(needed, context // 2)  # the conversation needs the other half
    too_large = sorted(t for t, n in sizes.items() if n + MARGIN_TOKENS > limit)
    return TokenBudget(max_tokens=max(limit, 64), largest_task=largest, needed=needed, too_large=too_large)


def tokenizer_counter(model: str) -> tuple[Callable[[str], int], int | None]:
    """Token counter of a model (its tokenizer, no chat template: a reply is raw text) and its context."""
    from ..hf_loading import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(model)
    context = None
    folder = resolve_model(model)
    config_file = folder / "config.json" if folder.is_dir() else None
    if config_file and config_file.is_file():
        context = json.loads(config_file.read_text()).get("max_position_embeddings")
    context = context or getattr(tokenizer, "model_max_length", None)
    if context and context > 1_000_000:  # transformers' "unknown" sentinel
        context = None
    return (lambda text: len(tokenizer.encode(text, add_special_tokens=False))), context


def step_budget(teacher_results: Path) -> tuple[int, str]:
    """Most steps a passing teacher rollout took, plus room to recover; (budget, why)."""
    steps = []
    if teacher_results.is_file():
        for line in teacher_results.read_text(encoding="utf-8").splitlines():
            try:
                row: dict[str, Any] = json.loads(line)
            except ValueError:
                continue
            if row.get("passed") and isinstance((row.get("metrics") or {}).get("steps"), int):
                steps.append(row["metrics"]["steps"])
    if not steps:
        return MIN_ITERS + ITERS_SLACK, f"no passing teacher rollout to size it from: {MIN_ITERS + ITERS_SLACK}"
    budget = max(MIN_ITERS, max(steps) + ITERS_SLACK)
    return budget, f"the longest passing teacher rollout took {max(steps)} steps, + {ITERS_SLACK}"
