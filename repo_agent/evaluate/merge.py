"""`report merge`: the shards of one run (`eval --shard K/N` or `prefs --shard K/N` on N machines) joined
into the run the unsharded command would have made.

Refused, with the reason: a folder that is not a shard, shards of different suites or settings (provider,
model, agent, seed, rollouts: everything `run_config` records but the shard itself), a shard given twice
or overlapping tasks, a missing shard, and a shard whose rollouts are not all finished. The merged folder
holds every trace, the results log in suite order and a config.json naming its shards; its report is
built like any run's, so `report compare` and `view` read it as they read an unsharded run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_json, atomic_write_text
from ..rollouts import CONFIG_FILE, RESULTS_FILE, TRACES_DIR, config_differences


class MergeError(ValueError):
    """The folders are not the complete, consistent shards of one run."""


def _config(run: Path) -> dict[str, Any]:
    path = run / CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MergeError(f"{run}: no readable {CONFIG_FILE} ({exc})") from None
    if not (config.get("extra_config") or {}).get("shard"):
        raise MergeError(f"{run} is not a shard (its config records no --shard)")
    return config


def _rows(run: Path) -> list[dict[str, Any]]:
    path = run / RESULTS_FILE
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
        try:
            rows.append(json.loads(line))
        except ValueError:
            raise MergeError(f"{path}: a damaged line (resume that shard first: re-run its command)") from None
    return rows


def merge_runs(runs: list[Path], out: Path) -> dict[str, Any]:
    """Check the shards and write the merged run folder `out`; returns its config."""
    if not runs:
        raise MergeError("no run folders given")
    configs = [(run, _config(run)) for run in runs]  # a list: the same folder given twice must be seen twice
    first_run, first = configs[0]
    shard = first["extra_config"]["shard"]
    count = shard["count"]
    seen: dict[int, Path] = {}
    owner: dict[str, Path] = {}
    for run, config in configs:
        info = config["extra_config"]["shard"]
        if info["count"] != count or info["suite_tasks_sha256"] != shard["suite_tasks_sha256"]:
            raise MergeError(f"{run} is a shard of another split or suite than {first_run} "
                             f"({info['index']}/{info['count']} vs {shard['index']}/{count})")
        same = {**config, "suite": first["suite"], "extra_config": first["extra_config"]}
        diffs = [d for d in config_differences(first, same) if d != "extra_config"]
        extra_a = {k: v for k, v in config["extra_config"].items() if k != "shard"}
        extra_b = {k: v for k, v in first["extra_config"].items() if k != "shard"}
        if diffs or extra_a != extra_b or config.get("rollouts") != first.get("rollouts"):
            raise MergeError(f"{run} was run with other settings than {first_run}: {', '.join(diffs) or 'extra settings'}")
        if info["index"] in seen:
            raise MergeError(f"shard {info['index']}/{count} is given twice ({seen[info['index']]} and {run})")
        seen[info["index"]] = run
        for task_id in config["suite"]["task_ids"]:
            if task_id in owner:
                raise MergeError(f"task {task_id} is in two shards ({owner[task_id]} and {run})")
            owner[task_id] = run
    missing = sorted(set(range(1, count + 1)) - set(seen))
    if missing:
        raise MergeError(f"missing shard(s) {', '.join(f'{m}/{count}' for m in missing)}: run them (or give their folders)")
    suite_ids = shard["suite_task_ids"]
    if set(owner) != set(suite_ids):
        raise MergeError(f"the shards hold {len(owner)} tasks, the suite {len(suite_ids)}: the shards do not cover it")
    rows_by_task: dict[str, list[dict[str, Any]]] = {}
    for run, config in configs:
        rows = _rows(run)
        wanted = len(config["suite"]["task_ids"]) * config["rollouts"]
        if len({r["rollout_id"] for r in rows}) < wanted:
            raise MergeError(f"{run}: {len(rows)} of {wanted} rollouts finished; resume it first (re-run its command)")
        for row in rows:
            rows_by_task.setdefault(row["task_id"], []).append(row)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise MergeError(f"{out} is not empty: merge into a new folder")
    (out / TRACES_DIR).mkdir(parents=True, exist_ok=True)
    for run, _ in configs:
        for path in sorted((run / TRACES_DIR).glob("*.json")):
            shutil.copy2(path, out / TRACES_DIR / path.name)
    ordered = [row for task_id in suite_ids for row in sorted(rows_by_task.get(task_id, []), key=lambda r: r["rollout_id"])]
    atomic_write_text(out / RESULTS_FILE, "".join(json.dumps(r, sort_keys=True) + "\n" for r in ordered))
    merged = json.loads(json.dumps(first))
    merged["suite"]["task_ids"] = suite_ids
    merged["suite"]["tasks_sha256"] = shard["suite_tasks_sha256"]
    merged["extra_config"] = {k: v for k, v in first["extra_config"].items() if k != "shard"}
    merged["merged_from"] = {"shards": count, "runs": [str(seen[i]) for i in range(1, count + 1)]}
    atomic_write_json(out / CONFIG_FILE, merged)
    return merged
