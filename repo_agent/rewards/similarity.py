"""Patch similarity in CodeRepairRL's form, and the reference diff it is measured against.

A unified diff is split per file (by its `+++ b/PATH` header); for every file of the reference diff
the `difflib.SequenceMatcher(autojunk=False)` ratio against the episode's diff of the same file is
taken (0 when the episode left it alone), the ratios are summed and divided by
max(#reference files, #changed files), so touching many files never pays.
"""

from __future__ import annotations

import difflib
import re

from ..suites.task import Suite, TaskSpec

_FILE_HEADER = re.compile(r"^--- (?:a/(?P<old>.+)|/dev/null)\n\+\+\+ (?:b/(?P<new>.+)|/dev/null)$", re.M)


def diff_by_file(diff: str) -> dict[str, str]:
    """File path -> that file's part of a unified diff (headers included). A diff without file
    headers (not a unified diff) has no files."""
    starts = list(_FILE_HEADER.finditer(diff))
    files: dict[str, str] = {}
    for index, match in enumerate(starts):
        end = starts[index + 1].start() if index + 1 < len(starts) else len(diff)
        path = match.group("new") or match.group("old")
        files[path] = files.get(path, "") + diff[match.start():end]
    return files


def patch_similarity_score(predicted: str, reference: str) -> float:
    """CodeRepairRL's diff similarity of two unified diffs, in [0, 1]."""
    reference_files, predicted_files = diff_by_file(reference), diff_by_file(predicted)
    if not reference_files or not predicted_files:
        return 0.0
    total = sum(difflib.SequenceMatcher(None, predicted_files[path], text, autojunk=False).ratio()
                for path, text in reference_files.items() if path in predicted_files)
    return total / max(len(reference_files), len(predicted_files))


def unified_diff(before: dict[str, str], after: dict[str, str]) -> str:
    """The diff between two file maps in the form TaskWorkspace.final_diff writes (a/ b/ paths)."""
    chunks = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path, ""), after.get(path, "")
        if old == new:
            continue
        chunks.append("".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                                   f"a/{path}" if path in before and old else "/dev/null",
                                                   f"b/{path}" if new or path not in before else "/dev/null")))
    return "".join(chunks)


def reference_diff(suite: Suite, task: TaskSpec) -> str:
    """The task's minimal reference fix (Suite.teacher_fix: the proven minimal fix, else the full
    reference) as a diff against the buggy files, in the episode's diff form."""
    fixed, _ = suite.teacher_fix(task)
    buggy = suite.buggy_text(task)
    return unified_diff({p: t for p, t in buggy.items() if p in fixed}, fixed)
