"""Command groups of the CLI, one module per area; each exposes `register(app)`."""

from __future__ import annotations

import importlib

import typer

COMMAND_MODULES = ("run", "suite", "evaluate", "data", "export", "finetune", "rl", "pipeline", "view")


def build_app() -> typer.Typer:
    """The whole `repo-agent` command tree (the pipeline builds one too, to run its stages in-process)."""
    app = typer.Typer(
        help="Teach small models to follow a JSON tool protocol for repo fixing: rollouts, step-level data, LoRA, evaluation.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(app)
    return app
