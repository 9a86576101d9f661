"""`repo-agent finetune ...`: LoRA fine-tuning, local (TRL + PEFT) and hosted (Together)."""

from __future__ import annotations

import typer

finetune_app = typer.Typer(help="Fine-tune with LoRA: locally with TRL + PEFT, or hosted on Together AI.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    from . import finetune_local, finetune_together

    finetune_local.register(finetune_app)
    finetune_together.register(finetune_app)
    app.add_typer(finetune_app, name="finetune")
