"""Prove every task of a suite is a real task: the buggy version fails and the reference fix passes.
It also proves each task's minimal fix (minimal.py: only the reference's code changes) in sealed runs;
a minimal fix that does not pass is replaced by the full reference and counted as a fallback.

Each side runs `repeats` times (default 2) to catch flaky tests. Time budgets are CPU seconds (testrun.py),
so a verdict does not depend on the machine's load; the reference runs also measure each test's CPU
time, and `--record-tests` raises a task's per-test budget to CPU_HEADROOM times its slowest test when
that is above the task's own (never lowers it), rounded up to whole seconds. Tasks run in parallel threads; the
test runner itself caps concurrent pytest processes at the core count. A failing buggy run may stop at
its first failing test (fail_fast) since one failure is all the verdict needs; hanging tests are cut by
the per-test timeout of the task's TestSpec.
"""

from __future__ import annotations

import math
import statistics
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from ..verdict import TestReport
from ..workspace import TaskWorkspace
from . import minimal
from .minimal import MinimalFix
from .task import Suite, TaskSpec


CPU_HEADROOM = 10.0  # a task's per-test CPU budget is at least this times its reference's slowest test


@dataclass(frozen=True)
class ValidateOptions:
    repeats: int = 2
    num_workers: int = 2
    fail_fast: bool = True  # buggy runs stop at the first failing test
    per_test_timeout: float | None = None  # override the tasks' own per-test timeout
    sandbox: str = "auto"
    record_tests: bool = False  # learn each task's expected tests from its reference runs
    minimal: bool = True  # derive and prove each task's minimal fix (repeats more sealed runs per task)


@dataclass
class TaskValidation:
    task_id: str
    buggy: list[TestReport] = field(default_factory=list)
    reference: list[TestReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    expected_tests: tuple[tuple[str, str | None, str | None], ...] | None = None  # learnt (record_tests)
    minimal_runs: list[TestReport] = field(default_factory=list)
    minimal_fix: MinimalFix | None = None  # proven, or a fallback with its reason (None: not tried)
    cpu_budget_s: float | None = None  # the per-test CPU budget the task should have (cpu_budget)

    @property
    def reference_cpu_s(self) -> float | None:
        """CPU seconds of the reference's slowest test call, over every reference run (None: unmeasured)."""
        times = [cpu for r in self.reference for cpu in r.cpu.values()]
        return max(times) if times else None

    @property
    def valid(self) -> bool:
        return not self.problems and self.error is None

    @property
    def duration_s(self) -> float:
        return sum(r.duration_s for r in self.buggy + self.reference + self.minimal_runs)

    def to_dict(self) -> dict:
        return {
            "task_id": self.task_id,
            "valid": self.valid,
            "problems": self.problems,
            "error": self.error,
            "duration_s": round(self.duration_s, 3),
            "buggy": [r.to_dict() for r in self.buggy],
            "reference": [r.to_dict() for r in self.reference],
            "expected_tests": None if self.expected_tests is None else len(self.expected_tests),
            "reference_cpu_s": None if self.reference_cpu_s is None else round(self.reference_cpu_s, 4),
            "cpu_budget_s": self.cpu_budget_s,
            "minimal_fix": None if self.minimal_fix is None else {
                "status": self.minimal_fix.status, "reason": self.minimal_fix.reason,
                "changed_lines": self.minimal_fix.changed_lines if self.minimal_fix.proven else None,
                "runs": [r.to_dict() for r in self.minimal_runs]},
        }


def judge(buggy: list[TestReport], reference: list[TestReport]) -> list[str]:
    """Why a task is invalid (empty list: valid). Pure, so the rule is testable on its own."""
    problems = []
    if any(r.ok for r in buggy):
        passing = sum(r.ok for r in buggy)
        kind = "flaky: " if passing < len(buggy) else ""
        problems.append(f"{kind}buggy version passed {passing}/{len(buggy)} runs")
    silent = [r for r in buggy if not r.ok and r.total == 0 and not r.run_timed_out]
    if silent:
        problems.append(f"buggy run collected no test ({silent[0].summary})")
    untrusted = [r for r in buggy if r.integrity]
    if untrusted:
        problems.append(f"buggy run not trusted ({untrusted[0].summary})")
    problems += _resolution_problems(buggy)
    failing = [r for r in reference if not r.ok]
    if failing:
        kind = "flaky: " if len(failing) < len(reference) else ""
        problems.append(f"{kind}reference fix failed {len(failing)}/{len(reference)} runs ({failing[0].outcome}: {failing[0].summary})")
    return problems


def _resolution_problems(buggy: list[TestReport]) -> list[str]:
    """SWE-bench's labels, checked on the runs without the patch (the test_patch applied): every
    FAIL_TO_PASS test must fail there and every PASS_TO_PASS test must pass."""
    problems = []
    for part, wrong, says in (("FAIL_TO_PASS", "success", "pass"), ("PASS_TO_PASS", "failure", "fail")):
        names = sorted({n for r in buggy if r.resolution and not r.run_timed_out and not r.integrity
                        for n in r.resolution[part][wrong]})
        if names:
            problems.append(f"{part} test(s) {says} without the patch: {', '.join(names[:3])}"
                            + (f" +{len(names) - 3} more" if len(names) > 3 else ""))
    return problems


def learn_expected_tests(reference: list[TestReport]) -> tuple[tuple[str, str | None, str | None], ...] | None:
    """The tests that passed in every reference run, with what each run saw of them (a fingerprint
    that differs between runs is not kept)."""
    if not reference or not all(r.ok for r in reference):
        return None
    passed = [t for t, s in reference[0].tests.items() if all(r.tests.get(t) == "passed" for r in reference)]
    learnt = []
    for test_id in sorted(passed):
        seen = [r.collected.get(test_id) or {} for r in reference]
        params = {s.get("params") for s in seen}
        defined_in = {s.get("defined_in") for s in seen}
        learnt.append((test_id, params.pop() if len(params) == 1 else None,
                       defined_in.pop() if len(defined_in) == 1 else None))
    return tuple(learnt) or None


def cpu_budget(current: float, reference_cpu_s: float | None) -> float:
    """At least the task's own per-test budget, at least CPU_HEADROOM x its slowest reference test."""
    if reference_cpu_s is None:
        return current
    return max(current, float(math.ceil(CPU_HEADROOM * reference_cpu_s)))


def validate_task(suite: Suite, task: TaskSpec, options: ValidateOptions) -> TaskValidation:
    if options.per_test_timeout is not None:
        task = replace(task, test=replace(task.test, per_test_timeout=options.per_test_timeout))
    if options.record_tests:
        task = replace(task, expected_tests=None)  # learn them afresh from the reference runs
    result = TaskValidation(task_id=task.task_id)
    try:
        for _ in range(options.repeats):
            result.buggy.append(_run(suite, task, fixed=False, fail_fast=options.fail_fast, sandbox=options.sandbox))
            result.reference.append(_run(suite, task, fixed=True, fail_fast=False, sandbox=options.sandbox))
    except Exception as exc:  # a broken task record must not stop the others
        result.error = f"{type(exc).__name__}: {exc}"
        return result
    result.problems = judge(result.buggy, result.reference)
    result.cpu_budget_s = cpu_budget(task.test.per_test_timeout, result.reference_cpu_s)
    if options.record_tests and not result.problems:
        result.expected_tests = learn_expected_tests(result.reference)
    if options.minimal:
        result.minimal_fix = _prove_minimal(suite, task, result, options)
    return result


def _prove_minimal(suite: Suite, task: TaskSpec, result: TaskValidation, options: ValidateOptions) -> MinimalFix:
    """The task's minimal fix if every sealed run of it passes, else a fallback saying why."""
    if not result.valid:
        return MinimalFix(minimal.FALLBACK, reason="the task is not valid")
    if result.expected_tests is not None:
        task = replace(task, expected_tests=result.expected_tests)  # judge it as the recorded suite will
    try:
        buggy = suite.buggy_text(task)
        proposal = minimal.propose(buggy, suite.reference_text(task))
        if not proposal.proven:
            return proposal
        texts = minimal.fixed_texts(proposal, buggy)
        for _ in range(options.repeats):
            result.minimal_runs.append(_run(suite, task, texts, fail_fast=True, sandbox=options.sandbox))
    except (OSError, ValueError) as exc:
        return MinimalFix(minimal.FALLBACK, reason=f"{type(exc).__name__}: {exc}")
    failing = [r for r in result.minimal_runs if not r.ok]
    if failing:
        return MinimalFix(minimal.FALLBACK, reason=f"a sealed run of the minimal fix did not pass "
                                                   f"({failing[0].outcome}: {failing[0].summary})")
    return proposal


def _run(suite: Suite, task: TaskSpec, fixed: bool | dict[str, str], fail_fast: bool, sandbox: str) -> TestReport:
    """One sealed run of the buggy task, or of a fix (the reference, or the given texts) written as the
    model would write it."""
    with TaskWorkspace.create(suite, task, sandbox) as env:
        if fixed:
            texts = fixed if isinstance(fixed, dict) else suite.reference_text(task)
            for ws_path, text in texts.items():
                refusal = env.refusal(ws_path)
                if refusal:
                    raise ValueError(f"the reference fix writes {ws_path}, which the task does not let a model change ({refusal[1]})")
                (env.root / ws_path).write_text(text, encoding="utf-8")
        return env.run_tests(fail_fast=fail_fast)


def validate_suite(suite: Suite, options: ValidateOptions, task_ids: list[str] | None = None,
                   on_done: Callable[[TaskValidation], None] | None = None) -> list[TaskValidation]:
    """Validate the suite's tasks (or the named ones); results come back in suite order."""
    tasks = [suite.task(t) for t in task_ids] if task_ids else list(suite.tasks)
    results: dict[str, TaskValidation] = {}
    with ThreadPoolExecutor(max_workers=max(1, options.num_workers)) as pool:
        futures = [pool.submit(validate_task, suite, t, options) for t in tasks]
        for future in as_completed(futures):
            result = future.result()
            results[result.task_id] = result
            if on_done:
                on_done(result)
    return [results[t.task_id] for t in tasks]


def static_problems(suite: Suite) -> list[str]:
    """Problems visible without running anything: duplicate ids, missing files, leaked references."""
    problems, seen = [], set()
    for task in suite.tasks:
        if task.task_id in seen:
            problems.append(f"{task.task_id}: duplicate task id")
        seen.add(task.task_id)
        base = (suite.root / task.base).resolve()
        references = {(suite.root / src).resolve() for _, src in task.reference}
        for rel in task.files:
            path = (base / rel).resolve()
            if not path.exists():
                problems.append(f"{task.task_id}: workspace file {rel} not found under {base}")
            elif any(_inside(ref, path) for ref in references):
                problems.append(f"{task.task_id}: workspace file {rel} holds the reference fix")
        for ws_path, src in task.reference:
            if not (suite.root / src).is_file():
                problems.append(f"{task.task_id}: reference {src} not found under {suite.root}")
            if ws_path not in task.target_files:
                problems.append(f"{task.task_id}: reference {ws_path} is not a target file")
        for ws_path, src in task.sealed_overlay:
            if src is not None and not (suite.root / src).is_file():
                problems.append(f"{task.task_id}: sealed overlay {src} (for {ws_path}) not found under {suite.root}")
    return problems


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def with_minimal_fixes(suite: Suite, results: list[TaskValidation]) -> tuple[Suite, int]:
    """The suite with each validated task's minimal fix (proven, or a fallback with its reason)."""
    learnt = {r.task_id: r.minimal_fix for r in results if r.minimal_fix is not None}
    tasks = tuple(replace(t, minimal_fix=learnt[t.task_id]) if t.task_id in learnt else t for t in suite.tasks)
    return replace(suite, tasks=tasks), sum(1 for f in learnt.values() if f.proven)


def minimal_summary(results: list[TaskValidation]) -> dict:
    """How many tasks have a proven minimal fix, its size in changed lines, and the fallbacks."""
    tried = [r for r in results if r.minimal_fix is not None]
    sizes = sorted(r.minimal_fix.changed_lines for r in tried if r.minimal_fix.proven)
    fallbacks = {r.task_id: r.minimal_fix.reason for r in tried if not r.minimal_fix.proven}
    return {"tasks": len(tried), "proven": len(sizes), "fallbacks": len(fallbacks), "fallback_reasons": fallbacks,
            "changed_lines": {"min": sizes[0], "median": statistics.median(sizes), "max": sizes[-1],
                              "total": sum(sizes)} if sizes else None}


def with_expected_tests(suite: Suite, results: list[TaskValidation]) -> tuple[Suite, int]:
    """The suite with the expected tests learnt by `record_tests` (tasks without any keep theirs), and
    each such task's per-test CPU budget raised where its reference needs more (cpu_budget)."""
    learnt = {r.task_id: r for r in results if r.expected_tests}
    tasks = []
    for task in suite.tasks:
        result = learnt.get(task.task_id)
        if result is not None:
            task = replace(task, expected_tests=result.expected_tests)
            budget = cpu_budget(task.test.per_test_timeout, result.reference_cpu_s)
            if budget > task.test.per_test_timeout:
                task = replace(task, test=replace(task.test, per_test_timeout=budget))
        tasks.append(task)
    return replace(suite, tasks=tuple(tasks)), len(learnt)
