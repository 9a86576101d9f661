"""Build a suite from a folder in QuixBugs layout (the real QuixBugs checkout or the bundled suite).

One task per `python_programs/NAME.py` that has `python_testcases/test_NAME.py`. The workspace holds only
what the test needs; `correct_python_programs/NAME.py` is recorded as the reference fix and is never
copied into a workspace. Without a local checkout, `fetch_quixbugs` clones the public repository at a
pinned commit into a cache folder (gitpython), so every machine builds the same 40 tasks.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .rules import QUIXBUGS_EDITABLE, QUIXBUGS_PROTECTED
from .task import Suite, TaskSpec, TestSpec

NOT_TASKS = {"node"}
TESTCASE_HELPERS = ("load_testdata.py", "node.py")

QUIXBUGS_URL = "https://github.com/jkoppel/QuixBugs"
QUIXBUGS_COMMIT = "4257f44"  # HEAD of 2022-08-29, the snapshot SUITES.md describes


class LayoutError(ValueError):
    pass


class FetchError(RuntimeError):
    pass


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "repo-agent"


def git_error_line(exc: Exception) -> str:
    """The line of a git failure that says what went wrong (`fatal: unable to access ...`)."""
    text = str(getattr(exc, "stderr", "") or exc)
    lines = [l.strip(" '\"") for l in text.splitlines() if l.strip(" '\"")]
    fatal = [l for l in lines if l.startswith(("fatal:", "error:"))]
    return (fatal or lines or ["git failed"])[-1]


def fetch_quixbugs(cache_dir: Path | None = None, url: str = QUIXBUGS_URL, commit: str = QUIXBUGS_COMMIT) -> Path:
    """A checkout of QuixBugs at `commit` under the cache folder; cloned once, reused afterwards."""
    import git  # gitpython; imported here so the CLI starts fast

    target = Path(cache_dir or default_cache_dir()) / "quixbugs"
    if (target / ".git").is_dir():
        repo = git.Repo(target)
        if repo.head.commit.hexsha.startswith(commit):
            return target
    elif target.exists():
        raise FetchError(f"{target} exists but is not a git clone; remove it or pass --root")
    else:
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)  # left by an interrupted clone
        try:
            git.Repo.clone_from(url, partial, env={"GIT_TERMINAL_PROMPT": "0"})
        except git.GitCommandError as exc:
            raise FetchError(
                f"could not clone {url} ({git_error_line(exc)}). Offline? Clone QuixBugs elsewhere and pass its "
                f"folder: repo-agent suite build quixbugs --root /path/to/QuixBugs") from None
        partial.rename(target)  # only a complete clone takes the final name
        repo = git.Repo(target)
    try:
        repo.git.checkout(commit)
    except git.GitCommandError:
        raise FetchError(f"{target} has no commit {commit}; delete the folder to clone again") from None
    return target


def quixbugs_task(root: Path, suite_id: str, name: str, per_test_timeout: float, total_timeout: float) -> TaskSpec:
    program = f"python_programs/{name}.py"
    test_file = f"python_testcases/test_{name}.py"
    files = ["conftest.py", program, test_file]
    files += [f"python_testcases/{h}" for h in TESTCASE_HELPERS if (root / "python_testcases" / h).is_file()]
    if (root / "json_testcases" / f"{name}.json").is_file():
        files.append(f"json_testcases/{name}.json")
    return TaskSpec(
        task_id=f"{suite_id}/{name}",
        goal=(f"Fix {name} so its tests pass. The buggy program is {program}; "
              "the docstring at the end of that file says what it must do."),
        files=tuple(f for f in files if (root / f).is_file()),
        target_files=(program,),
        reference=((program, f"correct_python_programs/{name}.py"),),
        test=TestSpec(args=(test_file,), per_test_timeout=per_test_timeout, total_timeout=total_timeout),
        editable=QUIXBUGS_EDITABLE,
        protected=QUIXBUGS_PROTECTED,
    )


def build_quixbugs_suite(root: Path, suite_id: str = "quixbugs", per_test_timeout: float = 5.0,
                         total_timeout: float = 120.0) -> Suite:
    root = Path(root).resolve()
    for required in ("python_programs", "correct_python_programs", "python_testcases"):
        if not (root / required).is_dir():
            raise LayoutError(f"{root} is not in QuixBugs layout: missing folder {required}/")
    names = sorted(
        p.stem for p in (root / "python_programs").glob("*.py")
        if p.stem not in NOT_TASKS and not p.stem.endswith("_test")
        and (root / "python_testcases" / f"test_{p.stem}.py").is_file()
        and (root / "correct_python_programs" / p.name).is_file()
    )
    if not names:
        raise LayoutError(f"no tasks found under {root}/python_programs")
    tasks = tuple(quixbugs_task(root, suite_id, n, per_test_timeout, total_timeout) for n in names)
    return Suite(suite_id=suite_id, kind="quixbugs", root=root, tasks=tasks,
                 source={"layout": "quixbugs"})
