"""The `repo-agent` command line. Each command is thin wiring; heavy imports happen inside commands."""

from __future__ import annotations

from .commands import build_app

app = build_app()

if __name__ == "__main__":
    app()
