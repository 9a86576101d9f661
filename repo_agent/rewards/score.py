"""Rewards of recorded episodes: `repo-agent reward --trace-dir RUN` scores every finished trace of a run
with the same functions GRPO trains on, so rewards can be compared with pass rates on existing runs.
Written to RUN/rewards.jsonl (one row per trace: rollout, task, passed, one column per reward, the
weighted composite); results.jsonl is left as it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..suites.task import Suite
from ..traces import TraceProblem, iter_traces
from . import EPISODE_REWARDS, composite
from .references import task_references

REWARDS_FILE = "rewards.jsonl"


def score_traces(trace_dir: Path, suite: Suite | None, weights: dict[str, float], sandbox: str = "auto",
                 problems: list[TraceProblem] | None = None) -> list[dict[str, Any]]:
    """One row per finished trace. Without a suite (or for a task it lacks) patch_similarity and
    test_fraction are None."""
    loaded = list(iter_traces(trace_dir, problems=problems))
    traces = [t for _, t in loaded]
    refs = []
    for trace in traces:
        try:
            task = suite.task(trace["task_id"]) if suite else None
        except KeyError:
            task = None
        refs.append(task_references(suite, task, sandbox) if task is not None and suite is not None else None)
    kwargs = {"trace": traces, "reference_diff": [r["reference_diff"] if r else None for r in refs],
              "buggy_passing": [r["buggy_passing"] if r else None for r in refs]}
    columns = {name: EPISODE_REWARDS[name](prompts=None, completions=None, **kwargs) for name in EPISODE_REWARDS}
    for name in ("test_fraction",):
        columns[name] = [value if ref is not None else None for value, ref in zip(columns[name], refs)]
    total = composite({n: columns[n] for n in weights}, weights)
    rows = []
    for index, (path, trace) in enumerate(loaded):
        rows.append({"trace": str(path.relative_to(trace_dir)), "task_id": trace.get("task_id"),
                     "passed": (trace.get("verdict") or {}).get("outcome") == "passed",
                     "rewards": {name: columns[name][index] for name in columns}, "composite": total[index]})
    return rows
