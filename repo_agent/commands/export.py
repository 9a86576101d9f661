"""`repo-agent export ...`: runs and suites in the formats other tools read (SWE-bench harness, verl)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from .. import options as O
from .common import fail

export_app = typer.Typer(help="Export runs and suites for other tools: SWE-bench predictions, verl parquet.",
                         no_args_is_help=True)
console = Console(stderr=True)


def _suite_of_run(trace_dir: Path, suite: Path | None):
    from ..suites.task import SuiteError, load_suite

    if suite is None:
        config = trace_dir / "config.json"
        try:
            recorded = json.loads(config.read_text(encoding="utf-8")).get("suite", {}).get("path")
        except (OSError, ValueError, AttributeError):
            recorded = None
        if not recorded:
            return None
        suite = Path(recorded)
    try:
        return load_suite(suite)
    except SuiteError as exc:
        fail(str(exc))


@export_app.command("predictions")
def predictions(
    trace_dir: Annotated[Path, typer.Option("--trace-dir", help="A run folder (traces/ inside).", exists=True, file_okay=False)],
    out: Annotated[Path, typer.Option("--out", help="Predictions file to write (JSON Lines).")],
    suite: Annotated[Optional[Path], typer.Option("--suite", help="The run's suite (default: the one its config.json names); gives SWE-bench instance ids.", exists=True, dir_okay=False)] = None,
    model_name: Annotated[Optional[str], typer.Option("--model-name", help="model_name_or_path of every row (default: the trace's model).")] = None,
    rollout: Annotated[int, typer.Option("--rollout", min=0, help="Which rollout of each task becomes its prediction.")] = 0,
) -> None:
    """SWE-bench predictions (instance_id, model_name_or_path, model_patch = the final diff), one per task, for
    the official harness's --predictions_path."""
    from ..data.export import AtomicJsonl
    from ..data.swebench_export import predictions as make

    loaded = _suite_of_run(trace_dir, suite)
    rows, notes = make(trace_dir, loaded, model_name, rollout)
    for note in notes:
        console.print(f"[yellow]note:[/yellow] {escape(note)}", soft_wrap=True)
    if not rows:
        fail(f"no finished rollout {rollout} in {trace_dir}", code=1)
    with AtomicJsonl(out) as writer:
        writer.write_all(rows)
        writer.commit()
    empty = sum(1 for r in rows if not r["model_patch"])
    console.print(f"wrote {out} with {len(rows)} predictions ({empty} with an empty patch)")


@export_app.command("verl")
def verl(
    suite: O.SuiteOpt,
    out: Annotated[Path, typer.Option("--out", help="Folder for train.parquet / test.parquet.", file_okay=False)],
    toolset: Annotated[str, typer.Option("--toolset", help="Tool set whose system prompt and tools the rows carry (files, edit, bash).")] = "bash",
    tool_protocol: Annotated[str, typer.Option("--tool-protocol", help="json or native: which form of the system prompt.")] = "json",
    sandbox: O.SandboxOpt = "bwrap",
) -> None:
    """verl RLHF parquet: data_source, prompt (the tool set's system prompt + the goal), ability, reward_model
    {style: rule, ground_truth}, extra_info (split, a stable index, instance_id, tools_kwargs); one file per side."""
    from ..data.swebench_export import verl_rows, write_parquet
    from ..suites.task import SuiteError, load_suite

    if tool_protocol not in ("json", "native"):
        fail("--tool-protocol must be json or native")
    try:
        loaded = load_suite(suite)
        sides = verl_rows(loaded, str(suite.resolve()), toolset, tool_protocol, sandbox)
    except (SuiteError, ValueError) as exc:
        fail(str(exc))
    except ImportError as exc:
        fail(f"writing parquet needs the datasets package (pip install -e '.[train]'): {exc}")
    for side, rows in sorted(sides.items()):
        path = write_parquet(rows, out / f"{side}.parquet")
        console.print(f"wrote {path} with {len(rows)} {side} rows")


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")
