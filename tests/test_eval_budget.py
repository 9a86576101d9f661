"""Evaluation budgets sized from the suite: a reply budget must hold the fixing action the student was
taught, in its own tokens (a whole-file write with `files`, one replace_in_file with `edit`)."""

from __future__ import annotations

import json

from conftest import BUNDLED_SUITE
from repo_agent.evaluate.budget import reply_budget, write_action_tokens
from repo_agent.suites.task import load_suite


def count_chars(text: str) -> int:  # a stand-in tokenizer: one token per character
    return len(text)


def test_edit_budgets_hold_the_minimal_fix_and_are_smaller_than_whole_files():
    suite = load_suite(BUNDLED_SUITE)
    whole, edit = write_action_tokens(suite, count_chars), write_action_tokens(suite, count_chars, "edit")
    assert set(whole) == set(edit) == set(suite.task_ids)
    for task in suite.tasks:
        fixed, buggy = suite.teacher_fix(task)[0], suite.buggy_text(task)
        path = next(iter(fixed))
        assert 0 < edit[task.task_id] < whole[task.task_id]
        # the measured reply is the replace_in_file the oracle sends: its `new` holds every fixed line
        changed = [line for line in fixed[path].splitlines() if line not in buggy[path].splitlines()]
        assert all(len(json.dumps(line)) - 2 <= edit[task.task_id] for line in changed)
    budget = reply_budget(suite, count_chars, None, "edit")
    assert budget.max_tokens == max(edit.values()) + 32 and budget.too_large == []
    assert reply_budget(suite, count_chars, 400, "files").too_large  # whole files do not fit half of 400
