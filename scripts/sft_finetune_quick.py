#!/usr/bin/env python
"""Start (and optionally follow) a LoRA SFT job on Together AI; kept for users of the original script.

    python scripts/sft_finetune_quick.py --dataset data/sft.jsonl --model BASE --suffix S \
        --epochs 1 --batch-size max --learning-rate 1e-5 --lora --watch

A thin shell over `repo-agent finetune together`: same flags, same checks, same run folder record;
`--help` lists them all. The key comes from TOGETHER_API_KEY.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Runnable from a plain checkout too, not only after `pip install -e .`.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import typer  # noqa: E402

from repo_agent.commands.finetune_together import together_command  # noqa: E402

if __name__ == "__main__":
    typer.run(together_command)
