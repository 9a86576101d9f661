"""Run directories in, reports out: report.json (machine-readable) and report.md (for people).

Everything is recomputed from the traces (results.jsonl is not needed), so `repo-agent report show DIR`
re-renders a report without re-running anything. config.json, when present, adds the suite identity,
the model and the expected number of rollouts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_json, atomic_write_text
from ..provenance import recorded_training
from ..traces import TraceProblem, iter_traces
from .metrics import RATIO_METRICS, outcome_from_trace, summarize, task_totals

REPORT_SCHEMA = "repo-agent/report"
COMPARISON_SCHEMA = "repo-agent/comparison"


class RunDirError(ValueError):
    pass


def load_run(run_dir: Path) -> dict[str, Any]:
    """Read a run directory: finished traces (corrupt or unfinished ones are reported and skipped)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir} is not a directory")
    config: dict[str, Any] = {}
    if (run_dir / "config.json").is_file():
        try:
            config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        except ValueError as exc:
            raise RunDirError(f"{run_dir / 'config.json'} is not valid JSON ({exc})") from None
    problems: list[TraceProblem] = []
    traces = [trace for _, trace in iter_traces(run_dir, problems=problems)]
    if not traces and not config:
        raise RunDirError(f"{run_dir} holds no finished traces and no config.json: is it a run directory?")
    suite = config.get("suite") or {}
    suite_ids = sorted({t.get("suite_id") for t in traces if t.get("suite_id")})
    if len(suite_ids) > 1:
        raise RunDirError(f"{run_dir} mixes traces of several suites: {suite_ids}")
    outcomes = [outcome_from_trace(t) for t in traces]
    first = traces[0] if traces else {}
    provider = config.get("provider") or {}
    decoding = run_decoding(traces)
    return {
        "path": str(run_dir),
        # tasks made from one program (a synthesized suite's split key) form one cluster of the bootstrap
        "clusters": {t["task_id"]: str(t.get("split_key") or t["task_id"]) for t in traces},
        "label": run_label(provider.get("provider", first.get("provider", "?")), provider.get("model", first.get("model", "?")),
                           decoding),
        "decoding": decoding,
        "config": config,
        "suite_id": suite.get("suite_id") or (suite_ids[0] if suite_ids else None),
        "task_ids": suite.get("task_ids") or sorted({o.task_id for o in outcomes}),
        "tasks_sha256": suite.get("tasks_sha256"),
        "trained_task_ids": recorded_training(config),
        "reference_ceiling": (config.get("provider") or {}).get("provider", first.get("provider")) == "oracle",
        "toolset": (config.get("agent") or {}).get("toolset") or first.get("toolset") or "files",
        "outcomes": outcomes,
        "totals": task_totals(outcomes),
        "problems": [p.reason for p in problems],
        "span_s": _span(traces),
    }


# What traces written before decoding labels did: no early stop, no constraint.
UNLABELLED_DECODING = {"early_stop": False, "constrained": None}


def run_decoding(traces: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The decoding shared by a run's traces (None without traces); {"mixed": [...]} if they differ."""
    seen: dict[str, dict[str, Any]] = {}
    for trace in traces:
        record = trace.get("decoding") if isinstance(trace.get("decoding"), dict) else UNLABELLED_DECODING
        seen.setdefault(json.dumps(record, sort_keys=True), record)
    if not seen:
        return None
    return next(iter(seen.values())) if len(seen) == 1 else {"mixed": [seen[k] for k in sorted(seen)]}


def decoding_text(decoding: dict[str, Any] | None) -> str:
    """How a run decoded, in words: 'constrained (json), early stop on'."""
    if not decoding:
        return "unknown (no traces)"
    if "mixed" in decoding:
        return "mixed: " + "; ".join(decoding_text(d) for d in decoding["mixed"])
    constraint = f"constrained ({decoding['constrained']})" if decoding.get("constrained") else "free"
    return f"{constraint}, early stop {'on' if decoding.get('early_stop') else 'off'}"


def run_label(provider: str, model: str, decoding: dict[str, Any] | None) -> str:
    """provider:model, marked when decoding was constrained (its figures are not comparable with free ones)."""
    constrained = sorted({d.get("constrained") for d in (decoding or {}).get("mixed", [decoding or {}])} - {None})
    return f"{provider}:{model}" + (f" [constrained {','.join(constrained)}]" if constrained else "")


def _span(traces: list[dict[str, Any]]) -> float | None:
    starts = [t["started_at"] for t in traces if isinstance(t.get("started_at"), (int, float))]
    ends = [t["finished_at"] for t in traces if isinstance(t.get("finished_at"), (int, float))]
    return round(max(ends) - min(starts), 3) if starts and ends else None


def build_report(run: dict[str, Any]) -> dict[str, Any]:
    config = run["config"]
    summary = summarize(run["outcomes"])
    expected = len(run["task_ids"]) * config["rollouts"] if config.get("rollouts") else None
    return {
        "schema": REPORT_SCHEMA,
        "run_dir": run["path"],
        "suite_id": run["suite_id"],
        "model": run["label"],
        "provider": config.get("provider"),
        "agent": config.get("agent"),
        "decoding": run["decoding"],
        "rollouts_per_task": config.get("rollouts"),
        "seed": config.get("seed"),
        "expected_rollouts": expected,
        "finished_rollouts": len(run["outcomes"]),
        "run_span_s": run["span_s"],
        "trained_task_overlap": sorted(set(run["trained_task_ids"]) & set(run["task_ids"])),
        "reference_ceiling": bool(run.get("reference_ceiling")),
        "overall": summary["overall"],
        "per_task": summary["per_task"],
        "problems": run["problems"],
    }


def write_report(report: dict[str, Any], json_path: Path) -> Path:
    """Write report.json and the Markdown beside it (same name, .md); returns the Markdown path."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(json_path, report)
    md_path = json_path.with_suffix(".md")
    atomic_write_text(md_path, render_report_markdown(report))
    return md_path


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_report_markdown(report: dict[str, Any]) -> str:
    o = report["overall"]
    out = [f"# Evaluation: {report['model']} on {report['suite_id']}", ""]
    done = f"{report['finished_rollouts']}" + (f" of {report['expected_rollouts']}" if report["expected_rollouts"] else "")
    out.append(f"{o['tasks']} tasks, {done} rollouts finished; run directory `{report['run_dir']}`.")
    out.append(f"\nDecoding: {decoding_text(report.get('decoding'))}."
               + (" Constrained decoding cannot emit most malformed replies, so its pass and parse-error rates are "
                  "not comparable with free decoding." if "[constrained" in report["model"] else ""))
    if report["expected_rollouts"] and report["finished_rollouts"] < report["expected_rollouts"]:
        out.append("\n**The run is incomplete**: re-run the same command to finish it.")
    if report.get("reference_ceiling"):
        out.append("\n**Reference ceiling:** the oracle knows each task's reference fix; these figures bound what the "
                   "harness lets a perfect agent score, they are not a model's result.")
    if report["trained_task_overlap"]:
        out.append(f"\n**Warning:** the model was trained on {len(report['trained_task_overlap'])} evaluated task(s): "
                   + ", ".join(report["trained_task_overlap"]))
    out += ["", "## Overall", ""]
    rows = [[name, o.get(name), desc] for name, (_, _, desc) in RATIO_METRICS.items()]
    rows += [[k, v, "chance that at least one of k rollouts passes (unbiased estimator, mean over tasks)"]
             for k, v in o.items() if k.startswith("pass@")]
    rows += [["verdicts", ", ".join(f"{k} {v}" for k, v in (o.get("verdicts") or {}).items()),
              "sealed verdicts: passed / failed / tests_missing (tests vanished) / error (run broke or was tampered with)"],
             ["refused writes (count)", o.get("refused_writes", 0), "writes to tests, test data, config or new files; refused"],
             ["parse errors (count)", o["parse_errors"], "all rollouts"],
             ["stopped early (count)", o.get("stopped_early", 0), "parse errors whose generation was cut once they could no longer parse"],
             ["loop detections (count)", o["loop_detections"], "all rollouts"],
             ["tokens in / out", f"{o['tokens_in']} / {o['tokens_out']}", "all rollouts"],
             ["rollout wall time (s)", o["wall_time_s"], "sum over rollouts"],
             ["run span (s)", report["run_span_s"], "first start to last finish"]]
    out.append(_table(["metric", "value", "meaning"], rows))
    out += ["", "Stop reasons: " + (", ".join(f"{k} {v}" for k, v in o["stop_reasons"].items()) or "-"), ""]
    out += ["## Per task", ""]
    task_rows = [[tid, t["rollouts"], t["pass_rate"], t["parse_errors"], t["parse_error_rate"], t["runs_writing_file"],
                  t.get("refused_writes", 0), t["avg_steps"], t["loop_detections"], f"{t['tokens_in']}/{t['tokens_out']}",
                  ", ".join(f"{k} {v}" for k, v in (t.get("verdicts") or {}).items() if v),
                  ", ".join(f"{k} {v}" for k, v in t["stop_reasons"].items())]
                 for tid, t in report["per_task"].items()]
    out.append(_table(["task", "runs", "pass rate", "parse errors", "per step", "wrote file", "refused writes", "avg steps",
                       "loops", "tokens in/out", "verdicts", "stop reasons"], task_rows))
    if report["problems"]:
        out += ["", "## Skipped files", ""] + [f"- {p}" for p in report["problems"]]
    return "\n".join(out) + "\n"


def render_comparison_markdown(comparison: dict[str, Any], plots: list[str]) -> str:
    c = comparison
    out = [f"# {c['candidate']['label']} vs {c['baseline']['label']} on {c['suite_id']} ({c['tasks']} tasks)", ""]
    out += [f"Baseline: `{c['baseline']['path']}`  ", f"Candidate: `{c['candidate']['path']}`", ""]
    for warning in c["warnings"]:
        out.append(f"**Warning:** {warning}\n")
    out += ["## Verdict", "", c["verdict"], ""]
    m = c["mcnemar"]
    out.append(f"Pass-rate test: {m['candidate_only']} task(s) pass only with the candidate, {m['baseline_only']} only with "
               f"the baseline; McNemar exact p = {m['p_value']:.4g} (smallest p possible with {c['tasks']} tasks: "
               f"{m['smallest_possible_p']:.3g}).")
    clustered = bool(c["method"].get("clusters"))
    out += ["", "## Metrics", "",
            f"Difference = candidate - baseline; 95% interval from a {c['method']['interval']} "
            f"({c['method']['resamples']:,} resamples, seed {c['method']['seed']}). "
            + ("McNemar's test above counts tasks, which overstates certainty when tasks share a program. " if clustered else "")
            + "An interval that contains 0 means no detectable difference.", ""]
    rows = []
    for name, v in c["metrics"].items():
        interval = "-" if v["ci_low"] is None else f"[{v['ci_low']:+.3f}, {v['ci_high']:+.3f}]"
        diff = "-" if v["difference"] is None else f"{v['difference']:+.3f}"
        direction = "lower is better" if v["lower_is_better"] else "higher is better"
        row = [name, v["baseline"], v["candidate"], diff, interval, "yes" if v["ci_excludes_zero"] else "no"]
        if clustered:
            row.append("-" if v.get("task_ci_low") is None else f"[{v['task_ci_low']:+.3f}, {v['task_ci_high']:+.3f}]")
        rows.append(row + [direction])
    header = ["metric", "baseline", "candidate", "difference", "95% CI (clusters)" if clustered else "95% CI", "CI excludes 0"]
    out.append(_table(header + (["95% CI (tasks)"] if clustered else []) + [""], rows))
    out += ["", "## Per task", ""]
    out.append(_table(["task", "baseline pass rate", "candidate pass rate", "changed"],
                      [[t["task_id"], t["baseline_pass_rate"], t["candidate_pass_rate"],
                        "yes" if t["baseline_majority"] != t["candidate_majority"] else ""] for t in c["per_task"]]))
    if plots:
        out += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    return "\n".join(out) + "\n"


def write_comparison(comparison: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """comparison.json, comparison.md and the PNG plots in `out_dir`."""
    from .plots import plot_metric_differences, plot_outcome_grid

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = [plot_metric_differences(comparison, out_dir / "metrics.png"), plot_outcome_grid(comparison, out_dir / "outcomes.png")]
    atomic_write_json(out_dir / "comparison.json", {"schema": COMPARISON_SCHEMA, **comparison})
    atomic_write_text(out_dir / "comparison.md", render_comparison_markdown(comparison, [str(p) for p in plots]))
    return {"json": out_dir / "comparison.json", "markdown": out_dir / "comparison.md",
            "metrics_plot": plots[0], "outcomes_plot": plots[1]}
