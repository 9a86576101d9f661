"""Evaluation metrics (PROTOCOL.md §5) as pure functions of finished rollouts.

Every rollout becomes one `Outcome` (from its trace, or from its row in results.jsonl). Outcomes are
summed per task into `TaskTotals`; every reported metric is a ratio of two such sums, e.g.
pass rate = passes / rollouts, parse-error rate per step = parse errors / steps. Keeping metrics as
ratios of per-task sums makes the overall figure and the paired bootstrap over tasks (compare.py) the
same computation on different task selections.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..verdict import OUTCOMES, verdict_outcome

# name -> (numerator field, denominator field, description). Order is the display order.
RATIO_METRICS: dict[str, tuple[str, str, str]] = {
    "pass_rate": ("passes", "runs", "share of rollouts whose final driver-run tests pass"),
    "parse_error_rate": ("parse_errors", "steps", "parse errors per agent step"),
    "parse_errors_per_run": ("parse_errors", "runs", "parse errors per rollout"),
    "runs_with_parse_error": ("runs_with_parse_error", "runs", "share of rollouts with at least one parse error"),
    "runs_writing_file": ("runs_writing_file", "runs", "share of rollouts that ever call write_file"),
    "runs_modifying_files": ("runs_modifying_files", "runs", "share of rollouts that change a file by any tool (write_file, replace_in_file, a bash command)"),
    "refused_writes_per_run": ("refused_writes", "runs", "writes the task did not allow (tests, test data, new files) per rollout"),
    "runs_tampering": ("runs_tampering", "runs", "share of rollouts that tried to write a protected file (tests, test data, config) or tampered with the test run (an integrity problem)"),
    "runs_suspicious": ("runs_suspicious", "runs", "share of rollouts whose change adds a construct a fix has no business adding (new comparison dunders, imports of pytest or gc, frame access, ...)"),
    "loop_detections_per_run": ("loop_detections", "runs", "loop detections per rollout"),
    "avg_steps": ("steps", "runs", "agent steps per rollout"),
    "tokens_in_per_run": ("tokens_in", "runs", "prompt tokens per rollout"),
    "tokens_out_per_run": ("tokens_out", "runs", "completion tokens per rollout"),
    "wall_time_s_per_run": ("wall_time_s", "runs", "seconds per rollout (wall clock)"),
}
# Lower is better for these; higher for the rest (used only to word comparisons).
LOWER_IS_BETTER = {"parse_error_rate", "parse_errors_per_run", "runs_with_parse_error", "loop_detections_per_run",
                   "refused_writes_per_run", "runs_tampering", "runs_suspicious", "avg_steps", "tokens_in_per_run", "tokens_out_per_run", "wall_time_s_per_run"}


@dataclass(frozen=True)
class Outcome:
    """What evaluation needs from one finished rollout."""

    task_id: str
    rollout_index: int
    passed: bool
    stop_reason: str
    steps: int
    parse_errors: int
    wrote_file: bool
    loop_detections: int
    tokens_in: int
    tokens_out: int
    wall_time_s: float
    model_time_s: float = 0.0
    outcome: str = "failed"  # the sealed verdict: passed | failed | tests_missing | error
    refused_writes: int = 0
    tampered: bool = False
    suspicious: bool = False
    stopped_early: int = 0  # steps whose generation was stopped early (all of them parse errors)
    modified_files: bool = False


@dataclass
class TaskTotals:
    task_id: str
    runs: int = 0
    passes: int = 0
    steps: int = 0
    parse_errors: int = 0
    runs_with_parse_error: int = 0
    runs_writing_file: int = 0
    runs_modifying_files: int = 0
    loop_detections: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    wall_time_s: float = 0.0
    model_time_s: float = 0.0
    refused_writes: int = 0
    runs_tampering: int = 0
    runs_suspicious: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    stopped_early: int = 0
    stop_reasons: dict[str, int] = field(default_factory=dict)
    outcomes: list[bool] = field(default_factory=list)  # pass/fail by rollout index order

    def add(self, outcome: Outcome) -> None:
        self.runs += 1
        self.passes += outcome.passed
        self.steps += outcome.steps
        self.parse_errors += outcome.parse_errors
        self.runs_with_parse_error += outcome.parse_errors > 0
        self.runs_writing_file += outcome.wrote_file
        self.runs_modifying_files += outcome.modified_files
        self.loop_detections += outcome.loop_detections
        self.tokens_in += outcome.tokens_in
        self.tokens_out += outcome.tokens_out
        self.wall_time_s += outcome.wall_time_s
        self.model_time_s += outcome.model_time_s
        self.refused_writes += outcome.refused_writes
        self.runs_tampering += outcome.tampered
        self.runs_suspicious += outcome.suspicious
        self.verdicts[outcome.outcome] = self.verdicts.get(outcome.outcome, 0) + 1
        self.stopped_early += outcome.stopped_early
        self.stop_reasons[outcome.stop_reason] = self.stop_reasons.get(outcome.stop_reason, 0) + 1


def _count(value: Any) -> int:
    """Token and step counts; anything unusable (None, a redacted string) counts as 0."""
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _seconds(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def outcome_from_trace(trace: dict[str, Any]) -> Outcome:
    """From a finished trace; step-level fields are recounted so old or partial metrics don't matter."""
    steps = trace.get("steps") or []
    metrics = trace.get("metrics") or {}
    verdict = trace.get("verdict") or {}
    tool_names = [s["action"].get("name") for s in steps if isinstance(s.get("action"), dict)]
    refused = [s.get("refused") for s in steps if s.get("refused")]
    outcome = verdict_outcome(verdict)
    return Outcome(
        task_id=trace["task_id"],
        rollout_index=_count(trace.get("rollout_index")),
        passed=outcome == "passed",
        outcome=outcome,
        refused_writes=len(refused),
        tampered="protected" in refused or bool(verdict.get("tampered")),
        suspicious=bool(trace.get("suspicious")),
        stop_reason=str(trace.get("stop_reason") or "unknown"),
        steps=len(steps),
        parse_errors=sum(1 for s in steps if s.get("parse_error")),
        wrote_file="write_file" in tool_names,
        modified_files=any(s.get("changed_files") for s in steps) or "write_file" in tool_names,
        loop_detections=sum(1 for s in steps if s.get("loop")),
        tokens_in=sum(_count(s.get("prompt_tokens")) for s in steps),
        tokens_out=sum(_count(s.get("completion_tokens")) for s in steps),
        wall_time_s=_seconds(metrics.get("wall_time_s")),
        model_time_s=sum(_seconds(s.get("latency_s")) for s in steps),
        stopped_early=sum(1 for s in steps if s.get("stopped_early")),
    )


def outcome_from_row(row: dict[str, Any]) -> Outcome:
    """From a results.jsonl row (written by rollouts.py from the episode's own metrics)."""
    m = row.get("metrics") or {}
    outcome = str(row.get("outcome") or m.get("outcome") or ("passed" if row.get("passed") else "failed"))
    return Outcome(
        task_id=row["task_id"],
        rollout_index=_count(row.get("rollout_index")),
        passed=outcome == "passed",
        outcome=outcome,
        refused_writes=_count(m.get("refused_writes")),
        tampered=bool(m.get("tampered")),
        suspicious=bool(m.get("suspicious")),
        stop_reason=str(row.get("stop_reason") or "unknown"),
        steps=_count(m.get("steps")),
        parse_errors=_count(m.get("parse_errors")),
        wrote_file=bool(m.get("wrote_file")),
        modified_files=bool(m.get("modified_files", m.get("wrote_file"))),
        loop_detections=_count(m.get("loop_detections")),
        tokens_in=_count(m.get("tokens_in")),
        tokens_out=_count(m.get("tokens_out")),
        wall_time_s=_seconds(m.get("wall_time_s")),
        model_time_s=_seconds(m.get("model_time_s")),
    )


def task_totals(outcomes: Iterable[Outcome]) -> dict[str, TaskTotals]:
    """Per task, sorted by task id; rollouts within a task in rollout-index order."""
    by_task: dict[str, TaskTotals] = {}
    for outcome in sorted(outcomes, key=lambda o: (o.task_id, o.rollout_index)):
        totals = by_task.setdefault(outcome.task_id, TaskTotals(outcome.task_id))
        totals.add(outcome)
        totals.outcomes.append(outcome.passed)
    return by_task


def ratio(totals: Iterable[TaskTotals], metric: str) -> float | None:
    num_field, den_field, _ = RATIO_METRICS[metric]
    items = list(totals)
    den = sum(getattr(t, den_field) for t in items)
    return sum(getattr(t, num_field) for t in items) / den if den else None


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimator of pass@k from n samples with c passes (Chen et al., 2021): 1 - C(n-c,k)/C(n,k)."""
    if not 0 < k <= n:
        raise ValueError(f"pass@k needs 0 < k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_at_k_values(totals: Iterable[TaskTotals]) -> dict[str, float]:
    """Mean over tasks of per-task pass@k, for every k up to the smallest rollout count (k >= 2 only)."""
    items = list(totals)
    if not items:
        return {}
    k_max = min(t.runs for t in items)
    return {f"pass@{k}": sum(pass_at_k(t.runs, t.passes, k) for t in items) / len(items) for k in range(2, k_max + 1)}


def _stop_reasons(totals: Iterable[TaskTotals]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in totals:
        for reason, n in t.stop_reasons.items():
            counts[reason] = counts.get(reason, 0) + n
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def summarize_totals(totals: Iterable[TaskTotals]) -> dict[str, Any]:
    """Counts, ratio metrics, pass@k and stop reasons for a set of tasks."""
    items = list(totals)
    summary: dict[str, Any] = {
        "tasks": len(items),
        "rollouts": sum(t.runs for t in items),
        "passes": sum(t.passes for t in items),
        "steps": sum(t.steps for t in items),
        "parse_errors": sum(t.parse_errors for t in items),
        "loop_detections": sum(t.loop_detections for t in items),
        "tokens_in": sum(t.tokens_in for t in items),
        "tokens_out": sum(t.tokens_out for t in items),
        "wall_time_s": round(sum(t.wall_time_s for t in items), 3),
        "model_time_s": round(sum(t.model_time_s for t in items), 3),
        "stopped_early": sum(t.stopped_early for t in items),
    }
    for metric in RATIO_METRICS:
        value = ratio(items, metric)
        summary[metric] = None if value is None else round(value, 6)
    summary.update({k: round(v, 6) for k, v in pass_at_k_values(items).items()})
    summary["stop_reasons"] = _stop_reasons(items)
    summary["refused_writes"] = sum(t.refused_writes for t in items)
    summary["verdicts"] = {o: sum(t.verdicts.get(o, 0) for t in items) for o in OUTCOMES}
    return summary


def summarize(outcomes: Iterable[Outcome]) -> dict[str, Any]:
    """{"overall": {...}, "per_task": {task_id: {...}}} for a run."""
    by_task = task_totals(outcomes)
    per_task = {task_id: summarize_totals([t]) | {"outcomes": t.outcomes} for task_id, t in by_task.items()}
    return {"overall": summarize_totals(by_task.values()), "per_task": per_task}
