"""`repo-agent view`: write a static site of runs, rollouts and steps; optionally serve it on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

console = Console(stderr=True, soft_wrap=True)


def view(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run folders (eval, prefs, pipeline stages), comparison folders "
                                                        "(report compare --out), or folders holding them one level down.")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Folder for the site (default: FIRST_RUN_DIR/view). "
                                                              "A folder with other content is refused.")] = None,
    serve: Annotated[bool, typer.Option("--serve", help="After writing, serve the site on http://127.0.0.1:PORT/ until Ctrl-C.")] = False,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port for --serve (0 picks a free one).")] = 8000,
    max_chars: Annotated[int, typer.Option("--max-chars", min=100, help="Characters shown of each text before a 'show all' button.")] = 5000,
    page_size: Annotated[int, typer.Option("--page-size", min=1, help="Tasks per page of a run's task table.")] = 50,
) -> None:
    """Write a self-contained static site (no network; opens from disk) showing runs, every rollout and every step.

    Examples:
      repo-agent view runs/base
      repo-agent view runs/base runs/finetuned --out runs/site
      repo-agent view runs/pipeline --serve --port 8000
    """
    from ..view import SiteWriteError, ViewInputError, render_site

    target = out or run_dirs[0] / "view"
    try:
        site = render_site(run_dirs, target, max_chars=max_chars, page_size=page_size)
    except (ViewInputError, SiteWriteError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    rollouts = sum(len(r.rollouts) for r in site.runs)
    console.print(f"{len(site.runs)} run(s), {rollouts} rollout(s), {len(site.comparisons)} side-by-side view(s): "
                  f"{site.pages} pages")
    typer.echo(f"site: {site.index}")
    if serve:
        _serve(site.out, port)


def _serve(root: Path, port: int) -> None:
    from ..view.serve import make_server

    try:
        server = make_server(root, port)
    except OSError as exc:
        console.print(f"[red]error:[/red] cannot listen on 127.0.0.1:{port} ({exc})")
        raise typer.Exit(2) from None
    host, bound = server.server_address[:2]
    typer.echo(f"serving http://{host}:{bound}/ (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def register(app: typer.Typer) -> None:
    app.command("view")(view)
