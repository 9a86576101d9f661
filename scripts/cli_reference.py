"""Write docs/reference/cli.md from the typer app: every command, its help and its options, never typed.

    .venv/bin/python scripts/cli_reference.py            # rewrite docs/reference/cli.md
    .venv/bin/python scripts/cli_reference.py --check    # exit 1 when the committed page is stale (a test runs this)
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "reference" / "cli.md"
sys.path.insert(0, str(REPO))


def _commands(group: click.Command, path: list[str]) -> list[tuple[list[str], click.Command]]:
    found = [(path, group)]
    if hasattr(group, "list_commands"):  # a group (typer's own classes do not derive from click's)
        ctx = click.Context(group, info_name=path[-1])
        for name in sorted(group.list_commands(ctx)):
            command = group.get_command(ctx, name)
            if command is None or getattr(command, "hidden", False):
                continue
            found += _commands(command, path + [name])
    return found


def _default(param: click.Parameter) -> str:
    default = param.default
    if callable(default) or default is None or default == () or param.is_flag and default is False:
        return ""
    if isinstance(default, (list, tuple)):
        default = ",".join(str(d) for d in default)
    return f"`{default}`"


def _option_row(param: click.Parameter, ctx: click.Context) -> str:
    names = " / ".join(f"`{o}`" for o in param.opts + param.secondary_opts)
    kind = "flag" if param.is_flag else str(param.display_type(ctx) or param.bare_type(ctx) or "text").strip("<>") or "text"
    if param.multiple:
        kind += ", repeatable"
    text = " ".join((param.help or "").split()).replace("|", "\\|")
    return f"| {names} | {kind} | {_default(param)} | {text} |"


def render() -> str:
    from repo_agent.cli import app
    from typer.main import get_command

    root = get_command(app)
    out = ["# Command-line reference", "",
           "Generated from the typer app by `scripts/cli_reference.py` (a test fails when this page is stale). "
           "Every command also prints this with `--help`.", ""]
    for path, command in _commands(root, ["repo-agent"]):
        if hasattr(command, "list_commands") and path != ["repo-agent"]:
            out += [f"## `{' '.join(path)}`", "", inspect.cleandoc(command.help or "").split("\n")[0], ""]
            continue
        if path == ["repo-agent"]:
            out += [inspect.cleandoc(command.help or ""), ""]
            continue
        arguments = [p for p in command.params if p.param_type_name == "argument"]
        usage = " ".join(path + [a.name.upper() for a in arguments] + ["[OPTIONS]"])
        out += [f"### `{' '.join(path)}`", "", f"    {usage}", ""]
        help_text = inspect.cleandoc(command.help or "").strip()
        if help_text:
            out += [help_text.replace("\b\n", ""), ""]
        options = [p for p in command.params if p.param_type_name == "option" and p.name != "help"]
        if options:
            ctx = click.Context(command, info_name=path[-1])
            out += ["| option | type | default | meaning |", "|---|---|---|---|"] + [_option_row(p, ctx) for p in options] + [""]
    return "\n".join(out).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not PAGE.is_file() or PAGE.read_text(encoding="utf-8") != text:
            print(f"{PAGE} is stale: run .venv/bin/python scripts/cli_reference.py", file=sys.stderr)
            raise SystemExit(1)
        print(f"{PAGE} is up to date")
        return
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE}")


if __name__ == "__main__":
    main()
