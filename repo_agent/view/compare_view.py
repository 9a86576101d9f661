"""Two runs side by side: the comparison page's rows and the per-task pages' columns."""

from __future__ import annotations

from typing import Any

from .load import ComparisonData, RunData
from .rollout import cell_summary, rollout_view


def _side(run: RunData | None, stats: dict[str, Any] | None, role: str, root: str) -> dict[str, Any]:
    recorded = (stats or {}).get(role) if isinstance((stats or {}).get(role), dict) else {}
    if run is None:
        return {"role": role, "label": str(recorded.get("label") or "?"), "path": str(recorded.get("path") or "?"),
                "href": None, "rollout_prefix": ""}
    return {"role": role, "label": run.label, "path": str(run.path), "href": f"{root}{run.slug}/index.html",
            "rollout_prefix": f"{root}{run.slug}/rollouts/"}


def _cells(run: RunData | None, task_id: str) -> list[dict[str, Any]]:
    if run is None:
        return []
    rollouts = sorted((r for r in run.rollouts if r.task_id == task_id), key=lambda r: (r.index is None, r.index or 0))
    return [cell_summary(r) for r in rollouts]


def _rate(cells: list[dict[str, Any]], recorded: Any) -> str:
    done = [c for c in cells if c["state"] not in ("missing", "damaged", "unfinished")]
    if done:
        return f"{sum(1 for c in done if c['state'] == 'passed')}/{len(done)}"
    return f"pass rate {recorded:.2f}" if isinstance(recorded, (int, float)) else "-"


def _majority(cells: list[dict[str, Any]]) -> bool | None:
    done = [c for c in cells if c["state"] not in ("missing", "damaged", "unfinished")]
    return sum(1 for c in done if c["state"] == "passed") * 2 > len(done) if done else None


def comparison_context(c: ComparisonData, title: str) -> dict[str, Any]:
    stats = c.stats or {}
    per_task = {str(t.get("task_id")): t for t in stats.get("per_task") or [] if isinstance(t, dict)}
    order: list[str] = []
    for run in (c.baseline, c.candidate):
        for task in (run.task_ids if run else []):
            if task not in order:
                order.append(task)
    order += [t for t in per_task if t not in order]
    rows = []
    for task in order:
        base, cand = _cells(c.baseline, task), _cells(c.candidate, task)
        recorded = per_task.get(task, {})
        if "baseline_majority" in recorded and "candidate_majority" in recorded:
            changed = recorded["baseline_majority"] != recorded["candidate_majority"]
        else:
            changed = None not in (_majority(base), _majority(cand)) and _majority(base) != _majority(cand)
        rows.append({"task_id": task, "baseline": base, "candidate": cand, "changed": changed, "href": None,
                     "baseline_rate": _rate(base, recorded.get("baseline_pass_rate")),
                     "candidate_rate": _rate(cand, recorded.get("candidate_pass_rate"))})
    mcnemar = stats.get("mcnemar") if isinstance(stats.get("mcnemar"), dict) else None
    mcnemar_text = None
    if mcnemar and isinstance(mcnemar.get("p_value"), (int, float)):
        mcnemar_text = (f"Pass-rate test: {mcnemar.get('candidate_only')} task(s) pass only with the candidate, "
                        f"{mcnemar.get('baseline_only')} only with the baseline; McNemar exact p = {mcnemar['p_value']:.4g}.")
    metrics = stats.get("metrics") if isinstance(stats.get("metrics"), dict) else {}
    known = {"schema", "suite_id", "tasks", "baseline", "candidate", "method", "metrics", "mcnemar", "verdict",
             "warnings", "per_task"}
    return {
        "title": title, "source": c.stats_source,
        "suite_id": stats.get("suite_id") or (c.baseline.suite_id if c.baseline else None),
        "baseline": _side(c.baseline, c.stats, "baseline", "../"),
        "candidate": _side(c.candidate, c.stats, "candidate", "../"),
        "notes": c.notes, "warnings": [str(w) for w in stats.get("warnings") or [] if isinstance(stats.get("warnings"), list)],
        "verdict": stats.get("verdict"), "mcnemar": mcnemar_text, "rows": rows,
        "metrics": [(name, _metric(v)) for name, v in metrics.items() if isinstance(v, dict)],
        "other": sorted((k, v) for k, v in stats.items() if k not in known),
    }


def _metric(v: dict[str, Any]) -> dict[str, Any]:
    return {k: v.get(k) for k in ("baseline", "candidate", "difference", "ci_low", "ci_high", "ci_excludes_zero")}


def task_sides(c: ComparisonData, task_id: str, root: str) -> list[dict[str, Any]]:
    """Both runs' rollouts of one task, each with its steps in brief."""
    sides = []
    for role, run in (("baseline", c.baseline), ("candidate", c.candidate)):
        side = _side(run, c.stats, role, root)
        rollouts = []
        if run is not None:
            for rollout in sorted((r for r in run.rollouts if r.task_id == task_id), key=lambda r: (r.index is None, r.index or 0)):
                view = rollout_view(rollout)
                verdict = view["verdict"] or {}
                rollouts.append({"cell": cell_summary(rollout), "steps": view["steps"],
                                 "verdict_summary": verdict.get("summary")})
        side["rollouts"] = rollouts
        sides.append(side)
    return sides
