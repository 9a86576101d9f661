"""Jinja2 set-up and the page writer.

Everything a run holds is untrusted (model output, tool output, file contents, task goals, error
messages), so autoescaping is on for every template, whatever its name (Jinja2's own default is off),
and the only JSON put in a page goes through Jinja2's `tojson`, which escapes <, >, & and ' so that a
`</script>` inside a text cannot end the script element holding it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..evaluate.report import fmt
from .rollout import as_text, split_diff


class SiteWriteError(ValueError):
    """The output folder cannot be used (a file, or a folder with other content in it)."""


@dataclass(frozen=True)
class Clipped:
    shown: str
    total: int
    ref: str | None  # key of the full text in the page's JSON when the shown text was capped
    id: str  # DOM id of the element showing it


class Clipper:
    """Caps every text shown on one page at `limit` characters and keeps the full texts of the capped
    ones, which the page carries as JSON for its "show all" buttons."""

    def __init__(self, limit: int):
        self.limit = limit
        self.full: dict[str, str] = {}
        self._count = 0

    def __call__(self, value: Any, limit: int | None = None) -> Clipped:
        text = as_text(value)
        cap = limit or self.limit
        self._count += 1
        element = f"text-{self._count}"
        if len(text) <= cap:
            return Clipped(text, len(text), None, element)
        ref = f"t{len(self.full)}"
        self.full[ref] = text
        return Clipped(text[:cap], len(text), ref, element)


def environment() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(loader=PackageLoader("repo_agent.view", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.globals.update(fmt=fmt, split_diff=split_diff)
    return env


class PageWriter:
    """Renders templates into files under `out`; refuses any path that would leave it."""

    def __init__(self, out: Path, max_chars: int, generated_by: str):
        self.out = out.resolve()
        self.max_chars = max_chars
        self.generated_by = generated_by
        self.env = environment()
        self.pages = 0

    def path(self, rel: str) -> Path:
        target = (self.out / rel).resolve()
        if target != self.out and self.out not in target.parents:
            raise SiteWriteError(f"refusing to write {rel!r}: outside {self.out}")
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def page(self, rel: str, template: str, **context: Any) -> Path:
        depth = rel.count("/")
        clip = Clipper(self.max_chars)
        html = self.env.get_template(template).render(root="../" * depth, clip=clip, generated_by=self.generated_by,
                                                        **context)
        target = self.path(rel)
        target.write_text(html, encoding="utf-8")
        self.pages += 1
        return target

    def copy(self, source: Path, rel: str) -> Path:
        import shutil

        target = self.path(rel)
        shutil.copyfile(source, target)
        return target


STATIC_FILES = ("view.css", "view.js", "favicon.svg")


def static_text(name: str) -> str:
    from importlib.resources import files

    return files("repo_agent.view").joinpath("static", name).read_text(encoding="utf-8")
