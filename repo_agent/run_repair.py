"""A run folder whose config.json is missing or unreadable: can its traces still be trusted?

config.json is written atomically, so a kill never cuts it; a machine that loses power before the
file reached the disk can still leave it empty. Refusing to resume would then throw away every
finished rollout, and trusting the folder blindly could mix two different runs. Every trace records
what decides its result (suite, task, rollout index and seed, provider, model, endpoint, adapter,
sampling, agent settings), so the folder is checked trace by trace against the command being run:
all agree -> config.json is written again and the run resumes; any disagree -> refused, naming them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from .traces import TraceReadError, read_trace

# provider fields a trace records under the same name
_PROVIDER_KEYS = ("provider", "model", "base_url", "adapter")


def _differences(trace: dict[str, Any], config: dict[str, Any], seed_of: Callable[[str, int], int]) -> list[str]:
    diffs = []
    task_id, index = trace.get("task_id"), trace.get("rollout_index")
    suite = config["suite"]
    if trace.get("suite_id") != suite["suite_id"]:
        diffs.append(f"suite_id {trace.get('suite_id')!r}")
    if task_id not in suite["task_ids"]:
        diffs.append(f"task {task_id!r} is not in the suite")
    if not isinstance(index, int) or not 0 <= index < config["rollouts"]:
        diffs.append(f"rollout index {index!r}")
    elif task_id in suite["task_ids"] and trace.get("seed") != seed_of(task_id, index):
        diffs.append(f"seed {trace.get('seed')!r} (another --seed)")
    provider = config["provider"]
    for key in _PROVIDER_KEYS:
        if trace.get(key) != provider.get(key):
            diffs.append(f"{key} {trace.get(key)!r}")
    if trace.get("sampling") != provider.get("sampling"):
        diffs.append("sampling")
    if trace.get("agent_config") != config["agent"]:
        diffs.append("agent settings")
    return diffs


def check_traces(traces_dir: Path, config: dict[str, Any], seed_of: Callable[[str, int], int]) -> tuple[int, list[str]]:
    """(traces checked, one line per trace made by a different run). Unreadable traces are skipped:
    the resume reruns them anyway."""
    # json round trip: the config holds tuples where a trace read from disk holds lists
    config = json.loads(json.dumps(config))
    checked, foreign = 0, []
    for path in sorted(traces_dir.glob("*.json")) if traces_dir.is_dir() else []:
        try:
            trace = read_trace(path)
        except TraceReadError:
            continue
        checked += 1
        diffs = _differences(trace, config, seed_of)
        if diffs:
            foreign.append(f"{path.name}: {', '.join(diffs)}")
    return checked, foreign
