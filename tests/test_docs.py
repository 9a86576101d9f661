"""The front door and the documentation site: a short README whose commands parse with the real CLI, a
CLI reference that matches the typer app, `mkdocs build --strict`, and a built site that works from disk
without a single request leaving the machine."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from typer.main import get_command

from browser import Recorder, chromium
from repo_agent.cli import app

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
README_LIMIT = 12_000


def command_lines(markdown: str) -> list[str]:
    """The `repo-agent ...` command lines of a markdown text: code blocks (continuations joined) and
    inline code spans."""
    lines, pending = [], ""
    for raw in markdown.splitlines():
        if not raw.startswith("    "):
            lines += re.findall(r"`((?:\.venv/bin/)?repo-agent [^`]+)`", raw)
        text = raw.strip()
        if pending:
            pending += " " + text.rstrip("\\").strip()
            if not text.endswith("\\"):
                lines.append(pending)
                pending = ""
            continue
        in_code = raw.startswith("    ") or text.startswith("repo-agent ")
        if in_code and text.startswith(("repo-agent ", ".venv/bin/repo-agent ")):
            if text.endswith("\\"):
                pending = text.rstrip("\\").strip()
            else:
                lines.append(text)
    return lines


def parse_problem(line: str) -> str | None:
    """None when the real CLI's parser accepts the line (subcommands exist, every option is known and
    given its values); otherwise what is wrong. Values are not converted (paths need not exist)."""
    words = shlex.split(line, comments=True)[1:]
    command: click.Command = get_command(app)
    path = ["repo-agent"]
    while hasattr(command, "list_commands"):
        if not words or words[0].startswith("-"):
            return f"{' '.join(path)} needs a subcommand"
        context = click.Context(command, info_name=path[-1])
        sub = command.get_command(context, words[0])
        if sub is None:
            return f"{' '.join(path)} has no command {words[0]!r}"
        path.append(words.pop(0))
        command = sub
    context = click.Context(command, info_name=path[-1])
    try:  # the command's own parser: option names, flag or value, arguments; no value conversion
        _, extra, _ = command.make_parser(context).parse_args(args=list(words))
    except Exception as error:  # typer vendors click: its UsageError is not click's
        if not hasattr(error, "format_message"):
            raise
        return f"{' '.join(path)}: {error.format_message()}"
    return f"{' '.join(path)}: unexpected arguments {extra}" if extra else None


def test_readme_is_a_front_door():
    text = README.read_text(encoding="utf-8")
    assert len(text) <= README_LIMIT, f"README.md has {len(text)} characters; the limit is {README_LIMIT}"
    for heading in ("## Quickstart", "## Use it on your own model", "## Results", "## Documentation"):
        assert heading in text
    assert "bash scripts/main.sh" in text and "bash scripts/test.sh" in text


def test_every_readme_command_line_parses_with_the_real_cli():
    lines = command_lines(README.read_text(encoding="utf-8"))
    assert len(lines) >= 8
    assert [(line, problem) for line in lines if (problem := parse_problem(line))] == []


def test_the_command_line_check_catches_what_it_is_for():
    assert parse_problem("repo-agent eval --suite s.json --trace-dir runs/x --llm-provider oracle") is None
    assert "no such option" in parse_problem("repo-agent eval --suite s.json --no-such-flag").lower()
    assert "has no command 'evaluate'" in parse_problem("repo-agent evaluate --suite s.json")
    assert "requires an argument" in parse_problem("repo-agent eval --suite")
    assert "unexpected arguments ['b.json']" in parse_problem("repo-agent eval --suite a.json b.json")
    assert parse_problem("repo-agent suite") == "repo-agent suite needs a subcommand"
    assert command_lines("    repo-agent suite split --suite a.json \\\n        --train-pct 80   # side\ntext repo-agent x\n"
                         "| `repo-agent view RUN --serve` | a site |\n") == [
        "repo-agent suite split --suite a.json --train-pct 80   # side", "repo-agent view RUN --serve"]


def test_the_cli_reference_is_generated_from_the_app():
    result = subprocess.run([sys.executable, "scripts/cli_reference.py", "--check"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    page = (REPO / "docs" / "reference" / "cli.md").read_text(encoding="utf-8")
    for command in ("### `repo-agent eval`", "### `repo-agent suite synth`", "### `repo-agent report merge`", "`--shard`"):
        assert command in page


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    if shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None:
        message = "mkdocs is missing: pip install -e '.[docs]' (scripts/setup.sh does it)"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    out = tmp_path_factory.mktemp("docs") / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=REPO,
                            capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-4000:]
    return out


def test_mkdocs_builds_strictly_with_every_page_in_the_navigation(site):
    nav_pages = {p.relative_to(REPO / "docs").with_suffix(".html").as_posix() for p in (REPO / "docs").rglob("*.md")
                 if "results" not in p.relative_to(REPO / "docs").parts}
    built = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    assert nav_pages <= built
    assert {"index.html", "verdict.html", "reference/cli.html"} <= nav_pages


def test_the_built_site_works_from_disk_without_the_network(site):
    shots = os.environ.get("REPO_AGENT_DOCS_SCREENSHOTS")  # e.g. docs/: refresh the committed screenshots
    with chromium() as browser:
        for name, shot in (("index.html", "site_home.png"), ("verdict.html", "site_verdict.png")):
            recorder = Recorder()
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            recorder.attach(page)
            page.goto((site / name).as_uri())
            page.wait_for_load_state("networkidle")
            assert page.locator("nav.md-nav").count() > 0  # Material's navigation rendered
            assert page.locator("h1").first.inner_text().strip()
            if shots:
                page.screenshot(path=str(REPO / shots / shot))
            if name == "index.html":  # search runs on the bundled index, with no server
                page.locator(".md-search__input").click()
                page.keyboard.type("verdict", delay=20)  # Material searches on key events
                page.wait_for_selector(".md-search-result__item", timeout=10_000)
                if shots:
                    page.screenshot(path=str(REPO / shots / "site_search.png"))
            context.close()
            assert recorder.foreign == [], f"{name} made requests off the machine: {recorder.foreign}"
            assert recorder.errors == [], recorder.errors
            assert recorder.requests, "the recorder saw no request at all"
