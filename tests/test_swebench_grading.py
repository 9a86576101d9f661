"""The SWE-bench judge against the official `swebench` package (5.0.2, the dev extra): its report and
resolution functions on the same status maps, its log parsers on the same logs, and our signed statuses
against what its parsers read from the log of the same run."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repo_agent.suites import grading
from repo_agent.suites.task import Resolution, TestSpec
from repo_agent.testrun import run_tests
from repo_agent.verdict import decide, swebench_statuses

sw_grading = pytest.importorskip("swebench.harness.grading", reason="the swebench package (dev extra) is not installed")
sw_parsers = pytest.importorskip("swebench.harness.log_parsers.python")
from swebench.harness.constants import FAIL_TO_PASS, PASS_TO_PASS  # noqa: E402

NAMES = ["t::a", "t::b", "t::c[x y]", "t::c[x", "t::c[z]", "t::d[1", "test_e (m.C)", "test_e (m.C.test_e)", "Doc line."]
STATUS = st.sampled_from(grading.STATUSES)


def official(statuses: dict[str, str], f2p: list[str], p2p: list[str]) -> tuple[dict, str]:
    report = sw_grading.get_eval_tests_report(statuses, {FAIL_TO_PASS: f2p, PASS_TO_PASS: p2p})
    report = {FAIL_TO_PASS: report[FAIL_TO_PASS], PASS_TO_PASS: report[PASS_TO_PASS]}
    return report, sw_grading.get_resolution_status(report)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(NAMES), STATUS, max_size=7),
       st.lists(st.sampled_from(NAMES), max_size=4, unique=True), st.lists(st.sampled_from(NAMES), max_size=4, unique=True))
def test_report_and_resolution_match_the_package_on_any_status_map(statuses, f2p, p2p):
    ours = grading.tests_report(statuses, f2p, p2p)
    report, status = official(statuses, f2p, p2p)
    assert ours == report
    assert grading.resolution_status(ours) == status


RECORDS = st.lists(st.tuples(st.sampled_from(["t::a", "t::b", "t::c[x y]", "test_e (m.C.test_e)"]),
                             st.sampled_from(["setup", "call", "teardown"]), st.sampled_from(["passed", "failed", "skipped"]),
                             st.booleans()), max_size=8, unique_by=lambda r: (r[0], r[1]))


@settings(max_examples=300, deadline=None)
@given(RECORDS, st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True),
       st.lists(st.sampled_from(NAMES), max_size=3, unique=True))
def test_the_verdict_passes_exactly_when_the_package_grades_full(records, f2p, p2p):
    stream = [{"e": "test", "id": i, "when": w, "outcome": o, **({"xfail": True} if x else {})} for i, w, o, x in records]
    stream.append({"e": "finish", "exitstatus": 1})
    report = decide(stream, [], exit_code=1, run_timed_out=False, total_timeout=10, expected=None,
                    resolution=Resolution(tuple(f2p), tuple(p2p)))
    graded, status = official(swebench_statuses(stream), f2p, p2p)
    assert report.resolution["status"] == status
    assert {k: report.resolution[k] for k in (FAIL_TO_PASS, PASS_TO_PASS)} == graded
    assert (report.outcome == "passed") == (status == "RESOLVED_FULL")
    if report.outcome != "passed":
        assert report.outcome in ("failed", "tests_missing")


def test_an_unfinished_or_untrusted_run_never_passes_whatever_the_statuses():
    stream = [{"e": "test", "id": "t::a", "when": "call", "outcome": "passed"}]
    resolution = Resolution(("t::a",))
    unfinished = decide(stream, [], exit_code=0, run_timed_out=False, total_timeout=10, expected=None, resolution=resolution)
    assert unfinished.outcome == "tests_missing" and unfinished.resolution["status"] == "RESOLVED_FULL"
    forged = decide(stream + [{"e": "finish", "exitstatus": 0}], ["result record with a bad signature (forged)"],
                    exit_code=0, run_timed_out=False, total_timeout=10, expected=None, resolution=resolution)
    assert forged.outcome == "error"


PYTEST_MODULE = '''
import pytest

def test_pass():
    pass

def test_fail():
    assert 1 == 2

@pytest.mark.skip(reason="not here")
def test_skip():
    pass

@pytest.mark.xfail
def test_xfail():
    assert False

@pytest.mark.xfail
def test_xpass():
    pass

@pytest.fixture
def broken():
    raise RuntimeError("fixture")

def test_error(broken):
    pass

@pytest.mark.parametrize("v", ["a b", "c"])
def test_param(v):
    pass

class TestK:
    def test_m(self):
        pass
'''

UNITTEST_MODULE = '''
import unittest


class K(unittest.TestCase):
    def test_pass(self):
        pass

    def test_doc(self):
        """A test named by its docstring."""

    def test_fail(self):
        self.assertEqual(1, 2)

    def test_error(self):
        raise RuntimeError("boom")

    @unittest.skip("not here")
    def test_skip(self):
        pass

    @unittest.expectedFailure
    def test_xfail(self):
        self.assertEqual(1, 2)

    def test_sub(self):
        for i in range(2):
            with self.subTest(i=i):
                self.assertEqual(i, 0)
'''


def _log(cmd: list[str], cwd: Path) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)
    return proc.stdout + proc.stderr


def test_log_parsers_read_real_runs_like_the_package_and_agree_with_the_signed_statuses(tmp_path):
    (tmp_path / "test_mod.py").write_text(PYTEST_MODULE)
    (tmp_path / "umod.py").write_text(UNITTEST_MODULE)
    pytest_log = _log([sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", "test_mod.py"], tmp_path)
    unittest_log = _log([sys.executable, "-m", "unittest", "-v", "umod"], tmp_path)
    parsed = grading.parse_pytest_log(pytest_log)
    assert parsed == sw_parsers.parse_log_pytest(pytest_log, None)
    assert parsed["test_mod.py::test_param[a"] == "PASSED"  # cut at the space, as the package cuts it
    parsed_django = grading.parse_django_log(unittest_log)
    assert parsed_django == sw_parsers.parse_log_django(unittest_log, None)
    assert parsed_django["A test named by its docstring."] == "PASSED"

    for spec, log_statuses in ((TestSpec(args=("test_mod.py",), per_test_timeout=30), parsed),
                               (TestSpec(args=("-m", "unittest", "-v", "umod"), per_test_timeout=30, runner="unittest"),
                                parsed_django)):
        names = tuple(log_statuses)
        report = run_tests(tmp_path, spec, sandbox="auto", resolution=Resolution(names))
        signed = {name: status for name, status in report.resolution["tests"].items() if status is not None}
        # every test the official parser read has the same status in our signed records ...
        assert signed == {name: log_statuses[name] for name in signed}, spec.runner
        # ... and what it read that is no test: the bare method names of unittest's `FAIL: name (...)` headers
        # and a subtest's line (both graded by their test's own line, which agrees)
        artefacts = set(log_statuses) - set(signed)
        assert all(re.fullmatch(r"\w+|.* \(i=\d\)", a) for a in artefacts), artefacts
        assert len(signed) >= 5  # pass, fail, error, skip and a docstring name (pytest: more)
    # and what the parser cannot know: an xpass (no status) and a failing subtest
    assert "test_mod.py::test_xpass" not in parsed
    assert grading.status_of("test_sub (umod.K.test_sub)", swebench_statuses([
        {"e": "test", "id": "test_sub (umod.K.test_sub)", "when": "call", "outcome": "failed"}])) == "FAILED"


def test_the_pytest_parser_ignores_lines_that_name_no_test():
    log = textwrap.dedent("""\
        PASSED tests/a.py::test_x
        FAILED tests/a.py::test_y - assert 1 == 2
        SKIPPED [1] tests/a.py:3: not here
        ERROR tests/a.py::test_z - RuntimeError
        PASSED
        """)
    assert grading.parse_pytest_log(log) == sw_parsers.parse_log_pytest(log, None) == {
        "tests/a.py::test_x": "PASSED", "tests/a.py::test_y": "FAILED", "tests/a.py::test_z": "ERROR"}


def test_test_lists_come_as_json_strings_or_lists():
    assert grading.test_names('["a", "b"]') == grading.test_names(["a", "b"]) == ("a", "b")
    assert grading.test_names("") == grading.test_names(None) == ()
    with pytest.raises(ValueError, match="JSON list"):
        grading.test_names("a, b")
    assert grading.canonical_name("test_x (m.C.test_x)") == "test_x (m.C)"
    assert grading.other_forms("test_x (m.C)") == ["test_x (m.C.test_x)"]
