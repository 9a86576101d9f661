"""Rollout traces: one JSON file per rollout, versioned, rewritten atomically after every step.

The conversation a model saw at step k is `trace["prompt_messages"]` followed by, for every earlier
step j < k, `steps[j]["assistant_message"]` and `steps[j]["result_message"]`; `conversation_at`
rebuilds it byte for byte. Secrets never enter a trace: API keys are not part of any recorded config,
and `redact` scrubs anything that looks like one before a write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .atomic import atomic_write_text
from .secrets import redact

TRACE_SCHEMA = "repo-agent/trace"
TRACE_SCHEMA_VERSION = 1



class TraceWriter:
    """Holds a trace dict and persists it after every change.

    Content is redacted once, when it enters the trace, so a flush is a single C-encoder `json.dumps`
    (no indent: the indenting encoder is pure Python and dominated per-step harness time).
    """

    def __init__(self, path: Path, trace: dict[str, Any]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.trace = redact(trace)
        self.flush()

    def flush(self) -> None:
        atomic_write_text(self.path, json.dumps(self.trace, ensure_ascii=False) + "\n")

    def add_step(self, step: dict[str, Any]) -> None:
        self.trace["steps"].append(redact(step))
        self.flush()

    def finish(self, **fields: Any) -> None:
        self.trace.update(redact(fields))
        self.trace["status"] = "finished"
        self.flush()


def new_trace(**fields: Any) -> dict[str, Any]:
    trace: dict[str, Any] = {"schema": TRACE_SCHEMA, "schema_version": TRACE_SCHEMA_VERSION, "status": "running"}
    trace.update(fields)
    trace.setdefault("steps", [])
    return trace


def conversation_at(trace: dict[str, Any], step_index: int) -> list[dict[str, Any]]:
    """The exact messages the model received before producing step `step_index`."""
    messages = [dict(m) for m in trace["prompt_messages"]]
    for step in trace["steps"][:step_index]:
        messages.append(dict(step["assistant_message"]))
        messages.append(dict(step["result_message"]))
    return messages


class TraceReadError(ValueError):
    pass


def read_trace(path: Path) -> dict[str, Any]:
    """Read and check one trace; raises TraceReadError with a reason a user can act on."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceReadError(f"{path}: unreadable ({exc})") from None
    except ValueError as exc:
        raise TraceReadError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != TRACE_SCHEMA:
        raise TraceReadError(f"{path}: not a repo-agent trace")
    if data.get("schema_version", 0) > TRACE_SCHEMA_VERSION:
        raise TraceReadError(f"{path}: trace schema_version {data['schema_version']} is newer than this repo-agent")
    for key in ("task_id", "prompt_messages", "steps"):
        if key not in data:
            raise TraceReadError(f"{path}: missing field {key!r}")
    return data


@dataclass
class TraceProblem:
    path: Path
    reason: str


def iter_traces(trace_dir: Path, *, finished_only: bool = True, problems: list[TraceProblem] | None = None) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Yield (path, trace) for every readable trace under `trace_dir`, sorted by path.

    Corrupt or foreign files are reported in `problems` and skipped, never fatal.
    """
    for path in sorted(Path(trace_dir).rglob("*.json")):
        if path.name.startswith(".") or not _looks_like_trace_file(path):
            continue
        try:
            trace = read_trace(path)
        except TraceReadError as exc:
            if problems is not None:
                problems.append(TraceProblem(path, str(exc)))
            continue
        if finished_only and trace.get("status") != "finished":
            if problems is not None:
                problems.append(TraceProblem(path, f"{path}: unfinished rollout (status={trace.get('status')!r})"))
            continue
        yield path, trace


def _looks_like_trace_file(path: Path) -> bool:
    return path.parent.name == "traces" or path.name.endswith(".trace.json")
