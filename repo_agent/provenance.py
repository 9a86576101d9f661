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
