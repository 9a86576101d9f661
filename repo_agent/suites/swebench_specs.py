"""How the tests of a SWE-bench repository/version run without Docker: the environment table.

One entry per (repo, version): the Python it wants, pip requirements installed before the repository,
how the repository itself is installed (from its own metadata), the runner and its fixed arguments, the
workspace folders put first on the import path, and the log parser the official harness uses for it.
A spec file (`--specs FILE`, JSON in the same shape) overrides or extends the table:

    {"owner/repo": {"*": {...defaults for every version...}, "1.2": {...}}}

A repo/version the table does not know still builds: a venv of the running (or `--python`) Python with
pytest, the repository installed from its own metadata, tests run with pytest; the builder says so once
per instance.

What the table holds are facts about the upstream projects (Python per Django version, each project's
runner), written from SWE-bench's published environment specifications. None of these repositories
can be cloned on this offline machine, so no entry was run here; the mechanism is tested on
repositories made in the tests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

INSTALL_MODES = ("package", "none")  # package: `pip install <the repository at its base commit>`
RUNNERS = ("pytest", "unittest")
LABEL_RULES = ("files", "django")  # how the test_patch's files become runner arguments


@dataclass(frozen=True)
class RepoSpec:
    python: str | None = None  # major.minor; None = the running Python
    requirements: tuple[str, ...] = ()  # pip lines, installed before the repository
    install: str = "package"
    runner: str = "pytest"
    test_args: tuple[str, ...] = ()  # fixed arguments before the test labels (unittest: the script first)
    labels: str = "files"  # files: test files as pytest paths; django: tests/a/b.py -> a.b
    pythonpath: tuple[str, ...] = (".",)  # workspace folders first on the import path ("src" for src layouts)
    log_parser: str = "pytest"  # the official harness's parser for this repo (recorded in the task's meta)
    known: bool = True  # False: the fallback for a repo/version not in the table

    def check(self, where: str) -> "RepoSpec":
        problems = []
        if self.install not in INSTALL_MODES:
            problems.append(f"install must be one of {', '.join(INSTALL_MODES)}")
        if self.runner not in RUNNERS:
            problems.append(f"runner must be one of {', '.join(RUNNERS)}")
        if self.labels not in LABEL_RULES:
            problems.append(f"labels must be one of {', '.join(LABEL_RULES)}")
        if self.runner == "unittest" and not self.test_args:
            problems.append("a unittest runner needs test_args naming its script (or -m module)")
        if problems:
            raise ValueError(f"environment spec {where}: " + "; ".join(problems))
        return self


_DJANGO = {"runner": "unittest", "labels": "django", "log_parser": "django",
           "test_args": ["tests/runtests.py", "--verbosity", "2", "--settings=test_sqlite", "--parallel", "1"]}

# repo -> version ("*" = every version not listed) -> fields of RepoSpec
TABLE: dict[str, dict[str, dict[str, Any]]] = {
    "django/django": {
        "*": {**_DJANGO, "python": "3.6"},
        **{v: {**_DJANGO, "python": "3.5"} for v in ("1.9", "1.10", "1.11", "2.0", "2.1", "2.2")},
        **{v: {**_DJANGO, "python": "3.6"} for v in ("3.0", "3.1", "3.2")},
        "4.0": {**_DJANGO, "python": "3.8"},
        "4.1": {**_DJANGO, "python": "3.9"},
        "4.2": {**_DJANGO, "python": "3.9"},
        "5.0": {**_DJANGO, "python": "3.11"},
    },
    "psf/requests": {"*": {"python": "3.9"}},
    "pallets/flask": {"*": {"python": "3.9"}, "2.3": {"python": "3.11"}},
    "pytest-dev/pytest": {"*": {"python": "3.9", "pythonpath": ["src"]}},
    "marshmallow-code/marshmallow": {"*": {"python": "3.9", "pythonpath": ["src"]}},
}


def _spec(values: dict[str, Any], where: str) -> RepoSpec:
    names = {f.name for f in fields(RepoSpec)} - {"known"}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"environment spec {where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    data = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return RepoSpec(**data).check(where)


def load_spec_file(path: Path) -> dict[str, dict[str, dict[str, Any]]]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"spec file {path} not found") from None
    except ValueError as exc:
        raise ValueError(f"spec file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) and all(isinstance(e, dict) for e in v.values())
                                             for v in data.values()):
        raise ValueError(f"spec file {path}: expected {{\"owner/repo\": {{\"version\": {{...}}}}}}")
    for repo, versions in data.items():
        for version, values in versions.items():
            _spec(values, f"{repo} {version} in {path}")
    return data


def resolve_spec(repo: str, version: str, overrides: dict[str, dict[str, dict[str, Any]]] | None = None,
                 python: str | None = None) -> RepoSpec:
    """The spec of `repo` at `version`: the override file's entry, else the table's, else the fallback.
    `python` (a chosen major.minor) wins over what the entry says."""
    for table in (overrides or {}, TABLE):
        versions = table.get(repo)
        if versions is None:
            continue
        values = versions.get(str(version), versions.get("*"))
        if values is not None:
            spec = _spec(values, f"{repo} {version}")
            return replace(spec, python=python) if python else spec
    return RepoSpec(python=python, known=False)

