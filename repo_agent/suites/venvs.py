"""Per-project virtual environments for benchmark test runs (BugsInPy), created once and cached.

A venv is keyed by (project, Python major.minor, hash of the normalized requirements): bugs of one
project that need the same packages share one venv (all of youtube-dl's do). pip runs with its config
isolated (PIP_CONFIG_FILE=/dev/null): old pips in 3.6 venvs otherwise pick up wheels from local wheel
folders built for newer Pythons. Requirements files of BugsInPy come in UTF-16 with CRLF and list lines
that can never install offline; those are skipped and reported, never silently dropped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

TEST_PACKAGES = ("pytest", "pytest-timeout")
UNINSTALLABLE = (re.compile(r"^-e\s+git\+"), re.compile(r"^git\+"), re.compile(r"^pkg[-_]resources\s*==\s*0\.0\.0$", re.I))
PIP_TIMEOUT_S = 900


class VenvError(RuntimeError):
    pass


@dataclass(frozen=True)
class Requirements:
    lines: tuple[str, ...]
    skipped: tuple[str, ...] = ()

    @property
    def digest(self) -> str:
        return hashlib.sha256("\n".join(sorted(self.lines)).encode()).hexdigest()[:12]


def decode_text(data: bytes) -> str:
    """UTF-16 (with or without BOM) or UTF-8, line endings normalized."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16")
    elif data[:200].count(b"\x00") > len(data[:200]) // 4:  # UTF-16 without a BOM
        text = data.decode("utf-16-le" if data[1:2] == b"\x00" else "utf-16-be")
    else:
        text = data.decode("utf-8-sig", errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def parse_requirements(data: bytes) -> Requirements:
    keep, skipped = [], []
    for raw in decode_text(data).split("\n"):
        line = raw.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        if any(p.search(line) for p in UNINSTALLABLE):
            skipped.append(line)
        else:
            keep.append(line)
    return Requirements(lines=tuple(keep), skipped=tuple(skipped))


@dataclass(frozen=True)
class Interpreter:
    path: str
    version: str  # major.minor actually used
    warning: str | None = None


def default_pythons_dir() -> Path:
    return Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"


def find_interpreter(wanted: str, pythons_dir: Path | None = None) -> Interpreter:
    """The installed Python closest to `wanted` (e.g. "3.7.0" -> ~/.pyenv/versions/3.7.16)."""
    major_minor = ".".join(wanted.strip().split(".")[:2])
    root = pythons_dir or default_pythons_dir()
    found = root.glob(f"{major_minor}.*/bin/python{major_minor}") if root.is_dir() else []
    candidates = sorted(found, key=lambda p: _version_key(p.parent.parent.name))
    exact = [c for c in candidates if c.parent.parent.name == wanted.strip()]
    chosen = (exact or candidates[-1:] or [None])[0]
    if chosen is not None:
        return Interpreter(path=str(chosen), version=major_minor)
    current = f"{sys.version_info.major}.{sys.version_info.minor}"
    return Interpreter(path=sys.executable, version=current,
                       warning=f"Python {major_minor} not found under {root}; using the current Python {current}")


def _version_key(name: str) -> tuple:
    return tuple(int(part) if part.isdigit() else -1 for part in name.split("."))


@dataclass
class VenvResult:
    python: str  # the venv's interpreter
    created: bool
    log: list[str] = field(default_factory=list)


def venv_dir(cache_dir: Path, project: str, interpreter: Interpreter, requirements: Requirements) -> Path:
    return cache_dir / "venvs" / f"{project}-py{interpreter.version}-{requirements.digest}"


def ensure_venv(cache_dir: Path, project: str, interpreter: Interpreter, requirements: Requirements) -> VenvResult:
    """Create (or reuse) the venv; a venv only counts as ready once its marker file is written."""
    folder = venv_dir(cache_dir, project, interpreter, requirements)
    python = folder / "bin" / "python"
    marker = folder / "repo-agent-venv.json"
    if marker.is_file() and python.exists():
        return VenvResult(python=str(python), created=False)
    shutil.rmtree(folder, ignore_errors=True)  # a half-made venv from a crash
    folder.parent.mkdir(parents=True, exist_ok=True)
    log = [_run([interpreter.path, "-m", "venv", str(folder)], "create the venv")]
    packages = list(TEST_PACKAGES) + list(requirements.lines)
    log.append(_run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", *packages],
                    f"install {' '.join(packages)}"))
    marker.write_text(json.dumps({"project": project, "python": interpreter.path, "version": interpreter.version,
                                  "requirements": list(requirements.lines)}, indent=2))
    return VenvResult(python=str(python), created=True, log=log)


def _run(cmd: list[str], what: str) -> str:
    # Config files and local wheel folders are what trip old pips; certificates and timeouts stay.
    env = dict(os.environ, PIP_CONFIG_FILE=os.devnull, PIP_NO_INPUT="1", PYTHONNOUSERSITE="1")
    for name in ("PIP_FIND_LINKS", "PIP_NO_INDEX", "PIP_EXTRA_INDEX_URL"):
        env.pop(name, None)
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise VenvError(f"could not {what}: timed out after {PIP_TIMEOUT_S}s") from None
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise VenvError(f"could not {what}: {tail}")
    return f"{what}: ok"
