"""`repo-agent suite ...`: build suites from benchmark checkouts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

suite_app = typer.Typer(help="Build, split, check and validate suites of buggy programs.", no_args_is_help=True)
build_app = typer.Typer(help="Build a suite file from a benchmark checkout.", no_args_is_help=True)
suite_app.add_typer(build_app, name="build")
console = Console(stderr=True)


@build_app.command("quixbugs")
def build_quixbugs(
    root: Annotated[Path, typer.Option("--root", help="A checkout in QuixBugs layout (python_programs/, correct_python_programs/, python_testcases/).", exists=True, file_okay=False)],
    out: Annotated[Path, typer.Option("--out", help="Suite file to write.")] = Path("eval/suites/quixbugs_suite.json"),
    suite_id: Annotated[str, typer.Option("--suite-id", help="Prefix of the task ids (quixbugs/gcd).")] = "quixbugs",
    per_test_timeout: Annotated[float, typer.Option("--per-test-timeout", help="Seconds before one test is killed.")] = 5.0,
) -> None:
    """One task per buggy program that has a test file; reference fixes never enter a workspace."""
    from ..suites.quixbugs import LayoutError, build_quixbugs_suite
    from ..suites.task import save_suite

    try:
        suite = build_quixbugs_suite(root, suite_id=suite_id, per_test_timeout=per_test_timeout)
    except LayoutError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    save_suite(suite, out)
    console.print(f"wrote {out} with {len(suite.tasks)} tasks")


def register(app: typer.Typer) -> None:
    app.add_typer(suite_app, name="suite")
