"""What episode rewards compare an episode with, per task: the minimal reference diff (for
patch_similarity) and the tests the buggy program already passes (for test_fraction). Computed once
per task and process: the baseline is one sealed test run of the unchanged workspace."""

from __future__ import annotations

import threading
from typing import Any

from ..suites.task import Suite, TaskSpec
from ..workspace import TaskWorkspace
from .similarity import reference_diff

_CACHE: dict[tuple[str, str, str], dict[str, Any]] = {}
_LOCK = threading.Lock()


def task_references(suite: Suite, task: TaskSpec, sandbox: str = "auto") -> dict[str, Any]:
    """{"reference_diff": str, "buggy_passing": [test ids passing on the buggy program]}."""
    key = (str(suite.root), task.task_id, sandbox)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
    with TaskWorkspace.create(suite, task, sandbox) as workspace:
        report = workspace.run_tests(fail_fast=False)
    value = {"reference_diff": reference_diff(suite, task),
             "buggy_passing": sorted(t for t, status in report.tests.items() if status == "passed")}
    with _LOCK:
        _CACHE[key] = value
    return value
