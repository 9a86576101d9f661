"""`repo-agent eval` (parallel, resumable rollouts + report) and `repo-agent report show|compare`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from .. import options as O

report_app = typer.Typer(help="Re-render a run's report from its traces, or compare two runs with confidence intervals.",
                         no_args_is_help=True)
console = Console(stderr=True, soft_wrap=True)  # error lines stay whole (grep-able, copy-pasteable)


@O.with_agent_flags
def evaluate(
    suite: O.SuiteOpt,
    trace_dir: Annotated[Path, typer.Option("--trace-dir", help="Run directory: config.json, traces/, results.jsonl, report. Re-running the same command resumes it.")],
    report: Annotated[Optional[Path], typer.Option("--report", help="Where report.json goes (report.md is written beside it). Default: TRACE_DIR/report.json.")] = None,
    rollouts: Annotated[int, typer.Option("--rollouts", min=1, help="Episodes per task; > 1 also reports pass@k.")] = 1,
    num_workers: Annotated[int, typer.Option("--num-workers", min=1, help="Rollouts in parallel (threads; test runs are capped at one per core).")] = 4,
    redo: Annotated[bool, typer.Option("--redo", help="Delete this run's traces and results and start over.")] = False,
    trained_tasks: Annotated[Optional[Path], typer.Option("--trained-tasks", exists=True, dir_okay=False, help='JSON {"task_ids": [...]} the model was trained on (local adapters and fine-tunes made by `finetune together` are found without it).')] = None,
    allow_oracle: Annotated[bool, typer.Option("--allow-oracle", help="Evaluate the oracle (which knows the reference fixes) on held-out tasks: the report is labelled a reference ceiling.")] = False,
    allow_trained_tasks: Annotated[bool, typer.Option("--allow-trained-tasks", help="Evaluate a model on tasks it was trained on (refused otherwise: that measures memory, not skill).")] = False,
    allow_train_split: Annotated[bool, typer.Option("--allow-train-split", help="Evaluate on the train side of a split (refused otherwise).")] = False,
    shard: O.ShardOpt = None,
    *,
    flags: O.AgentFlags,
) -> None:
    """Run every task of a suite ROLLOUTS times in parallel, then write report.json and report.md.

    Example: repo-agent eval --suite eval/suites/bundled_suite.json --trace-dir runs/oracle --rollouts 2
    """
    from ..evaluate.report import build_report, load_run, write_report
    from ..rollouts import RunConfigMismatch, run_rollouts
    from ..suites.task import SuiteError, load_suite

    agent, provider, seed, adapter = flags.agent, flags.provider, flags.seed, flags.adapter
    try:
        loaded = load_suite(suite)
    except SuiteError as exc:
        raise typer.BadParameter(str(exc)) from None
    extra: dict[str, Any] = {"command": "eval"}
    _check_honest(loaded, provider, allow_oracle, allow_train_split)
    loaded = apply_shard(loaded, shard, extra)
    from ..provenance import trained_tasks as known_training

    try:
        trained = known_training(provider.model if provider.provider in ("openai", "together") else None, adapter, trained_tasks)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    overlap = sorted(set(trained["task_ids"]) & set(loaded.task_ids))
    if overlap and not allow_trained_tasks:
        console.print(f"[red]error:[/red] the model was trained on {len(overlap)} task(s) of this suite "
                      f"({', '.join(overlap[:5])}{'...' if len(overlap) > 5 else ''}; from {'; '.join(trained['sources'])}): "
                      "scores on them measure memory, not skill. Evaluate on the held-out side, or pass --allow-trained-tasks.")
        raise typer.Exit(2)
    if trained_tasks:
        extra["trained_tasks_file"] = str(trained_tasks.resolve())
    if adapter:
        # copied now, so `report compare` can still check when the adapter folder has moved
        extra["adapter"] = str(adapter.resolve())
    if trained["task_ids"]:
        extra["trained_task_ids"] = trained["task_ids"]
        extra["trained_task_sources"] = trained["sources"]
    if provider.provider == "oracle":
        extra["reference_ceiling"] = True
    if trained["test_policies"] and agent.test_policy not in trained["test_policies"]:
        warning = (f"the model was trained on rollouts with test policy {', '.join(trained['test_policies'])} but is "
                   f"evaluated with --test-policy {agent.test_policy}: it learnt to expect [TESTS ...] lines it will "
                   "not see (or the reverse)")
        console.print(f"[yellow]warning:[/yellow] {warning}")
        extra["warnings"] = [warning]
    try:
        result = run_rollouts(loaded, provider, agent, trace_dir, rollouts=rollouts, num_workers=num_workers, seed=seed,
                              redo=redo, extra_config=extra)
    except RunConfigMismatch as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except ValueError as exc:  # provider could not be built (no API key, missing script file, ...)
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    for problem in result.problems:
        console.print(f"[yellow]repaired:[/yellow] {problem}")
    built = build_report(load_run(trace_dir))
    md_path = write_report(built, report or trace_dir / "report.json")
    console.print(f"{result.ran} rollouts run, {result.skipped_existing} already finished"
                  + (f", {result.repaired} repaired" if result.repaired else "") + f" in {result.wall_time_s:.1f}s")
    print_summary(built)
    Console().print(f"report: {report or trace_dir / 'report.json'} and {md_path}")


def apply_shard(suite: Any, shard: str | None, extra: dict[str, Any]) -> Any:
    """The suite's tasks in shard K/N (recorded in the run's config, with what `report merge` checks)."""
    if not shard:
        return suite
    from ..rollouts import tasks_sha256
    from ..suites.split import shard_suite
    from .common import shard_parts

    index, count = shard_parts(shard)
    part = shard_suite(suite, (index, count))
    extra["shard"] = {"index": index, "count": count, "suite_tasks_sha256": tasks_sha256(suite),
                      "suite_task_ids": suite.task_ids}
    console.print(f"shard {index}/{count}: {len(part.tasks)} of the suite's {len(suite.tasks)} tasks")
    return part


def _check_honest(suite: Any, provider: Any, allow_oracle: bool, allow_train_split: bool) -> None:
    """Refuse the evaluations that cannot mean what a reader will take them to mean."""
    from ..suites.split import held_out_ids

    side = (suite.derived_from or {}).get("side")
    recorded_train = [t.task_id for t in suite.tasks if t.split == "train"]
    if (side == "train" or recorded_train) and not allow_train_split:
        what = "is the train side of a split" if side == "train" else f"has {len(recorded_train)} train-side task(s) (e.g. {recorded_train[0]})"
        console.print(f"[red]error:[/red] {suite.suite_id} {what}: models are trained on these tasks. "
                      "Evaluate the test side, or pass --allow-train-split.")
        raise typer.Exit(2)
    held = held_out_ids(suite)
    if provider.provider == "oracle" and held and not allow_oracle:
        console.print(f"[red]error:[/red] the oracle knows the reference fixes; {len(held)} task(s) of {suite.suite_id} are "
                      f"held out (e.g. {held[0]}), where its pass rate is a ceiling, not a result. Pass --allow-oracle to "
                      "compute that reference ceiling (the report says so).")
        raise typer.Exit(2)


def print_summary(report: dict[str, Any]) -> None:
    from rich.table import Table

    from ..evaluate.report import decoding_text, fmt

    o = report["overall"]
    table = Table(title=f"{report['model']} on {report['suite_id']}: {report['finished_rollouts']} rollouts, {o['tasks']} tasks")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in ("pass_rate", *[k for k in o if k.startswith("pass@")], "parse_error_rate", "runs_with_parse_error",
                 "runs_writing_file", "loop_detections_per_run", "avg_steps", "tokens_in_per_run", "tokens_out_per_run",
                 "wall_time_s_per_run"):
        table.add_row(name, fmt(o.get(name)))
    table.add_row("parse errors", str(o["parse_errors"]) + (f" ({o['stopped_early']} stopped early)" if o.get("stopped_early") else ""))
    table.add_row("decoding", decoding_text(report.get("decoding")))
    table.add_row("stop reasons", ", ".join(f"{k} {v}" for k, v in o["stop_reasons"].items()) or "-")
    Console().print(table)
    for warning in report.get("problems", []):
        console.print(f"[yellow]skipped:[/yellow] {warning}")
    if report.get("trained_task_overlap"):
        console.print(f"[yellow]warning:[/yellow] the model was trained on {len(report['trained_task_overlap'])} evaluated task(s)")
    if report.get("reference_ceiling"):
        console.print("[yellow]note:[/yellow] the oracle knows the reference fixes: this is a reference ceiling, not a model's result")


@report_app.command("show")
def show(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `repo-agent eval` (or any folder with traces/).", exists=True, file_okay=False)],
    out: Annotated[Optional[Path], typer.Option("--out", help="report.json to write (report.md beside it). Default: RUN_DIR/report.json.")] = None,
) -> None:
    """Recompute a run's metrics from its traces alone and re-write report.json / report.md."""
    from ..evaluate.report import RunDirError, build_report, load_run, write_report

    try:
        built = build_report(load_run(run_dir))
    except RunDirError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    md_path = write_report(built, out or run_dir / "report.json")
    print_summary(built)
    Console().print(f"report: {out or run_dir / 'report.json'} and {md_path}")


@report_app.command("merge")
def merge(
    runs: Annotated[list[Path], typer.Argument(help="The shard run folders (`eval --shard K/N` or `prefs --shard K/N`, one per K).", exists=True, file_okay=False)],
    out: Annotated[Path, typer.Option("--out", help="New folder for the merged run (config.json, traces/, results.jsonl, report).")],
) -> None:
    """Join the shards of one run into the run the unsharded command makes; refuses overlaps, missing shards,
    unfinished shards and mixed settings.

    Example: repo-agent report merge runs/eval_s1 runs/eval_s2 runs/eval_s3 --out runs/eval"""
    from ..evaluate.merge import MergeError, merge_runs
    from ..evaluate.report import build_report, load_run, write_report

    try:
        merged = merge_runs(list(runs), out)
    except MergeError as exc:
        console.print(f"[red]error:[/red] cannot merge: {exc}")
        raise typer.Exit(2) from None
    built = build_report(load_run(out))
    md_path = write_report(built, out / "report.json")
    print_summary(built)
    Console().print(f"merged {merged['merged_from']['shards']} shards into {out}; report: {out / 'report.json'} and {md_path}")


@report_app.command("compare")
def compare(
    baseline: Annotated[Path, typer.Argument(help="Baseline run directory.", exists=True, file_okay=False)],
    candidate: Annotated[Path, typer.Argument(help="Candidate run directory (same suite).", exists=True, file_okay=False)],
    out: Annotated[Optional[Path], typer.Option("--out", help="Folder for comparison.json, comparison.md, metrics.png, outcomes.png. Default: CANDIDATE/comparison.")] = None,
    resamples: Annotated[int, typer.Option("--resamples", min=100, help="Paired bootstrap resamples over tasks.")] = 10_000,
    bootstrap_seed: Annotated[int, typer.Option("--bootstrap-seed", help="Seed of the bootstrap (results are reproducible).")] = 0,
    allow_trained_tasks: Annotated[bool, typer.Option("--allow-trained-tasks", help="Compare even when a model was trained on evaluated tasks (refused otherwise).")] = False,
    clusters: Annotated[str, typer.Option("--clusters", help="auto: tasks made from one program (the same split key: a synthesized suite's mutants of one source) are resampled together (a cluster bootstrap), with the task bootstrap beside it | tasks: resample tasks.")] = "auto",
) -> None:
    """Candidate minus baseline for every metric with a 95% paired-bootstrap interval, plus McNemar's exact test
    for pass rate. Refuses runs of different suites; warns when a model was trained on evaluated tasks."""
    from rich.table import Table

    from ..evaluate.compare import IncomparableRuns, compare_runs
    from ..evaluate.report import RunDirError, fmt, load_run, write_comparison

    if clusters not in ("auto", "tasks"):
        raise typer.BadParameter(f"--clusters must be auto or tasks, got {clusters!r}")
    try:
        base_run, cand_run = load_run(baseline), load_run(candidate)
        comparison = compare_runs(base_run, cand_run, resamples=resamples, seed=bootstrap_seed,
                                  allow_trained_tasks=allow_trained_tasks,
                                  clusters={**base_run["clusters"], **cand_run["clusters"]} if clusters == "auto" else None)
    except (RunDirError, IncomparableRuns) as exc:
        console.print(f"[red]error:[/red] cannot compare: {exc}")
        raise typer.Exit(2) from None
    paths = write_comparison(comparison, out or candidate / "comparison")
    for warning in comparison["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    table = Table(title=f"{comparison['candidate']['label']} vs {comparison['baseline']['label']} ({comparison['tasks']} tasks)")
    for column in ("metric", "baseline", "candidate", "difference", "95% CI"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for name, v in comparison["metrics"].items():
        interval = "-" if v["ci_low"] is None else f"[{v['ci_low']:+.3f}, {v['ci_high']:+.3f}]"
        diff = "-" if v["difference"] is None else f"{v['difference']:+.3f}"
        table.add_row(name, fmt(v["baseline"]), fmt(v["candidate"]), diff, interval)
    Console().print(table)
    Console().print(comparison["verdict"])
    Console().print(f"wrote {paths['markdown']}, {paths['json']}, {paths['metrics_plot']}, {paths['outcomes_plot']}")


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)
    app.add_typer(report_app, name="report")
