"""BugsInPy: a checkout plus a git repository made here becomes a suite that validates offline."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fixtures_suites import write_bugsinpy
from repo_agent.cli import app
from repo_agent.suites.bugsinpy_records import BugDefect, parse_info, patch_changes, run_test_node_ids
from repo_agent.suites.task import load_suite
from repo_agent.suites.venvs import decode_text, find_interpreter, parse_requirements
from repo_agent.workspace import materialize

runner = CliRunner()


def cli(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def build(tmp: Path, *extra: str):
    root, repos, _ = write_bugsinpy(tmp)
    out = tmp / "bugsinpy_suite.json"
    result = cli("suite", "build", "bugsinpy", "--root", root, "--projects", "calc", "--repos-dir", repos,
                 "--work-dir", tmp / "work", "--out", out, *extra)
    return result, out


def test_fixture_builds_skips_defects_and_validates_offline(tmp_path):
    result, out = build(tmp_path, "--use-current-python")
    assert result.exit_code == 0, result.output
    suite = load_suite(out)
    assert suite.task_ids == ["bugsinpy/calc-1", "bugsinpy/calc-2"]
    assert "skipped bugsinpy/calc-3: bug_patch.txt is empty" in result.output
    assert "skipped bugsinpy/calc-4: bug_patch.txt does not apply" in result.output
    assert "skipped bugsinpy/calc-5: test file tests/test_gone.py" in result.output
    assert "-e git+https://example.invalid/x.git#egg=x, pkg-resources==0.0.0" in result.output
    assert [s["task_id"] for s in suite.source["skipped"]] == ["bugsinpy/calc-3", "bugsinpy/calc-4", "bugsinpy/calc-5"]
    # only the tests named in run_test.sh decide, unittest names become pytest node ids
    assert suite.task("calc-1").test.args == ("tests/test_ops.py::test_add",)
    assert suite.task("calc-2").test.args == ("tests/test_units.py::TestOps::test_mul",)
    report = tmp_path / "v.json"
    result = cli("suite", "validate", "--suite", out, "--json", report)
    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text())["valid"] == 2


def test_workspace_is_the_buggy_commit_with_fixed_tests_and_no_reference(tmp_path):
    result, out = build(tmp_path, "--use-current-python", "--bugs", "1")
    assert result.exit_code == 0, result.output
    suite = load_suite(out)
    task = suite.task("calc-1")
    assert task.target_files == ("calc/ops.py",)
    fixed = suite.reference_text(task)["calc/ops.py"]
    with materialize(suite, task) as ws:
        names = sorted(p.relative_to(ws.root).as_posix() for p in ws.root.rglob("*") if p.is_file())
        assert names == ["README.md", "calc/__init__.py", "calc/ops.py", "tests/test_ops.py"]
        assert "return a - b" in (ws.root / "calc/ops.py").read_text()  # buggy code
        assert "def test_add():" in (ws.root / "tests/test_ops.py").read_text()  # test from the fixed commit
        assert all((ws.root / n).read_text() != fixed for n in names)
    assert "return a + b" in fixed


def test_rebuild_reuses_snapshots_and_gives_the_same_file(tmp_path):
    result, out = build(tmp_path, "--use-current-python")
    assert result.exit_code == 0
    first = out.read_bytes()
    stamp = tmp_path / "work" / "calc" / "1" / "snapshot.json"
    mtime = stamp.stat().st_mtime_ns
    result = cli("suite", "build", "bugsinpy", "--root", tmp_path / "BugsInPy", "--projects", "calc",
                 "--repos-dir", tmp_path / "repos", "--work-dir", tmp_path / "work", "--out", tmp_path / "bugsinpy_suite.json",
                 "--use-current-python")
    assert result.exit_code == 0
    assert (tmp_path / "bugsinpy_suite.json").read_bytes() == first
    assert stamp.stat().st_mtime_ns == mtime


def test_missing_clone_skips_every_bug_of_the_project(tmp_path):
    root, repos, _ = write_bugsinpy(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("suite", "build", "bugsinpy", "--root", root, "--projects", "calc", "--repos-dir", empty,
                 "--work-dir", tmp_path / "work", "--out", tmp_path / "s.json", "--use-current-python")
    assert result.exit_code == 1 and "no git clone of calc" in result.output
    assert not (tmp_path / "s.json").exists()


def test_real_venv_is_created_once_and_reused(tmp_path):
    """The slow path: a venv with pytest + pytest-timeout installed by pip (from the package index)."""
    result, out = build(tmp_path, "--pythons-dir", tmp_path / "no-pythons")
    assert result.exit_code == 0, result.output
    assert "Python 3.8 not found" in result.output  # falls back to the current interpreter, with a warning
    suite = load_suite(out)
    pythons = {t.test.python for t in suite.tasks}
    assert len(pythons) == 1  # calc-1 and calc-2 need the same packages: one shared venv
    venv_python = Path(pythons.pop())
    assert venv_python.is_relative_to(tmp_path / "work" / "venvs") and venv_python.exists()
    result = cli("suite", "validate", "--suite", out)
    assert result.exit_code == 0, result.output


def test_records_survive_benchmark_data_defects():
    utf16 = "requests==2.0\r\n-e git+https://x/y.git#egg=y\r\npkg-resources==0.0.0\r\n\r\n".encode("utf-16")
    reqs = parse_requirements(utf16)
    assert reqs.lines == ("requests==2.0",)
    assert reqs.skipped == ("-e git+https://x/y.git#egg=y", "pkg-resources==0.0.0")
    assert decode_text("a\r\nb".encode("utf-16-le")) == "a\nb"
    assert parse_info('python_version="3.7.0"\r\nbuggy_commit_id="abc"\r\n') == {"python_version": "3.7.0", "buggy_commit_id": "abc"}
    files = {"test/test_utils.py", "tests/test_a.py"}
    assert run_test_node_ids("python -m unittest -q test.test_utils.TestUtil.test_x\n", files.__contains__) == (
        "test/test_utils.py::TestUtil::test_x",)
    assert run_test_node_ids("pytest tests/test_a.py::test_b\npytest -q tests/test_a.py::test_c\n", files.__contains__) == (
        "tests/test_a.py::test_b", "tests/test_a.py::test_c")
    with pytest.raises(BugDefect, match="not supported"):
        run_test_node_ids("tox -e py37\n", files.__contains__)
    with pytest.raises(BugDefect, match="-k"):
        run_test_node_ids("pytest tests/test_a.py -k slow\n", files.__contains__)
    with pytest.raises(BugDefect, match="missing"):
        run_test_node_ids("pytest tests/test_gone.py\n", files.__contains__)
    assert [c.kind for c in patch_changes("--- a/x.py\n+++ b/x.py\n@@\n--- /dev/null\n+++ b/new.py\n@@\n")] == ["modified", "added"]


def test_interpreter_lookup_prefers_the_exact_version(tmp_path):
    for version in ("3.7.3", "3.7.16"):
        binary = tmp_path / version / "bin" / "python3.7"
        binary.parent.mkdir(parents=True)
        binary.write_text("")
    assert find_interpreter("3.7.3", tmp_path).path.endswith("3.7.3/bin/python3.7")
    assert find_interpreter("3.7.0", tmp_path).path.endswith("3.7.16/bin/python3.7")
    fallback = find_interpreter("3.6.9", tmp_path)
    assert fallback.path == sys.executable and "3.6 not found" in fallback.warning
