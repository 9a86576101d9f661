"""Build a suite from a BugsInPy checkout plus local clones of the upstream projects.

For each bug the work folder (the suite root) gets:
    <project>/<bug>/buggy/   the project at buggy_commit_id with the test files from fixed_commit_id
                             (this folder is the workspace: `base` of the task)
    <project>/<bug>/fixed/   only the files bug_patch.txt changes, patched: the reference fix, never
                             copied into a workspace
    <project>/<bug>/snapshot.json   what the snapshot was made from; a rebuild reuses matching ones
Tests run in a cached venv per (project, Python version, requirements) unless `use_current_python`.
Only the tests named in run_test.sh decide. Defective bugs are reported and skipped.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .bugsinpy_records import BugDefect, BugRecord, bug_ids, patch_changes, read_bug, read_project_info, run_test_node_ids
from .quixbugs import default_cache_dir, git_error_line
from .task import Suite, TaskSpec, TestSpec
from .venvs import VenvError, ensure_venv, find_interpreter, parse_requirements

SNAPSHOT_VERSION = 1
SETUP_TIMEOUT_S = 900


@dataclass(frozen=True)
class BuildOptions:
    work_dir: Path = field(default_factory=lambda: default_cache_dir() / "bugsinpy")
    repos_dir: Path | None = None
    use_current_python: bool = False  # skip venvs; test with the Python running repo-agent
    pythons_dir: Path | None = None
    per_test_timeout: float = 60.0
    total_timeout: float = 600.0
    bugs: tuple[str, ...] = ()  # restrict to these bug ids (all when empty)
    sandbox: str = "auto"  # setup.sh runs contained (network allowed: it may pip install)


@dataclass(frozen=True)
class Skipped:
    task_id: str
    reason: str


@dataclass
class BuildResult:
    suite: Suite
    skipped: list[Skipped]
    warnings: list[str]


def build_bugsinpy_suite(root: Path, projects: list[str], options: BuildOptions, suite_id: str = "bugsinpy",
                         on_bug: Callable[[str], None] | None = None) -> BuildResult:
    root, work = Path(root).resolve(), Path(options.work_dir).resolve()
    tasks, skipped, warnings = [], [], []
    for project in projects:
        info = read_project_info(root, project)
        ids = [b for b in bug_ids(root, project) if not options.bugs or b in options.bugs]
        try:
            repo = open_repo(project, info.get("github_url", ""), options.repos_dir, work)
        except BugDefect as exc:
            skipped += [Skipped(f"{suite_id}/{project}-{b}", str(exc)) for b in ids]
            continue
        for bug_id in ids:
            task_id = f"{suite_id}/{project}-{bug_id}"
            if on_bug:
                on_bug(task_id)
            try:
                task, notes = build_task(repo, read_bug(root, project, bug_id), work, task_id, options)
            except (BugDefect, VenvError) as exc:
                skipped.append(Skipped(task_id, str(exc)))
                continue
            tasks.append(task)
            warnings += [f"{task_id}: {n}" for n in notes]
    source = {"layout": "bugsinpy", "projects": list(projects),
              "skipped": [{"task_id": s.task_id, "reason": s.reason} for s in skipped]}
    suite = Suite(suite_id=suite_id, kind="bugsinpy", root=work, tasks=tuple(tasks), source=source)
    return BuildResult(suite=suite, skipped=skipped, warnings=warnings)


def open_repo(project: str, url: str, repos_dir: Path | None, work: Path):
    """The project's git repository: `repos_dir/<project>` if given, else a cached clone of `url`."""
    import git

    candidates = [Path(repos_dir) / project] if repos_dir else []
    candidates.append(work / "repos" / project)
    for path in candidates:
        if (path / ".git").exists() or (path / "HEAD").is_file():
            return git.Repo(path)
    if repos_dir:
        raise BugDefect(f"no git clone of {project} under {repos_dir} (expected {repos_dir}/{project})")
    if not url:
        raise BugDefect(f"project.info of {project} has no github_url and --repos-dir was not given")
    target = candidates[-1]
    try:
        git.Repo.clone_from(url, target.with_name(project + ".partial"), env={"GIT_TERMINAL_PROMPT": "0"})
    except git.GitCommandError as exc:
        shutil.rmtree(target.with_name(project + ".partial"), ignore_errors=True)
        raise BugDefect(f"could not clone {url} ({git_error_line(exc)}). Offline? Clone it yourself and pass --repos-dir") from None
    target.with_name(project + ".partial").rename(target)
    return git.Repo(target)


def build_task(repo, bug: BugRecord, work: Path, task_id: str, options: BuildOptions) -> tuple[TaskSpec, list[str]]:
    changes = patch_changes(bug.patch)
    deleted = [c.path for c in changes if c.kind == "deleted"]
    if deleted:
        raise BugDefect(f"bug_patch.txt deletes {', '.join(deleted)}; a reference fix cannot express that")
    bug_dir = work / bug.project / bug.bug_id
    buggy, fixed = bug_dir / "buggy", bug_dir / "fixed"
    stamp = {"version": SNAPSHOT_VERSION, "buggy": bug.buggy_commit, "fixed": bug.fixed_commit,
             "tests": list(bug.test_files), "patch": bug.patch}
    stamp_path = bug_dir / "snapshot.json"
    if not (stamp_path.is_file() and json.loads(stamp_path.read_text()) == stamp):
        shutil.rmtree(bug_dir, ignore_errors=True)
        try:
            snapshot(repo, bug, buggy)
            write_reference(buggy, fixed, bug.patch, [c.path for c in changes])
        except BaseException:
            shutil.rmtree(bug_dir, ignore_errors=True)  # no half-made snapshot is ever reused
            raise
        stamp_path.write_text(json.dumps(stamp, indent=1))
    node_ids = run_test_node_ids(bug.run_test, lambda rel: (buggy / rel).is_file())
    notes, python = [], None
    requirements = parse_requirements(bug.requirements)
    if requirements.skipped:
        notes.append(f"requirements skipped (cannot install offline): {', '.join(requirements.skipped)}")
    if options.use_current_python:
        if bug.setup_sh.strip():
            notes.append("setup.sh not run (--use-current-python)")
    else:
        interpreter = find_interpreter(bug.python_version or "3", options.pythons_dir)
        if interpreter.warning:
            notes.append(interpreter.warning)
        python = ensure_venv(work, bug.project, interpreter, requirements).python
        if bug.setup_sh.strip() and not (bug_dir / "setup.done").is_file():
            run_setup(bug.setup_sh, buggy, Path(python).parent, options.sandbox)
            (bug_dir / "setup.done").write_text("ok\n")
    base = f"{bug.project}/{bug.bug_id}/buggy"
    targets = tuple(c.path for c in changes)
    task = TaskSpec(
        task_id=task_id,
        goal=(f"Fix the bug in {bug.project} so these failing tests pass: {', '.join(node_ids)}. "
              "Change the project's code, not the tests."),
        files=tuple(sorted(p.name for p in buggy.iterdir() if p.name != ".git")),
        target_files=targets,
        reference=tuple((t, f"{bug.project}/{bug.bug_id}/fixed/{t}") for t in targets),
        test=TestSpec(args=node_ids, per_test_timeout=options.per_test_timeout,
                      total_timeout=options.total_timeout, python=python),
        protected=tuple(dict.fromkeys(bug.test_files)),
        meta=tuple(sorted({"project": bug.project, "bug_id": bug.bug_id, "python_version": bug.python_version,
                           "buggy_commit": bug.buggy_commit, "fixed_commit": bug.fixed_commit}.items())),
        base=base,
    )
    return task, notes


def snapshot(repo, bug: BugRecord, dest: Path) -> None:
    """The project at the buggy commit, with the named test files taken from the fixed commit."""
    import git

    try:
        buggy_commit, fixed_commit = repo.commit(bug.buggy_commit), repo.commit(bug.fixed_commit)
    except (ValueError, git.BadName, git.GitCommandError) as exc:
        raise BugDefect(f"commit not in the clone at {repo.working_dir or repo.git_dir} ({exc}); fetch it first") from None
    archive_commit(repo, buggy_commit.hexsha, dest)
    for rel in bug.test_files:
        try:
            blob = fixed_commit.tree / rel
        except KeyError:
            raise BugDefect(f"test file {rel} (bug.info) is not in the fixed commit") from None
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob.data_stream.read())


def archive_commit(repo, treeish: str, dest: Path) -> None:
    """The tree of `treeish` extracted into a new folder `dest` (no history)."""
    dest.mkdir(parents=True)
    stream = io.BytesIO()
    repo.archive(stream, treeish=treeish, format="tar")
    stream.seek(0)
    with tarfile.open(fileobj=stream) as archive:
        if hasattr(tarfile, "data_filter"):  # refuses members that would land outside dest
            archive.extractall(dest, filter="data")
        else:
            archive.extractall(dest)


def write_reference(buggy: Path, fixed: Path, patch: str, paths: list[str]) -> None:
    """Apply bug_patch.txt to copies of the files it touches; keep only those patched files."""
    with tempfile.TemporaryDirectory(prefix="repo-agent-patch-") as tmp:
        scratch = Path(tmp) / "tree"
        for rel in paths:
            if (buggy / rel).is_file():
                (scratch / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(buggy / rel, scratch / rel)
        scratch.mkdir(exist_ok=True)
        (Path(tmp) / "fix.patch").write_text(patch if patch.endswith("\n") else patch + "\n")
        # The ceiling keeps git from treating an enclosing repository as the patch's root.
        env = dict(os.environ, GIT_CEILING_DIRECTORIES=tmp)
        proc = subprocess.run(["git", "apply", "--whitespace=nowarn", str(Path(tmp) / "fix.patch")],
                              cwd=scratch, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BugDefect(f"bug_patch.txt does not apply to the buggy commit: {' | '.join(proc.stderr.strip().splitlines()[:2])}")
        for rel in paths:
            (fixed / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(scratch / rel, fixed / rel)


def run_setup(script: str, cwd: Path, venv_bin: Path, sandbox: str = "auto") -> None:
    """The bug's setup.sh, inside the sandbox: only the snapshot and the venv are writable; network is
    allowed (it may pip install), secrets are not passed."""
    from ..sandbox import interpreter_folders, resolve_sandbox
    from ..secrets import scrubbed_environ

    env = scrubbed_environ({"PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}", "VIRTUAL_ENV": str(venv_bin.parent),
                            "PIP_CONFIG_FILE": os.devnull})
    env.pop("PIP_FIND_LINKS", None)
    box = resolve_sandbox(sandbox)
    if box.isolated:
        env["HOME"] = "/tmp/home"
    command = box.wrap(["bash", "-e", "-c", script], workdir=cwd, writable=[venv_bin.parent], network=True,
                       visible=interpreter_folders(str(venv_bin / "python")))
    try:
        proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=SETUP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise BugDefect(f"setup.sh did not finish in {SETUP_TIMEOUT_S}s") from None
    if proc.returncode != 0:
        raise BugDefect(f"setup.sh failed: {' | '.join((proc.stderr or proc.stdout).strip().splitlines()[-2:])}")
