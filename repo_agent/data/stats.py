"""What a data command read, kept, and removed (and why): printed as a table, written beside the output.

Lengths are kept as a compact array of ints (4 bytes per example) so percentiles are exact while memory
stays small; nothing else grows with the number of examples.
"""

from __future__ import annotations

import json
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..traces import TraceProblem

PERCENTILES = (50, 90, 99)
MAX_PROBLEMS_LISTED = 20


def percentiles(values: array) -> dict[str, Any]:
    """Nearest-rank percentiles, min, max and mean (exact; empty input gives zeros)."""
    if not values:
        return {"count": 0, "min": 0, **{f"p{q}": 0 for q in PERCENTILES}, "max": 0, "mean": 0.0}
    ordered = sorted(values)
    n = len(ordered)
    out: dict[str, Any] = {"count": n, "min": ordered[0]}
    for q in PERCENTILES:
        rank = max(1, -(-q * n // 100))  # ceil(q*n/100), at least 1
        out[f"p{q}"] = ordered[rank - 1]
    out["max"] = ordered[-1]
    out["mean"] = round(sum(ordered) / n, 1)
    return out


@dataclass
class DataStats:
    kind: str  # "sft" | "pairs"
    output: str
    fmt: str
    rollouts_read: int = 0
    corrupt_skipped: int = 0
    unfinished_skipped: int = 0
    problems: list[str] = field(default_factory=list)
    steps_seen: int = 0
    examples: int = 0
    tasks: set[str] = field(default_factory=set)
    tasks_kept: set[str] = field(default_factory=set)
    removed: Counter = field(default_factory=Counter)
    tools: Counter = field(default_factory=Counter)  # sft: target tool; pairs: source
    states_compared: int = 0  # pairs: conversation states shared by two or more rollouts
    outcome_gaps: Counter = field(default_factory=Counter)  # pairs: kept pairs by the outcome their sides differ in
    min_outcome_gap: str | None = None  # pairs: the weakest gap kept (step | rollout | none)
    chars: array = field(default_factory=lambda: array("I"))
    tokens: array = field(default_factory=lambda: array("I"))
    check: dict[str, Any] | None = None
    rows: str | None = None  # sft: "step" (one row per trained turn) or "episode" (rollouts, weighted turns)
    episode_rows: int = 0  # sft episode rows written (examples count the trained turns they carry)
    row_chars: array = field(default_factory=lambda: array("I"))
    row_tokens: array = field(default_factory=lambda: array("I"))
    test_policies: Counter = field(default_factory=Counter)  # rollouts read per test policy: a student must see the same

    def remove(self, reason: str, n: int = 1) -> None:
        self.removed[reason] += n

    def keep(self, task_id: str, label: str, chars: int, tokens: int | None = None) -> None:
        self.examples += 1
        self.tasks_kept.add(task_id)
        self.tools[label] += 1
        self.chars.append(chars)
        if tokens is not None:
            self.tokens.append(tokens)

    def keep_row(self, chars: int, tokens: int | None = None) -> None:
        """An episode row written (its trained turns were counted by keep())."""
        self.episode_rows += 1
        self.row_chars.append(chars)
        if tokens is not None:
            self.row_tokens.append(tokens)

    def absorb_problems(self, problems: list[TraceProblem], already: int) -> int:
        """Count trace problems reported since index `already`; returns the new index."""
        for problem in problems[already:]:
            if "unfinished rollout" in problem.reason:
                self.unfinished_skipped += 1
            else:
                self.corrupt_skipped += 1
            if len(self.problems) < MAX_PROBLEMS_LISTED:
                self.problems.append(problem.reason)
        return len(problems)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "output": self.output,
            "format": self.fmt,
            "examples": self.examples,
            "tasks_read": len(self.tasks),
            "tasks_kept": len(self.tasks_kept),
            "rollouts_read": self.rollouts_read,
            "corrupt_traces_skipped": self.corrupt_skipped,
            "unfinished_traces_skipped": self.unfinished_skipped,
            "problems": self.problems,
            "steps_seen": self.steps_seen,
            "states_compared": self.states_compared,
            "removed": dict(sorted(self.removed.items())),
            ("pairs_by_source" if self.kind == "pairs" else "tool_distribution"): dict(sorted(self.tools.items())),
            **({"pairs_by_outcome_gap": dict(sorted(self.outcome_gaps.items())), "min_outcome_gap": self.min_outcome_gap}
               if self.kind == "pairs" else {}),
            "length_chars": percentiles(self.chars),
            "length_tokens": percentiles(self.tokens) if self.tokens else None,
            **({"rows": self.rows, "trained_turns": self.examples, "row_count": self.episode_rows if self.rows == "episode" else self.examples,
                "step_row_tokens_total": sum(self.tokens) if self.tokens else None,
                **({"episode_row_length_chars": percentiles(self.row_chars),
                    "episode_row_length_tokens": percentiles(self.row_tokens) if self.row_tokens else None,
                    "episode_row_tokens_total": sum(self.row_tokens) if self.row_tokens else None}
                   if self.rows == "episode" else {})} if self.kind == "sft" and self.rows else {}),
            "check": self.check,
            "test_policies": dict(sorted(self.test_policies.items())),
        }

    def write(self, path: Path) -> None:
        from ..atomic import atomic_write_json

        atomic_write_json(Path(path), self.to_dict())

    def table(self):
        from rich.table import Table

        data = self.to_dict()
        table = Table(title=f"{self.kind} -> {self.output}", show_header=False)
        if self.kind == "sft" and self.rows == "episode":
            table.add_row("rows (episode)", f"[bold]{self.episode_rows}[/bold] holding {self.examples} trained turns")
        else:
            table.add_row("examples" if self.kind == "sft" else "pairs", f"[bold]{self.examples}[/bold]")
        table.add_row("tasks (read / kept)", f"{data['tasks_read']} / {data['tasks_kept']}")
        table.add_row("rollouts read", str(self.rollouts_read))
        table.add_row("corrupt / unfinished skipped", f"{self.corrupt_skipped} / {self.unfinished_skipped}")
        table.add_row("steps seen", str(self.steps_seen))
        if self.kind == "pairs":
            table.add_row("states compared", str(self.states_compared))
        for reason, count in data["removed"].items():
            table.add_row(f"removed: {reason}", str(count))
        label = "by source" if self.kind == "pairs" else "tools"
        table.add_row(label, ", ".join(f"{k} {v}" for k, v in sorted(self.tools.items())) or "-")
        if self.kind == "pairs":
            table.add_row(f"by outcome gap (min {self.min_outcome_gap})",
                          ", ".join(f"{k} {v}" for k, v in sorted(self.outcome_gaps.items())) or "-")
        for name in ("length_chars", "length_tokens", "episode_row_length_chars", "episode_row_length_tokens"):
            stats = data.get(name)
            if stats:
                table.add_row(name.replace("_", " "), "p50 {p50}  p90 {p90}  p99 {p99}  max {max}".format(**stats))
        if self.check is not None:
            table.add_row("check", "[green]ok[/green]" if self.check.get("ok") else f"[red]{self.check.get('errors')}[/red]")
        return table


def stats_path(output: Path) -> Path:
    """`runs/x/sft.jsonl` -> `runs/x/sft.stats.json`."""
    output = Path(output)
    return output.with_name(f"{output.stem}.stats.json")


def meta_path(output: Path) -> Path:
    """`runs/x/prefs.jsonl` -> `runs/x/prefs.meta.jsonl` (the pairs' provenance sidecar)."""
    output = Path(output)
    return output.with_name(f"{output.stem}.meta.jsonl")


def dumps(stats: DataStats) -> str:
    return json.dumps(stats.to_dict(), indent=1)
