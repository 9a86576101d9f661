"""Minimal fixes: only the reference's code changes, per line (never per diff hunk), proven in sealed runs."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

from conftest import BUNDLED_SUITE
from fixtures_suites import QB_PROGRAMS, write_quixbugs
from repo_agent.suites import minimal
from repo_agent.suites.minimal import apply_edits, code_keys, minimal_edits, same_code
from repo_agent.suites.task import load_suite, suite_bytes, task_from_dict, task_to_dict

GCD_BUGGY = '''def gcd(a, b):
    if b == 0:
        return a
    return gcd(a % b, b)


"""
Greatest common divisor.
"""
'''
GCD_FIXED = '''def gcd(a, b):
    if b == 0:
        return a
    return gcd(b, a % b)
'''


def changed_lines(before: str, after: str) -> list[str]:
    return [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_a_fix_sharing_a_hunk_with_a_docstring_deletion_keeps_the_docstring():
    # one diff hunk holds both the fix and the docstring deletion; only the fix is taken
    hunks = [l for l in difflib.unified_diff(GCD_BUGGY.splitlines(), GCD_FIXED.splitlines(), lineterm="") if l.startswith("@@")]
    assert len(hunks) == 1
    result = apply_edits(GCD_BUGGY, minimal_edits(GCD_BUGGY, GCD_FIXED))
    assert changed_lines(GCD_BUGGY, result) == ["-    return gcd(a % b, b)", "+    return gcd(b, a % b)"]
    assert "Greatest common divisor." in result and same_code(result, GCD_FIXED)
    assert result != GCD_FIXED


def test_comments_blank_lines_and_docstrings_are_not_code():
    text = 'x = 1  # one\n\n# alone\ndef f():\n    """doc\n    more"""\n    return """not a docstring\n"""\n'
    assert code_keys(text) == ["x = 1", None, None, "def f():", None, None, '    return """not a docstring', '"""']


def test_comment_and_reflow_changes_are_left_out_but_code_changes_are_taken():
    buggy = "import os  # the os\n\n\ndef f(x):\n    # add one\n    return x - 1\n"
    fixed = "import os  # operating system\n\ndef f(x):\n    # add one (fixed)\n    y = x\n    return y + 1\n"
    result = apply_edits(buggy, minimal_edits(buggy, fixed))
    assert same_code(result, fixed)
    assert changed_lines(buggy, result) == ["-    return x - 1", "+    y = x", "+    return y + 1"]
    assert "# the os" in result and "# add one\n" in result


def test_an_inserted_line_goes_after_a_function_docstring_and_a_deleted_one_goes():
    buggy = 'def f(xs):\n    """Sum xs."""\n    return sum(xs)\n\nDEBUG = True\n'
    fixed = 'def f(xs):\n    xs = list(xs)\n    return sum(xs)\n'
    result = apply_edits(buggy, minimal_edits(buggy, fixed))
    assert result == 'def f(xs):\n    """Sum xs."""\n    xs = list(xs)\n    return sum(xs)\n\n'
    assert same_code(result, fixed)


def test_text_that_does_not_tokenize_is_judged_line_by_line():
    buggy = "def f(:\n    # note\n    return 1\n"
    fixed = "def f():\n    return 1\n"
    assert code_keys(buggy) == ["def f(:", None, "    return 1"]
    assert apply_edits(buggy, minimal_edits(buggy, fixed)) == "def f():\n    # note\n    return 1\n"


def test_a_fix_of_docstrings_only_is_a_fallback_and_a_changed_buggy_file_is_refused():
    proposal = minimal.propose({"a.py": 'x = 1\n"""old"""\n'}, {"a.py": 'x = 1\n"""new"""\n'})
    assert not proposal.proven and "no code line" in proposal.reason
    proposal = minimal.propose({"a.py": GCD_BUGGY}, {"a.py": GCD_FIXED})
    assert proposal.proven and proposal.changed_lines == 1
    try:
        minimal.fixed_texts(proposal, {"a.py": GCD_BUGGY.replace("a % b", "a %  b")})
    except ValueError as exc:
        assert "sha256" in str(exc)
    else:
        raise AssertionError("a fix recorded for another buggy file was applied")


def test_every_bundled_task_records_a_proven_minimal_fix_that_changes_only_code():
    suite = load_suite(BUNDLED_SUITE)
    for task in suite.tasks:
        assert task.minimal_fix is not None and task.minimal_fix.proven, task.task_id
        texts, is_minimal = suite.teacher_fix(task)
        assert is_minimal
        buggy, reference = suite.buggy_text(task), suite.reference_text(task)
        for path, text in texts.items():
            assert same_code(text, reference[path]), task.task_id
            diff = changed_lines(buggy[path], text)
            assert diff and all(line[1:].strip() for line in diff), (task.task_id, diff)  # no blank line moved
            assert not any('"""' in line or line[1:].lstrip().startswith("#") for line in diff), (task.task_id, diff)
            assert len(diff) < len(changed_lines(buggy[path], reference[path])), task.task_id
            assert sum(1 for l in diff if l.startswith("-")) <= task.minimal_fix.changed_lines


def test_the_field_is_optional_and_old_records_keep_their_bytes():
    suite = load_suite(BUNDLED_SUITE)
    record = task_to_dict(suite.tasks[0])
    assert record["minimal_fix"]["status"] == "proven"
    assert task_from_dict(record) == suite.tasks[0]
    del record["minimal_fix"]
    old = task_from_dict(record)
    assert old.minimal_fix is None and "minimal_fix" not in task_to_dict(old)
    assert suite_bytes(suite, Path(BUNDLED_SUITE)) == Path(BUNDLED_SUITE).read_bytes()


def test_validate_records_proven_fixes_and_falls_back_when_the_minimal_fix_fails(cli, tmp_path):
    programs = dict(QB_PROGRAMS)
    # the reference adds a docstring that its own code reads: without it (minimal fix) the tests fail
    programs["docplus"] = ("return x - y", '"""+"""\n    return eval("x" + docplus.__doc__ + "y")', [[[1, 2], 3]])
    root = write_quixbugs(tmp_path / "qb", ["add", "docplus"], programs=programs)
    suite_path = tmp_path / "s_suite.json"
    assert cli("suite", "build", "quixbugs", "--root", root, "--out", suite_path).exit_code == 0
    assert cli("suite", "split", "--suite", suite_path, "--train-pct", 50).exit_code == 0
    out = tmp_path / "v.json"
    result = cli("suite", "validate", "--suite", suite_path, "--repeats", 1, "--record-minimal", "--json", out)
    assert result.exit_code == 0, result.output
    assert "minimal fix: 1/2 tasks" in result.output and "1 fall back to the full reference" in result.output
    report = json.loads(out.read_text())
    assert report["minimal_fixes"]["proven"] == 1 and report["minimal_fixes"]["changed_lines"]["max"] >= 1
    suite = load_suite(suite_path)
    add, docplus = suite.task("add"), suite.task("docplus")
    assert add.minimal_fix.proven
    texts, is_minimal = suite.teacher_fix(add)
    assert is_minimal and '"""Spec of add."""' in texts["python_programs/add.py"]
    assert "    return x + y\n" in texts["python_programs/add.py"]
    assert docplus.minimal_fix.status == "fallback" and "did not pass" in docplus.minimal_fix.reason
    assert suite.teacher_fix(docplus) == (suite.reference_text(docplus), False)
    # the derived suites were split again and still check
    checked = cli("suite", "check", "--suite", suite_path)
    assert checked.exit_code == 0, checked.output
