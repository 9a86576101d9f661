"""`repo-agent run`: one episode of one model on one task, with a summary of what happened."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from .. import options as O
from .common import err as console


@O.with_agent_flags
def run(
    suite: O.SuiteOpt,
    task: Annotated[str, typer.Option("--task", help="Task id (e.g. bundled/gcd) or its short name (gcd).")],
    trace_dir: Annotated[Optional[Path], typer.Option("--trace-dir", help="Where the trace goes (default runs/run_<time>).")] = None,
    *,
    flags: O.AgentFlags,
) -> None:
    """Run ONE episode of one model on one task; print a summary and the trace path."""
    from ..agent import run_episode
    from ..models import episode_model
    from ..models.base import trace_meta
    from ..suites.task import SuiteError, load_suite

    agent, provider, seed = flags.agent, flags.provider, flags.seed
    try:
        loaded = load_suite(suite)
        spec = loaded.task(task)
    except (SuiteError, KeyError) as exc:
        raise typer.BadParameter(str(exc)) from None
    try:
        llm = episode_model(provider, loaded, spec, seed=seed, toolset=agent.toolset)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    out_dir = trace_dir or Path("runs") / time.strftime("run_%Y%m%d_%H%M%S")
    trace_path = out_dir / "traces" / (spec.task_id.replace("/", "__") + "__r0.json")
    trace = run_episode(loaded, spec, llm, agent, trace_path, rollout_id=trace_path.stem, rollout_index=0, seed=seed,
                        **trace_meta(provider, agent.tool_protocol, agent.test_policy))
    _print_episode(trace, trace_path)
    raise typer.Exit(0 if trace["stop_reason"] != "harness_error" else 1)


def _print_episode(trace: dict, trace_path: Path) -> None:
    from rich.table import Table

    metrics, verdict = trace["metrics"], trace.get("verdict") or {}
    table = Table(title=f"{trace['task_id']}  ({trace['provider']}:{trace['model']})", show_header=False)
    outcome = verdict.get("outcome") or ("passed" if metrics["passed"] else "failed")
    table.add_row("verdict", "[green]PASS[/green]" if metrics["passed"] else f"[red]FAIL[/red] ({outcome})")
    table.add_row("tests", verdict.get("summary", "-"))
    if trace.get("refused_writes"):
        table.add_row("refused writes", ", ".join(f"{r['rel_path']} ({r['reason']})" for r in trace["refused_writes"]))
    table.add_row("stop reason", trace["stop_reason"])
    table.add_row("steps", str(metrics["steps"]))
    table.add_row("parse errors", f"{metrics['parse_errors']} {metrics['parse_error_kinds'] or ''}")
    decoding = trace.get("decoding") or {}
    table.add_row("decoding", f"{'constrained (' + decoding['constrained'] + ')' if decoding.get('constrained') else 'free'}, "
                              f"early stop {'on' if decoding.get('early_stop') else 'off'}")
    table.add_row("tool calls", json.dumps(metrics["tool_calls"]))
    table.add_row("loop detections", str(metrics["loop_detections"]))
    table.add_row("tokens in/out", f"{metrics['tokens_in']}/{metrics['tokens_out']}")
    table.add_row("wall time", f"{metrics['wall_time_s']:.2f}s")
    if trace.get("error"):
        table.add_row("error", str(trace["error"]).strip().splitlines()[-1][:200])
    Console().print(table)
    typer.echo(f"trace: {trace_path}")


def register(app: typer.Typer) -> None:
    app.command("run")(run)
