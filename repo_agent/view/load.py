"""Read run folders and comparison folders for display. Nothing here writes to a run folder.

A RUN_DIR given to `repo-agent view` may be:
- a run folder (`eval`, `prefs`, a pipeline stage): config.json and/or traces/, results.jsonl,
  report.json, PNG plots, and `comparison/` when `report compare` wrote its default output there;
- a comparison folder (`report compare --out`): comparison.json and its PNG plots;
- a folder holding such folders one level down (the pipeline's output folder).

Traces are read with the tolerant reader (traces.iter_traces): unreadable files become "damaged"
rollouts carrying the reader's reason, unfinished ones are shown with what they have, and rollouts the
config promises but no file holds are "missing".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..evaluate.metrics import outcome_from_trace, summarize
from ..traces import TraceProblem, iter_traces

_ROLLOUT_STEM = re.compile(r"^(?P<task>.+)__r(?P<index>\d+)$")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class ViewInputError(ValueError):
    """A RUN_DIR that holds nothing `view` can show; the message says what was looked for."""


@dataclass
class Rollout:
    """One cell of the tasks x rollouts table; `trace` is None when damaged or missing."""

    task_id: str
    index: int | None
    key: str = ""  # file-name-safe and unique within its run: the rollout page's name
    path: Path | None = None
    trace: dict[str, Any] | None = None
    problem: str | None = None  # why the trace could not be read

    @property
    def state(self) -> str:
        if self.path is None:
            return "missing"
        if self.trace is None:
            return "damaged"
        return trace_outcome(self.trace)


@dataclass
class RunData:
    path: Path
    slug: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    config_problem: str | None = None
    report: dict[str, Any] | None = None
    report_source: str = ""
    task_ids: list[str] = field(default_factory=list)
    rollouts_per_task: int = 0
    rollouts: list[Rollout] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    comparison_files: list[Path] = field(default_factory=list)

    @property
    def suite_id(self) -> str | None:
        suite = self.config.get("suite") if isinstance(self.config.get("suite"), dict) else {}
        if suite.get("suite_id"):
            return str(suite["suite_id"])
        ids = {str(r.trace.get("suite_id")) for r in self.rollouts if r.trace and r.trace.get("suite_id")}
        return ids.pop() if len(ids) == 1 else None

    @property
    def label(self) -> str:
        provider = self.config.get("provider") if isinstance(self.config.get("provider"), dict) else {}
        first = next((r.trace for r in self.rollouts if r.trace), {})
        return f"{provider.get('provider', first.get('provider', '?'))}:{provider.get('model', first.get('model', '?'))}"

    def _cells(self) -> dict[tuple[str, int | None], Rollout]:
        cells: dict[tuple[str, int | None], Rollout] = {}
        for rollout in self.rollouts:
            cells.setdefault((rollout.task_id, rollout.index), rollout)
        return cells

    @property
    def unplaced(self) -> list[Rollout]:
        """Rollouts that have no cell of their own (no rollout index, or a duplicate of one)."""
        cells = self._cells()
        return [r for r in self.rollouts if r.index is None or cells.get((r.task_id, r.index)) is not r]


@dataclass
class ComparisonData:
    """Two runs side by side: from comparison.json (`report compare`) or from two runs of one suite."""

    baseline: RunData | None
    candidate: RunData | None
    stats: dict[str, Any] | None  # comparison.json's content, or compare_runs' result
    stats_source: str
    folder: Path | None = None  # the comparison folder (for its plots)
    plots: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    slug: str = ""


def trace_outcome(trace: dict[str, Any]) -> str:
    """What a rollout's cell is coloured by. The verdict (written by the driver, never by the model)
    decides: its `outcome` when the trace has one, else `passed_verdict`."""
    if trace.get("status") != "finished":
        return "unfinished"
    verdict = trace.get("verdict") if isinstance(trace.get("verdict"), dict) else {}
    metrics = trace.get("metrics") if isinstance(trace.get("metrics"), dict) else {}
    for candidate in (verdict.get("outcome"), metrics.get("outcome")):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    if "passed_verdict" in verdict:
        return "passed" if verdict["passed_verdict"] is True else "failed"
    if trace.get("stop_reason") == "harness_error" or trace.get("error"):
        return "error"
    return "no verdict"


def safe_name(text: str, taken: set[str]) -> str:
    """A file name made of [A-Za-z0-9._-] that is not in `taken` (which it is added to)."""
    base = _UNSAFE_NAME.sub("_", text).strip("._")[:80] or "item"
    name, n = base, 2
    while name.lower() in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name.lower())
    return name


def is_run_dir(path: Path) -> bool:
    return (path / "traces").is_dir() or _json_schema(path / "config.json") == "repo-agent/run"


def is_comparison_dir(path: Path) -> bool:
    return (path / "comparison.json").is_file()


def _json_schema(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("schema") if isinstance(data, dict) else None


def discover(inputs: list[Path], exclude: Path | None = None) -> tuple[list[Path], list[Path]]:
    """(run folders, comparison folders) named by `inputs`, in the order given, without duplicates."""
    runs: list[Path] = []
    comparisons: list[Path] = []
    for given in inputs:
        if not given.is_dir():
            raise ViewInputError(f"{given} is not a directory")
        found = _classify(given)
        if not found:
            for child in sorted(p for p in given.iterdir() if p.is_dir() and p.resolve() != exclude):
                found += _classify(child)
        if not found:
            raise ViewInputError(f"{given} holds no run (config.json or traces/) and no comparison.json, "
                                 "neither itself nor one folder down")
        for kind, path in found:
            bucket = runs if kind == "run" else comparisons
            if path.resolve() not in {p.resolve() for p in bucket}:
                bucket.append(path)
    return runs, comparisons


def _classify(path: Path) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    if is_run_dir(path):
        found.append(("run", path))
        if is_comparison_dir(path / "comparison"):
            found.append(("comparison", path / "comparison"))
    if is_comparison_dir(path):
        found.append(("comparison", path))
    return found


def load_run_data(path: Path, exclude: Path | None = None) -> RunData:
    run = RunData(path=path)
    if (path / "config.json").is_file():
        try:
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
            if not isinstance(config, dict):
                raise ValueError("not a JSON object")
            run.config = config
        except (OSError, ValueError) as exc:
            run.config_problem = f"config.json is unreadable ({exc})"
    problems: list[TraceProblem] = []
    for trace_path, trace in iter_traces(path, finished_only=False, problems=problems):
        run.rollouts.append(Rollout(task_id=str(trace.get("task_id")), index=_index(trace.get("rollout_index"), trace_path),
                                    path=trace_path, trace=trace))
    config_tasks = _config_task_ids(run.config)
    by_stem = {t.replace("/", "__"): t for t in config_tasks + [r.task_id for r in run.rollouts]}
    for problem in problems:
        match = _ROLLOUT_STEM.match(problem.path.stem)
        task = by_stem.get(match["task"], match["task"]) if match else problem.path.stem
        run.rollouts.append(Rollout(task_id=task, index=int(match["index"]) if match else None, path=problem.path,
                                    problem=problem.reason))
    seen_tasks = [r.task_id for r in run.rollouts]
    run.task_ids = config_tasks + sorted(set(seen_tasks) - set(config_tasks))
    indices = [r.index for r in run.rollouts if r.index is not None]
    configured = positive_int(run.config.get("rollouts"))
    run.rollouts_per_task = max([configured, *(i + 1 for i in indices)]) if (configured or indices) else 0
    present = {(r.task_id, r.index) for r in run.rollouts}
    for task in config_tasks:
        for index in range(configured):
            if (task, index) not in present:
                run.rollouts.append(Rollout(task_id=task, index=index))
    taken: set[str] = set()
    for rollout in sorted(run.rollouts, key=lambda r: (str(r.path or ""), r.task_id, r.index or 0)):
        rollout.key = safe_name(rollout.path.stem if rollout.path else f"{rollout.task_id}__r{rollout.index}", taken)
    run.report, run.report_source = _report(path, run)
    run.plots = sorted(p for p in path.glob("*.png") if p.is_file())
    if is_comparison_dir(path / "comparison"):
        run.comparison_files.append(path / "comparison" / "comparison.json")
    return run


def positive_int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _index(value: Any, path: Path) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _ROLLOUT_STEM.match(path.stem)
    return int(match["index"]) if match else None


def _config_task_ids(config: dict[str, Any]) -> list[str]:
    suite = config.get("suite") if isinstance(config.get("suite"), dict) else {}
    ids = suite.get("task_ids")
    return [str(t) for t in ids] if isinstance(ids, list) else []


def _report(path: Path, run: RunData) -> tuple[dict[str, Any] | None, str]:
    """report.json's content when it is readable; else the same summary computed from the finished traces."""
    report_path = path / "report.json"
    if report_path.is_file():
        try:
            report = json.loads(report_path.read_text(encoding="utf-8"))
            if isinstance(report, dict) and isinstance(report.get("overall"), dict):
                return report, "report.json"
        except (OSError, ValueError):
            pass
    finished = [r.trace for r in run.rollouts if r.trace and r.trace.get("status") == "finished"]
    if not finished:
        return None, "no report.json and no finished trace"
    try:
        summary = summarize(outcome_from_trace(t) for t in finished)
    except (KeyError, TypeError, AttributeError, ValueError):
        return None, "no readable report.json; the finished traces could not be summarized"
    return {"overall": summary["overall"], "per_task": summary["per_task"]}, \
        "computed from the finished traces (report.json is missing or unreadable)"


def load_comparison_file(folder: Path) -> tuple[dict[str, Any] | None, str | None]:
    try:
        data = json.loads((folder / "comparison.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, f"{folder / 'comparison.json'} is unreadable ({exc})"
    if not isinstance(data, dict):
        return None, f"{folder / 'comparison.json'} is not a JSON object"
    return data, None


def resolve_recorded_path(recorded: Any, folder: Path) -> Path | None:
    """A run path as `report compare` recorded it (as typed, relative to where it was run). Comparisons
    travel with their runs, so the folder it sits in (its default place is CANDIDATE/comparison) and its
    siblings of the same name come first; then the path as recorded, from here and from each folder above."""
    if not isinstance(recorded, str) or not recorded:
        return None
    candidate = Path(recorded)
    near = [folder.parent] if folder.parent.name == candidate.name else []
    near.append(folder.parent / candidate.name)
    for path in near:
        if candidate.name and is_run_dir(path):
            return path
    if candidate.is_absolute():
        return candidate if candidate.is_dir() else None
    for base in [Path.cwd(), folder, *folder.resolve().parents]:
        if (base / candidate).is_dir():
            return base / candidate
    return None
