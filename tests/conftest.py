"""Shared fixtures. Tests run the real CLI and real subprocesses; only remote services are faked."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent
BUNDLED_SUITE = REPO / "eval" / "suites" / "bundled_suite.json"
BUNDLED_ROOT = REPO / "eval" / "suites" / "bundled"


@pytest.fixture
def bundled_suite_path() -> Path:
    return BUNDLED_SUITE


@pytest.fixture
def cli():
    """Invoke `repo-agent ARGS...` in-process; returns the click Result."""
    from repo_agent.cli import app

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return invoke


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under root (for byte-identity checks)."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }
