"""`render_site`: run folders and comparisons in, a static site out (opens from disk, no network).

    OUT/index.html                      the runs and comparisons given
    OUT/assets/view.css, view.js        the only script and stylesheet (no CDN)
    OUT/run-NAME/index.html             config, metrics, plots, the tasks x rollouts table
    OUT/run-NAME/rollouts/KEY.html      one page per rollout, every step
    OUT/run-NAME/raw/KEY.json           a copy of the trace file as it is
    OUT/compare-NAME/index.html         two runs side by side (+ tasks/TASK.html: their steps)
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..evaluate.metrics import RATIO_METRICS
from .load import (ComparisonData, RunData, ViewInputError, discover, load_comparison_file, load_run_data,
                   positive_int, resolve_recorded_path, safe_name)
from .render import STATIC_FILES, PageWriter, SiteWriteError, static_text
from .rollout import cell_summary, rollout_view

MARKER = ".repo-agent-view"
RAW_PREVIEW_BYTES = 1_000_000
__all__ = ["render_site", "SiteResult", "ViewInputError", "SiteWriteError", "MARKER"]


@dataclass
class SiteResult:
    out: Path
    runs: list[RunData]
    comparisons: list[ComparisonData]
    pages: int
    notes: list[str] = field(default_factory=list)

    @property
    def index(self) -> Path:
        return self.out / "index.html"


def render_site(inputs: list[Path], out: Path, *, max_chars: int = 5000, page_size: int = 50) -> SiteResult:
    """Read every run and comparison named by `inputs` (never writing to them) and write the site to `out`."""
    out = Path(out)
    _prepare_out(out)
    run_paths, comparison_paths = discover([Path(p) for p in inputs], exclude=out.resolve())
    runs = [load_run_data(p) for p in run_paths]
    comparisons = [_comparison_from_file(folder, runs) for folder in comparison_paths]
    comparisons += _comparisons_of_same_suite(runs, comparisons)
    taken: set[str] = set()
    for run in runs:
        run.slug = "run-" + safe_name(run.path.resolve().name, taken)
    for comparison in comparisons:
        comparison.slug = "compare-" + safe_name(_comparison_name(comparison), taken)
    writer = PageWriter(out, max_chars, _version())
    for name in STATIC_FILES:
        writer.path(f"assets/{name}").write_text(static_text(name), encoding="utf-8")
    for run in runs:
        _write_run(writer, run, comparisons, page_size)
    for comparison in comparisons:
        _write_comparison(writer, comparison)
    writer.page("index.html", "index.html", runs=[_run_summary(r) for r in runs],
                comparisons=[{"href": f"{c.slug}/index.html", "title": _title(c), "source": c.stats_source}
                             for c in comparisons])
    (out / MARKER).write_text("written by `repo-agent view`; the next run may replace this folder's content\n")
    return SiteResult(out=out, runs=runs, comparisons=comparisons, pages=writer.pages)


def _prepare_out(out: Path) -> None:
    """Create `out`, or clear the site a previous `view` wrote there; never touch a folder it did not write."""
    if out.exists() and not out.is_dir():
        raise SiteWriteError(f"--out {out} is a file")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise SiteWriteError(f"--out {out} is not empty and was not written by `repo-agent view`: "
                                 "choose an empty or new folder")
        for child in out.iterdir():
            if child.is_dir() and (child.name == "assets" or child.name.startswith(("run-", "compare-"))):
                shutil.rmtree(child)
            elif child.name == "index.html":
                child.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("repo-agent")
    except PackageNotFoundError:
        return "(version unknown)"


def _run_summary(run: RunData) -> dict[str, Any]:
    states = [r.state for r in run.rollouts]
    overall = (run.report or {}).get("overall") or {}
    configured = positive_int(run.config.get("rollouts"))
    expected = len(_config_tasks(run)) * configured if configured else None
    return {
        "name": run.path.name, "href": f"{run.slug}/index.html", "label": run.label, "suite_id": run.suite_id,
        "path": str(run.path), "readable": sum(1 for r in run.rollouts if r.trace is not None), "expected": expected,
        "damaged": states.count("damaged"), "unfinished": states.count("unfinished"),
        "missing": states.count("missing"), "pass_rate": overall.get("pass_rate"),
    }


def _config_tasks(run: RunData) -> set[str]:
    suite = run.config.get("suite") if isinstance(run.config.get("suite"), dict) else {}
    return set(map(str, suite.get("task_ids") or [])) if isinstance(suite.get("task_ids"), list) else set()


def _metric_rows(overall: dict[str, Any]) -> list[tuple[str, Any, str]]:
    rows = [(name, overall.get(name), meaning) for name, (_, _, meaning) in RATIO_METRICS.items() if name in overall]
    rows += [(k, v, "chance that at least one of k rollouts passes") for k, v in overall.items() if k.startswith("pass@")]
    shown = {name for name, _, _ in rows}
    for key, value in overall.items():
        if key in shown:
            continue
        if key == "stop_reasons" and isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items()) or "-"
        rows.append((key, value, "count" if isinstance(value, int) and not isinstance(value, bool) else ""))
    return rows


def _config_facts(config: dict[str, Any]) -> list[tuple[str, Any]]:
    def part(name: str) -> dict[str, Any]:
        value = config.get(name)
        return value if isinstance(value, dict) else {}

    suite, provider, agent = part("suite"), part("provider"), part("agent")
    facts = [("suite", suite.get("suite_id")), ("suite file", suite.get("path")),
             ("tasks", len(suite["task_ids"]) if isinstance(suite.get("task_ids"), list) else None),
             ("provider", provider.get("provider")), ("model", provider.get("model")), ("base url", provider.get("base_url")),
             ("adapter", provider.get("adapter")), ("sampling", provider.get("sampling")),
             ("rollouts per task", config.get("rollouts")), ("seed", config.get("seed"))]
    facts += [(f"agent {k}", v) for k, v in agent.items()]
    facts += [("repo-agent version", config.get("repo_agent_version")), ("extra config", config.get("extra_config") or None)]
    return [(k, v) for k, v in facts if v is not None]


def _run_notes(run: RunData) -> list[str]:
    notes = [run.config_problem] if run.config_problem else []
    if not run.config:
        notes.append("no config.json: the expected tasks and rollouts are unknown, so missing rollouts cannot be counted")
    for rollout in run.rollouts:
        if rollout.state == "damaged":
            notes.append(f"damaged trace {rollout.key}: {rollout.problem}")
    unfinished = [r.key for r in run.rollouts if r.state == "unfinished"]
    if unfinished:
        notes.append(f"{len(unfinished)} unfinished rollout(s), shown with the steps they have: {', '.join(unfinished[:20])}"
                     + (" ..." if len(unfinished) > 20 else ""))
    missing = [r for r in run.rollouts if r.state == "missing"]
    if missing:
        notes.append(f"{len(missing)} rollout(s) the config promises have no trace file (never started)")
    problems = (run.report or {}).get("problems")
    notes += [f"report.json: {problem}" for problem in problems] if isinstance(problems, list) else []
    return notes


def _write_run(writer: PageWriter, run: RunData, comparisons: list[ComparisonData], page_size: int) -> None:
    for rollout in run.rollouts:
        if rollout.path is None:
            continue
        raw_href = None
        if rollout.path.is_file():
            # never *.trace.json: a site inside a run folder must not look like traces to the report readers
            writer.copy(rollout.path, f"{run.slug}/raw/{rollout.key}.raw.json")
            raw_href = f"../raw/{rollout.key}.raw.json"
        preview = None
        if rollout.trace is None and rollout.path.is_file():
            with open(rollout.path, "rb") as handle:
                preview = handle.read(RAW_PREVIEW_BYTES).decode("utf-8", errors="replace")
        writer.page(f"{run.slug}/rollouts/{rollout.key}.html", "rollout.html", r=rollout_view(rollout),
                    run_name=run.path.name, raw_href=raw_href, raw_preview=preview)
    plots = _copy_plots(writer, run.plots, f"{run.slug}/plots")
    cells = {(r.task_id, r.index): cell_summary(r) for r in run.rollouts}
    rows = []
    for task in run.task_ids:
        row_cells = [cells.get((task, i)) for i in range(run.rollouts_per_task)]
        done = [c for c in row_cells if c and c["state"] not in ("missing", "damaged", "unfinished")]
        rows.append({"task_id": task, "cells": row_cells, "finished": len(done),
                     "passes": sum(1 for c in done if c["state"] == "passed")})
    present = list(cells.values())
    overall = (run.report or {}).get("overall") or {}
    linked = [{"href": f"../{c.slug}/index.html", "title": _title(c)} for c in comparisons
              if run in (c.baseline, c.candidate)]
    writer.page(f"{run.slug}/index.html", "run.html", page_size=page_size, run={
        "name": run.path.name, "path": str(run.path), "label": run.label, "suite_id": run.suite_id,
        "readable": sum(1 for r in run.rollouts if r.trace is not None),
        "finished": sum(1 for r in run.rollouts if r.trace is not None and r.state != "unfinished"),
        "expected": _run_summary(run)["expected"], "notes": _run_notes(run), "comparisons": linked,
        "outcomes": sorted({c["state"] for c in present}), "stop_reasons": sorted({c["stop_reason"] for c in present}),
        "columns": run.rollouts_per_task, "rows": rows,
        "unplaced": [cell_summary(r) for r in run.unplaced],
        "metrics": _metric_rows(overall) if overall else [], "report_source": run.report_source, "plots": plots,
        "config": run.config or None, "config_problem": run.config_problem, "config_facts": _config_facts(run.config),
    })


def _copy_plots(writer: PageWriter, plots: list[Path], folder: str) -> list[dict[str, str]]:
    taken: set[str] = set()
    copied = []
    for plot in plots:
        name = safe_name(plot.stem, taken) + ".png"
        writer.copy(plot, f"{folder}/{name}")
        copied.append({"href": f"plots/{name}", "name": plot.name})
    return copied


def _comparison_from_file(folder: Path, runs: list[RunData]) -> ComparisonData:
    stats, problem = load_comparison_file(folder)
    notes = [problem] if problem else []
    sides: list[RunData | None] = []
    for role in ("baseline", "candidate"):
        recorded = ((stats or {}).get(role) or {}).get("path") if isinstance((stats or {}).get(role), dict) else None
        path = resolve_recorded_path(recorded, folder)
        run = next((r for r in runs if path is not None and r.path.resolve() == path.resolve()), None)
        if run is None and path is not None:
            try:
                run = load_run_data(path)
                runs.append(run)
            except (OSError, ValueError) as exc:
                notes.append(f"{role} run {recorded!r} could not be read ({exc})")
        if run is None and path is None:
            notes.append(f"{role} run folder {recorded!r} was not found: its rollouts cannot be linked")
        sides.append(run)
    return ComparisonData(baseline=sides[0], candidate=sides[1], stats=stats, folder=folder,
                          stats_source=f"report compare output {folder / 'comparison.json'}",
                          plots=sorted(p for p in folder.glob("*.png") if p.is_file()), notes=notes)


def _comparisons_of_same_suite(runs: list[RunData], existing: list[ComparisonData]) -> list[ComparisonData]:
    """Runs of one suite not already paired by a comparison.json: the first given is the baseline of the others."""
    from ..evaluate.compare import compare_runs
    from ..evaluate.report import load_run

    paired = {frozenset((id(c.baseline), id(c.candidate))) for c in existing}
    by_suite: dict[str, list[RunData]] = {}
    for run in runs:
        if run.suite_id:
            by_suite.setdefault(run.suite_id, []).append(run)
    made = []
    for group in by_suite.values():
        for candidate in group[1:]:
            baseline = group[0]
            if frozenset((id(baseline), id(candidate))) in paired:
                continue
            notes, stats = [], None
            try:
                stats = compare_runs(load_run(baseline.path), load_run(candidate.path))
                source = "computed by view with report compare's method (paired bootstrap, McNemar)"
            except (ValueError, KeyError, TypeError, AttributeError) as exc:  # IncomparableRuns, RunDirError included
                source = "two runs of the same suite"
                notes.append(f"no statistics: {exc}")
            made.append(ComparisonData(baseline=baseline, candidate=candidate, stats=stats, stats_source=source,
                                       notes=notes))
    return made


def _comparison_name(c: ComparisonData) -> str:
    if c.folder is not None:
        return c.folder.resolve().name if c.folder.name != "comparison" else f"{c.folder.resolve().parent.name}-comparison"
    return f"{c.baseline.path.name if c.baseline else 'baseline'}-vs-{c.candidate.path.name if c.candidate else 'candidate'}"


def _title(c: ComparisonData) -> str:
    def label(run: RunData | None, role: str) -> str:
        recorded = (c.stats or {}).get(role) if isinstance((c.stats or {}).get(role), dict) else {}
        return f"{run.label} ({run.path.name})" if run else str(recorded.get("label") or role)

    return f"{label(c.candidate, 'candidate')} vs {label(c.baseline, 'baseline')}"


def _write_comparison(writer: PageWriter, c: ComparisonData) -> None:
    from .compare_view import comparison_context, task_sides

    context = comparison_context(c, _title(c))
    context["plots"] = _copy_plots(writer, c.plots, f"{c.slug}/plots")
    task_keys: set[str] = set()
    for row in context["rows"]:
        if c.baseline is None and c.candidate is None:
            continue
        key = safe_name(row["task_id"], task_keys)
        row["href"] = f"tasks/{key}.html"
        writer.page(f"{c.slug}/tasks/{key}.html", "compare_task.html", c=context, task_id=row["task_id"],
                    sides=task_sides(c, row["task_id"], "../../"))
    writer.page(f"{c.slug}/index.html", "compare.html", c=context)
