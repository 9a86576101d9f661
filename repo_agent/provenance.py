"""Which tasks a model was trained on, wherever the model lives.

Every artefact that comes out of training carries its training tasks: a local adapter folder holds
`trained_tasks.json`; a hosted fine-tune (Together) is registered by its model id in the cache folder
(`$REPO_AGENT_CACHE/trained_models/`, written by `finetune together` once the job names its model), so
`eval --model <that id>` finds it; any other model can be described with `--trained-tasks FILE`.
`eval` and `report compare` refuse to score a model on tasks it was trained on.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .atomic import atomic_write_json

TASKS_FILE = "trained_tasks.json"


def registry_dir() -> Path:
    base = os.environ.get("REPO_AGENT_CACHE")
    root = Path(base) if base else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "repo-agent"
    return root / "trained_models"


def _entry(model_id: str) -> Path:
    return registry_dir() / (hashlib.sha256(model_id.encode("utf-8")).hexdigest()[:32] + ".json")


def read_task_ids(path: Path) -> list[str]:
    """{"task_ids": [...]} (or a JSON list); raises ValueError with the reason."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read trained tasks ({exc})") from None
    ids = data.get("task_ids") if isinstance(data, dict) else data
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ValueError(f'{path}: expected JSON {{"task_ids": [...]}} with string ids')
    return sorted(set(ids))


def _ids_from_list_file(path: Path) -> list[str]:
    """--task-ids-file: {"task_ids": [...]}, a JSON list, or one id per line."""
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except ValueError:
        return sorted({line.strip() for line in text.splitlines() if line.strip()})
    ids = data.get("task_ids") if isinstance(data, dict) else data
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ValueError(f"{path}: expected {{\"task_ids\": [...]}}, a JSON list of ids, or one id per line")
    return sorted(set(ids))


def _ids_from_traces(trace_dir: Path) -> list[str]:
    ids = set()
    for path in sorted(trace_dir.rglob("*.json")):
        try:
            trace = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            continue  # a corrupt trace was skipped by sft-extract as well
        if isinstance(trace, dict) and isinstance(trace.get("task_id"), str):
            ids.add(trace["task_id"])
    return sorted(ids)


def _ids_from_sidecar(dataset: Path, row_count: int) -> list[str] | None:
    """The provenance sidecar of sft-extract / pairs-extract, if it describes this file line for line
    (a stale one, written for another version of the dataset, would be a wrong list: worse than none)."""
    from .data.stats import meta_path

    sidecar = meta_path(dataset)
    if not sidecar.is_file():
        return None
    ids = []
    for line in sidecar.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                record = json.loads(line)
            except ValueError:
                return None
            if not isinstance(record, dict) or not isinstance(record.get("task_id"), str):
                return None
            ids.append(record["task_id"])
    return sorted(set(ids)) if len(ids) == row_count else None


def trained_task_ids(dataset: Path, rows: list[dict[str, Any]] | None = None, task_ids_file: str | None = None,
                     trained_tasks_from: str | None = None) -> tuple[list[str] | None, str | None]:
    """Which tasks a training file's rows came from, and how we know: an explicit file, the rows' own
    "metadata", the provenance sidecar written by sft-extract/pairs-extract, or a trace folder.
    (None, None) when unknown: no list is invented."""
    dataset = Path(dataset)
    if task_ids_file:
        return _ids_from_list_file(Path(task_ids_file)), f"--task-ids-file {task_ids_file}"
    if rows is None:
        rows = [json.loads(line) for line in dataset.read_text(encoding="utf-8").splitlines() if line.strip()]
    in_rows = {(r.get("metadata") or {}).get("task_id") for r in rows if isinstance(r.get("metadata"), dict)}
    in_rows.discard(None)
    if in_rows and all(isinstance(r.get("metadata"), dict) for r in rows):
        return sorted(in_rows), "row metadata"
    from_sidecar = _ids_from_sidecar(dataset, len(rows))
    if from_sidecar is not None:
        from .data.stats import meta_path

        return from_sidecar, str(meta_path(dataset))
    if trained_tasks_from:
        return _ids_from_traces(Path(trained_tasks_from)), f"traces in {trained_tasks_from}"
    return None, None


def recorded_training(config: dict[str, Any]) -> list[str]:
    """The training tasks an eval run recorded for its model (config.json's extra_config), plus those of
    the adapter folder if it is still there."""
    extra = config.get("extra_config") or {}
    ids = set(extra.get("trained_task_ids") or [])
    for adapter in {(config.get("provider") or {}).get("adapter"), extra.get("adapter")} - {None}:
        try:
            ids |= set(read_task_ids(Path(adapter) / TASKS_FILE))
        except ValueError:
            pass  # adapter gone or unreadable: the ids copied into config at eval time still count
    return sorted(ids)


def register_model(model_id: str, task_ids: list[str], source: str) -> Path:
    """Remember that the hosted model `model_id` was trained on `task_ids` (from `source`)."""
    path = _entry(model_id)
    atomic_write_json(path, {"model": model_id, "task_ids": sorted(set(task_ids)), "source": source})
    return path


def registered_tasks(model_id: str) -> tuple[list[str], str] | None:
    path = _entry(model_id)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    if data.get("model") != model_id:
        return None
    return sorted(data.get("task_ids") or []), str(data.get("source") or path)


def trained_tasks(model: str | None, adapter: str | Path | None, trained_tasks_file: str | Path | None) -> dict[str, Any]:
    """{"task_ids": [...], "sources": [...]}: the union of everything known about the model's training."""
    ids: set[str] = set()
    sources: list[str] = []
    policies: set[str] = set()
    if trained_tasks_file:
        ids |= set(read_task_ids(Path(trained_tasks_file)))
        sources.append(f"--trained-tasks {trained_tasks_file}")
    if adapter and (Path(adapter) / TASKS_FILE).is_file():
        ids |= set(read_task_ids(Path(adapter) / TASKS_FILE))
        sources.append(str(Path(adapter) / TASKS_FILE))
        try:
            policies |= set(json.loads((Path(adapter) / TASKS_FILE).read_text(encoding="utf-8")).get("test_policies") or [])
        except (ValueError, AttributeError):
            pass
    if model:
        found = registered_tasks(model)
        if found:
            ids |= set(found[0])
            sources.append(f"registered fine-tune {model} ({found[1]})")
    return {"task_ids": sorted(ids), "sources": sources, "test_policies": sorted(policies)}
