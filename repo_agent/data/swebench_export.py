"""Exports for the rest of the field: SWE-bench predictions from a run folder, verl RLHF parquet from a suite.

Predictions (JSON Lines, what the official harness's `run_evaluation --predictions_path` reads): one row
per task, `{"instance_id", "model_name_or_path", "model_patch"}`, where model_patch is the trace's
`final_diff` (a unified, `git apply`-able diff of the editable files the model changed; test files and
other protected paths never appear in it). A task's instance_id is its SWE-bench id for SWE-bench
suites, else the task id.

verl parquet (one file per side, train/test): one row per task, as verl's multi-turn agent examples
shape them:
    data_source   "repo-agent/<suite kind>" (verl picks the reward function by it)
    agent_name    "tool_agent"
    prompt        [system prompt of the chosen tool set, "GOAL:\n<task goal>"] as chat messages
    ability       "swe"
    reward_model  {"style": "rule", "ground_truth": JSON text: instance_id, task_id, FAIL_TO_PASS,
                   PASS_TO_PASS (SWE-bench suites) and the reference diff (patch-similarity rewards)}
    extra_info    {"split", "index", "instance_id", "task_id", "suite_id", "need_tools_kwargs": true,
                   "tools_kwargs": {tool: {"create_kwargs": {suite, task_id, toolset, sandbox}}}}
`index` is derived from the task id alone (the first 12 hex digits of its sha256 as an integer), so a
task keeps its id when other tasks are added, removed or reordered, and across re-exports.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Any

from ..suites.task import Suite, TaskSpec
from ..traces import iter_traces

ABILITY = "swe"
AGENT_NAME = "tool_agent"


def instance_id(task: TaskSpec | None, task_id: str) -> str:
    meta = dict(task.meta) if task is not None else {}
    return str(meta.get("instance_id") or task_id)


def stable_index(task_id: str) -> int:
    return int(hashlib.sha256(task_id.encode("utf-8")).hexdigest()[:12], 16)


def predictions(trace_dir: Path, suite: Suite | None, model_name: str | None, rollout: int = 0) -> tuple[list[dict[str, Any]], list[str]]:
    """(one prediction per task from its rollout `rollout`, notes on what was left out)."""
    tasks = {t.task_id: t for t in suite.tasks} if suite is not None else {}
    rows: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    problems: list = []
    for path, trace in iter_traces(trace_dir, problems=problems):
        if int(trace.get("rollout_index") or 0) != rollout:
            continue
        task_id = str(trace.get("task_id"))
        if suite is not None and task_id not in tasks:
            notes.append(f"{path.name}: task {task_id} is not in suite {suite.suite_id}; left out")
            continue
        if trace.get("stop_reason") == "harness_error":
            notes.append(f"{path.name}: the episode ended in a harness error; its diff is not the model's, left out")
            continue
        name = model_name or str(trace.get("model") or trace.get("provider") or "repo-agent")
        rows[task_id] = {"instance_id": instance_id(tasks.get(task_id), task_id), "model_name_or_path": name,
                         "model_patch": trace.get("final_diff") or ""}
    notes += [f"{p.path.name}: {p.reason}" for p in problems]
    return [rows[k] for k in sorted(rows)], notes


def _reference_diff(suite: Suite, task: TaskSpec) -> str:
    """The reference fix as a unified diff against the task's files (what patch-similarity compares to)."""
    chunks = []
    buggy = suite.buggy_text(task)
    for path, fixed in suite.reference_text(task).items():
        before = buggy.get(path, "")
        chunks.append("".join(difflib.unified_diff(before.splitlines(keepends=True), fixed.splitlines(keepends=True),
                                                   f"a/{path}" if before else "/dev/null", f"b/{path}")))
    return "".join(chunks)


def verl_row(suite: Suite, suite_path: str, task: TaskSpec, side: str, toolset: str, system_prompt: str,
             tool_names: list[str], sandbox: str) -> dict[str, Any]:
    from ..prompts import goal_message

    truth: dict[str, Any] = {"task_id": task.task_id, "instance_id": instance_id(task, task.task_id)}
    if task.resolution is not None:
        truth.update(FAIL_TO_PASS=list(task.resolution.fail_to_pass), PASS_TO_PASS=list(task.resolution.pass_to_pass))
    truth["reference_diff"] = _reference_diff(suite, task)
    create = {"suite": suite_path, "task_id": task.task_id, "toolset": toolset, "sandbox": sandbox}
    return {
        "data_source": f"repo-agent/{suite.kind}",
        "agent_name": AGENT_NAME,
        "prompt": [{"role": "system", "content": system_prompt}, {"role": "user", "content": goal_message(task.goal)}],
        "ability": ABILITY,
        "reward_model": {"style": "rule", "ground_truth": json.dumps(truth, ensure_ascii=False, sort_keys=True)},
        "extra_info": {"split": side, "index": stable_index(task.task_id), "instance_id": truth["instance_id"],
                       "task_id": task.task_id, "suite_id": suite.suite_id, "need_tools_kwargs": True,
                       "tools_kwargs": {name: {"create_kwargs": dict(create)} for name in tool_names}},
    }


def verl_rows(suite: Suite, suite_path: str, toolset: str = "bash", tool_protocol: str = "json",
              sandbox: str = "bwrap") -> dict[str, list[dict[str, Any]]]:
    """Rows per side ("train"/"test", by the suite's split rule), in task-id order."""
    from ..suites.split import suite_side_of
    from ..toolsets import toolset_named

    chosen = toolset_named(toolset)
    prompt = chosen.system_prompt(tool_protocol)
    names = list(chosen.schemas)
    sides: dict[str, list[dict[str, Any]]] = {}
    for task in sorted(suite.tasks, key=lambda t: t.task_id):
        side = suite_side_of(suite, task.task_id)
        sides.setdefault(side, []).append(verl_row(suite, suite_path, task, side, chosen.name, prompt, names, sandbox))
    return sides


def write_parquet(rows: list[dict[str, Any]], path: Path) -> Path:
    """Through `datasets` (Arrow types inferred once for the whole file), written beside and renamed."""
    import os

    from datasets import Dataset
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.parquet")
    try:
        Dataset.from_list(rows).to_parquet(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
