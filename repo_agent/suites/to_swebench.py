"""BugsInPy bugs as SWE-bench instance records, so the real bugs the project already handles run through
the SWE-bench judge (and the official harness's formats).

Per bug: base_commit = the buggy commit, patch = bug_patch.txt, test_patch = the diff of the bug's test
files from the buggy to the fixed commit, FAIL_TO_PASS = the tests run_test.sh names, PASS_TO_PASS =
the other tests of those files that pass both without the fix and with it (two sealed runs of the whole
files, in the bug's venv, as SWE-bench's own validation decides it), version = the bug's Python
(major.minor, so a spec file can key an environment by it), problem_statement = the BugsInPy task's goal
(BugsInPy has no issue text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Callable

from ..workspace import TaskWorkspace
from .bugsinpy import BuildOptions, Skipped, build_bugsinpy_suite, open_repo
from .bugsinpy_records import read_bug, read_project_info
from .swebench_records import Instance
from .task import Suite, TaskSpec


@dataclass
class Conversion:
    instances: list[Instance]
    skipped: list[Skipped]
    warnings: list[str]


def github_repo(url: str, project: str) -> str:
    """owner/name of a GitHub URL (the project name alone when there is none)."""
    match = re.search(r"github\.com[/:]([^/]+)/([^/#?]+?)(?:\.git)?/?$", url.strip())
    return f"{match.group(1)}/{match.group(2)}" if match else project


def _test_files(task: TaskSpec) -> tuple[str, ...]:
    return tuple(dict.fromkeys(a.split("::")[0] for a in task.test.args if not a.startswith("-")))


def _statuses(suite: Suite, task: TaskSpec, fixed: bool, sandbox: str) -> dict[str, str]:
    """Per-test statuses of a sealed run of the whole test files, without or with the reference fix."""
    whole = replace(task, test=replace(task.test, args=_test_files(task)), expected_tests=None)
    with TaskWorkspace.create(suite, whole, sandbox) as env:
        if fixed:
            for path, text in suite.reference_text(whole).items():
                (env.root / path).write_text(text, encoding="utf-8")
        return env.run_tests(fail_fast=False).tests


def convert_bugsinpy(root, projects: list[str], options: BuildOptions, sandbox: str = "auto",
                     on_bug: Callable[[str], None] | None = None) -> Conversion:
    built = build_bugsinpy_suite(root, projects, options, on_bug=on_bug)
    suite = built.suite
    instances, skipped = [], list(built.skipped)
    for task in suite.tasks:
        meta = dict(task.meta)
        project, bug_id = str(meta["project"]), str(meta["bug_id"])
        bug = read_bug(root, project, bug_id)
        repo_name = github_repo(read_project_info(root, project).get("github_url", ""), project)
        repo = open_repo(project, "", options.repos_dir, options.work_dir)
        test_patch = repo.git.diff(bug.buggy_commit, bug.fixed_commit, "--", *bug.test_files)
        before, after = _statuses(suite, task, False, sandbox), _statuses(suite, task, True, sandbox)
        f2p = task.test.args
        not_failing = [t for t in f2p if before.get(t) == "passed" or after.get(t) != "passed"]
        if not_failing:
            skipped.append(Skipped(task.task_id, f"FAIL_TO_PASS test {not_failing[0]} does not fail without the fix "
                                                 "and pass with it in a run of its whole file"))
            continue
        p2p = tuple(t for t, s in after.items() if s == "passed" and before.get(t) == "passed" and t not in f2p)
        owner_name = repo_name.replace("/", "__")
        instances.append(Instance(
            instance_id=f"{owner_name}-{bug_id}", repo=repo_name, base_commit=bug.buggy_commit, patch=bug.patch,
            test_patch=test_patch + "\n" if test_patch else "", problem_statement=task.goal, fail_to_pass=f2p,
            pass_to_pass=p2p, version=".".join(bug.python_version.split(".")[:2]),
            environment_setup_commit=bug.buggy_commit))
    return Conversion(instances, skipped, built.warnings)
