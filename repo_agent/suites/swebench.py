"""Build a suite from SWE-bench-style instance records plus local clones of their repositories.

For each instance the work folder (the suite root) gets:
    <instance>/repo/     the repository at base_commit, without upstream history: a fresh repository
                         with one commit of that tree (so `git diff` works under the bash tool set).
                         This folder is the workspace (`base` of the task); its test files are those
                         of base_commit, protected.
    <instance>/fixed/    the files the gold `patch` changes, patched: the reference fix (never copied
                         into a workspace)
    <instance>/tests/    the files the `test_patch` changes, patched: the task's sealed overlay, laid
                         over every sealed test run and never into the workspace, so the new tests
                         decide the verdict but the model never sees them
    <instance>/snapshot.json   what the snapshot was made from; a rebuild reuses matching ones
    venvs/               one cached venv per (repo, version, Python, requirements): swebench_specs.py
The verdict is SWE-bench's: resolved iff every FAIL_TO_PASS test passes and every PASS_TO_PASS test
still passes (TaskSpec.resolution, verdict.decide). The clones are hidden from test runs and shell
commands like the suite root, since their history holds the fix and the new tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .bugsinpy import BuildResult, Skipped, archive_commit
from .bugsinpy_records import BugDefect, patch_changes
from .quixbugs import default_cache_dir
from .rules import WriteRules
from .swebench_records import Instance, InstanceDefect, instance_from_record, read_records
from .swebench_specs import RepoSpec, resolve_spec
from .task import Resolution, Suite, TaskSpec, TestSpec
from .venvs import Interpreter, Requirements, VenvError, ensure_venv, find_interpreter

SNAPSHOT_VERSION = 1
COMMIT_ENV = {"GIT_AUTHOR_NAME": "repo-agent", "GIT_AUTHOR_EMAIL": "repo-agent@localhost",
              "GIT_AUTHOR_DATE": "2000-01-01T00:00:00+0000", "GIT_COMMITTER_NAME": "repo-agent",
              "GIT_COMMITTER_EMAIL": "repo-agent@localhost", "GIT_COMMITTER_DATE": "2000-01-01T00:00:00+0000",
              "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
# A model may add new modules (a fix sometimes needs one); tests, conftest files and start-up hooks stay
# protected whatever their folder (rules.DEFAULT_PROTECTED), and no new module may shadow the stdlib.
NEW_FILES = ("*.py",)


@dataclass(frozen=True)
class SwebenchOptions:
    repos_dir: Path
    work_dir: Path = field(default_factory=lambda: default_cache_dir() / "swebench")
    use_current_python: bool = False  # no venvs: tests run with the Python running repo-agent
    pythons_dir: Path | None = None
    python: str | None = None  # a chosen major.minor for every instance (wins over the table)
    specs: dict[str, Any] = field(default_factory=dict)  # the spec file's entries (swebench_specs.load_spec_file)
    per_test_timeout: float = 60.0
    total_timeout: float = 1800.0
    instances: tuple[str, ...] = ()  # only these instance ids (all when empty)


def build_swebench_suite(instances_path: Path, options: SwebenchOptions, suite_id: str = "swebench",
                         on_instance: Callable[[str], None] | None = None) -> BuildResult:
    work, repos_dir = Path(options.work_dir).resolve(), Path(options.repos_dir).resolve()
    tasks, skipped, warnings, seen = [], [], [], set()
    for index, record, problem in read_records(instances_path):
        label = str((record or {}).get("instance_id") or f"record {index}")
        if options.instances and label not in options.instances:
            continue
        task_id = f"{suite_id}/{label}"
        if on_instance:
            on_instance(task_id)
        try:
            if problem:
                raise InstanceDefect(problem)
            instance = instance_from_record(record or {})
            if instance.instance_id in seen:
                raise InstanceDefect("duplicate instance_id")
            seen.add(instance.instance_id)
            task, notes = build_instance(open_clone(instance.repo, repos_dir), instance, work, task_id, options)
        except (InstanceDefect, BugDefect, VenvError) as exc:
            skipped.append(Skipped(task_id, str(exc)))
            continue
        tasks.append(task)
        warnings += [f"{task_id}: {n}" for n in notes]
    source = {"layout": "swebench", "instances": str(Path(instances_path).resolve()), "repos_dir": str(repos_dir),
              "hidden": [str(repos_dir)], "skipped": [{"task_id": s.task_id, "reason": s.reason} for s in skipped]}
    suite = Suite(suite_id=suite_id, kind="swebench", root=work, tasks=tuple(tasks), source=source)
    return BuildResult(suite=suite, skipped=skipped, warnings=warnings)


def open_clone(repo: str, repos_dir: Path):
    """The clone of `owner/name`: <dir>/owner__name, <dir>/owner/name or <dir>/name."""
    import git

    owner, _, name = repo.partition("/")
    for path in (repos_dir / f"{owner}__{name}", repos_dir / owner / name, repos_dir / (name or owner)):
        if (path / ".git").exists() or (path / "HEAD").is_file():
            return git.Repo(path)
    raise InstanceDefect(f"no clone of {repo} under {repos_dir} (expected {repos_dir}/{owner}__{name}, "
                         f"{repos_dir}/{repo} or {repos_dir}/{name or owner})")


def _changes(patch: str, what: str) -> list:
    if not patch.strip():
        return []
    try:
        return patch_changes(patch)
    except BugDefect:
        raise InstanceDefect(f"{what} holds no file diff") from None


def build_instance(repo, instance: Instance, work: Path, task_id: str, options: SwebenchOptions) -> tuple[TaskSpec, list[str]]:
    gold, tests = _changes(instance.patch, "patch"), _changes(instance.test_patch, "test_patch")
    if not gold:
        raise InstanceDefect("the gold patch is empty: there is no reference fix")
    if any(c.kind == "deleted" for c in gold):
        raise InstanceDefect("the gold patch deletes a file; a reference fix cannot express that")
    overlap = {c.path for c in gold} & {c.path for c in tests}
    if overlap:
        raise InstanceDefect(f"patch and test_patch both change {', '.join(sorted(overlap))}")
    folder = work / _folder_name(instance.instance_id)
    snapshot = folder / "repo"
    stamp = {"version": SNAPSHOT_VERSION, "base_commit": instance.base_commit, "patch": instance.patch,
             "test_patch": instance.test_patch}
    stamp_path = folder / "snapshot.json"
    if not (stamp_path.is_file() and json.loads(stamp_path.read_text()) == stamp):
        shutil.rmtree(folder, ignore_errors=True)
        try:
            _snapshot(repo, instance.base_commit, snapshot)
            apply_to_copies(snapshot, instance.patch, [c.path for c in gold], folder / "fixed", "the gold patch")
            apply_to_copies(snapshot, instance.test_patch, [c.path for c in tests], folder / "tests", "the test_patch")
            init_repository(snapshot)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)  # no half-made snapshot is ever reused
            raise
        stamp_path.write_text(json.dumps(stamp, indent=1))
    prefix = folder.relative_to(work).as_posix()
    overlay = tuple((c.path, None if c.kind == "deleted" else f"{prefix}/tests/{c.path}") for c in tests)
    created = tuple(c.path for c in gold if c.kind == "added")
    rules = WriteRules(protected=tuple(c.path for c in tests), new_files=NEW_FILES + created)
    for change in gold:
        refusal = rules.refusal(change.path, change.kind != "added")
        if refusal:
            raise InstanceDefect(f"the gold patch changes {change.path}, which the task protects ({refusal[1]})")
    spec = resolve_spec(instance.repo, instance.version, options.specs, options.python)
    python, notes = _environment(instance, spec, snapshot, work, options)
    args = _test_args(spec, instance, tests, lambda rel: (snapshot / rel).is_file() or rel in {c.path for c in tests})
    task = TaskSpec(
        task_id=task_id,
        goal=instance.problem_statement.strip(),
        files=tuple(sorted(p.name for p in snapshot.iterdir())),
        target_files=tuple(c.path for c in gold),
        reference=tuple((c.path, f"{prefix}/fixed/{c.path}") for c in gold),
        test=TestSpec(args=args, per_test_timeout=options.per_test_timeout, total_timeout=options.total_timeout,
                      python=python, runner=spec.runner, pythonpath=spec.pythonpath),
        protected=rules.protected,
        new_files=rules.new_files,
        resolution=Resolution(fail_to_pass=instance.fail_to_pass, pass_to_pass=instance.pass_to_pass),
        sealed_overlay=overlay,
        meta=tuple(sorted({"instance_id": instance.instance_id, "repo": instance.repo, "version": instance.version,
                           "base_commit": instance.base_commit, "environment_setup_commit": instance.environment_setup_commit,
                           "created_at": instance.created_at, "log_parser": spec.log_parser}.items())),
        base=f"{prefix}/repo",
    )
    return task, notes


def _folder_name(instance_id: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", instance_id).strip("._")
    if not name or name in ("venvs", "repos"):
        raise InstanceDefect(f"instance_id {instance_id!r} cannot name a folder")
    return name


def _snapshot(repo, commit: str, dest: Path) -> None:
    import git

    try:
        sha = repo.git.rev_parse("--verify", "--quiet", f"{commit}^{{commit}}").strip()
    except (ValueError, git.BadName, git.GitCommandError):
        raise InstanceDefect(f"base_commit {commit} is not in the clone at {repo.working_dir or repo.git_dir}; fetch it first") from None
    archive_commit(repo, sha, dest)


def init_repository(folder: Path) -> None:
    """A fresh repository in `folder` with one commit of everything in it, packed (few files to copy),
    the same commit id for the same tree."""
    env = {**os.environ, **COMMIT_ENV}
    commands = [["git", "init", "-q"], ["git", "add", "-A", "-f"],
                ["git", "-c", "commit.gpgsign=false", "commit", "-q", "--no-verify", "-m", "base"],
                ["git", "repack", "-a", "-d", "-q"], ["git", "prune-packed"]]
    for command in commands:
        proc = subprocess.run(["git", "-c", "init.defaultBranch=main", "-c", "core.autocrlf=false", *command[1:]],
                              cwd=folder, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise InstanceDefect(f"could not make the workspace repository ({' '.join(command[:2])}): "
                                 f"{' | '.join(proc.stderr.strip().splitlines()[-2:])}")
    for sample in (folder / ".git" / "hooks").glob("*.sample"):
        sample.unlink()


def apply_to_copies(base: Path, patch: str, paths: list[str], out: Path, what: str) -> None:
    """`patch` applied to copies of the files of `base` it touches; the patched files land in `out`
    (a file the patch deletes lands nowhere)."""
    if not paths:
        return
    with tempfile.TemporaryDirectory(prefix="repo-agent-patch-") as tmp:
        scratch = Path(tmp) / "tree"
        scratch.mkdir()
        for rel in paths:
            if (base / rel).is_file():
                (scratch / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(base / rel, scratch / rel)
        (Path(tmp) / "change.patch").write_text(patch if patch.endswith("\n") else patch + "\n", encoding="utf-8")
        env = dict(os.environ, GIT_CEILING_DIRECTORIES=tmp)  # never the repository around the work folder
        proc = subprocess.run(["git", "apply", "--whitespace=nowarn", str(Path(tmp) / "change.patch")],
                              cwd=scratch, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise InstanceDefect(f"{what} does not apply to base_commit: {' | '.join(proc.stderr.strip().splitlines()[:2])}")
        for rel in paths:
            if (scratch / rel).is_file():
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(scratch / rel, out / rel)


def _test_args(spec: RepoSpec, instance: Instance, tests: list, exists: Callable[[str], bool]) -> tuple[str, ...]:
    """The runner's arguments: the test files the test_patch leaves (and those the listed pytest ids
    name), or for Django's runner their dotted module labels."""
    files = [c.path for c in tests if c.kind != "deleted" and c.path.endswith(".py")]
    if spec.runner == "pytest" or spec.labels == "files":
        named = [name.split("::")[0] for name in instance.fail_to_pass + instance.pass_to_pass if "::" in name]
        files = [f for f in dict.fromkeys(files + named) if exists(f)]
        if not files:
            raise InstanceDefect("no test file to run: the test_patch changes no .py file and no listed test names one")
        return tuple(spec.test_args) + tuple(files)
    labels = [f[len("tests/"):-len(".py")].replace("/", ".") for f in files if f.startswith("tests/")]
    if not labels:
        raise InstanceDefect("no Django test module to run: the test_patch changes no tests/*.py file")
    return tuple(spec.test_args) + tuple(dict.fromkeys(labels))


def _environment(instance: Instance, spec: RepoSpec, snapshot: Path, work: Path,
                 options: SwebenchOptions) -> tuple[str | None, list[str]]:
    """The test interpreter (None: the running one) and what to tell the user about it."""
    notes = []
    where = f"{instance.repo} {instance.version or '(no version)'}"
    if options.use_current_python:
        if not spec.known:
            notes.append(f"{where} is not in the environment table; tests run with pytest and the running Python "
                         "(--use-current-python: nothing installed, the repository imported from the workspace)")
        return None, notes
    if spec.python:
        interpreter = find_interpreter(spec.python, options.pythons_dir)
        if interpreter.warning:
            notes.append(interpreter.warning)
    else:
        current = f"{sys.version_info.major}.{sys.version_info.minor}"
        interpreter = Interpreter(path=sys.executable, version=current)
    if not spec.known:
        notes.append(f"{where} is not in the environment table: a venv of Python {interpreter.version} with pytest and "
                     "the repository installed from its own metadata (pip install .); tests run with pytest "
                     "(a spec file, --specs, can name the Python, requirements and runner)")
    project = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{instance.repo.replace('/', '__')}-{instance.version or 'any'}")
    venv = ensure_venv(work, project, interpreter, Requirements(lines=spec.requirements))
    if spec.install == "package":
        install_repository(Path(venv.python), snapshot)
    return venv.python, notes


def install_repository(python: Path, snapshot: Path) -> None:
    """`pip install` the repository from its own metadata into the venv, once: its dependencies and its
    metadata. Test runs import the code itself from their own copy (TestSpec.pythonpath comes first)."""
    from .venvs import _run

    marker = python.parent.parent / "repo-agent-repository.json"
    if marker.is_file():
        return
    with tempfile.TemporaryDirectory(prefix="repo-agent-install-") as tmp:
        copy = Path(tmp) / "src"
        shutil.copytree(snapshot, copy, ignore=shutil.ignore_patterns(".git"))
        _run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", str(copy)],
             f"install the repository from its metadata ({snapshot.name})")
    marker.write_text(json.dumps({"installed_from": str(snapshot)}, indent=2))
