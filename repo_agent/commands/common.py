"""What every command module shares: the error channel (stderr, lines kept whole) and how a command fails."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

err = Console(stderr=True, soft_wrap=True)  # error lines stay whole (grep-able, copy-pasteable)


def fail(message: str | list[str], code: int = 2, max_details: int = 20) -> NoReturn:
    """Print `error: <first line>` (then the other lines as a list) and exit with `code`."""
    lines = [message] if isinstance(message, str) else list(message)
    err.print(f"[red]error:[/red] {escape(lines[0])}")
    for line in lines[1:max_details + 1]:
        err.print(f"  - {escape(line)}")
    if len(lines) > max_details + 1:
        err.print(f"  ... and {len(lines) - max_details - 1} more")
    raise typer.Exit(code)


def shard_parts(shard: str | None) -> tuple[int, int] | None:
    """--shard K/N as (K, N) (None when not given); a malformed value is a usage error."""
    if not shard:
        return None
    from ..suites.split import parse_shard

    try:
        return parse_shard(shard)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
