"""Building QuixBugs-layout suites: which programs become tasks, minimal workspaces, no leaked fixes."""

from __future__ import annotations

import os
from pathlib import Path

import git
from typer.testing import CliRunner

from fixtures_suites import QB_PROGRAMS, write_quixbugs
from repo_agent.cli import app
from repo_agent.suites.quixbugs import fetch_quixbugs
from repo_agent.suites.task import load_suite
from repo_agent.workspace import materialize

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def cli(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_one_task_per_buggy_program_with_a_test(tmp_path):
    root = write_quixbugs(tmp_path / "qb")
    (root / "python_programs" / "untested.py").write_text("def untested():\n    pass\n")
    out = tmp_path / "quixbugs_suite.json"
    result = cli("suite", "build", "quixbugs", "--root", root, "--out", out)
    assert result.exit_code == 0, result.output
    suite = load_suite(out)
    assert suite.task_ids == sorted(f"quixbugs/{n}" for n in QB_PROGRAMS)  # no node, *_test drivers, untested
    add = suite.task("add")
    assert add.goal.startswith("Fix add so its tests pass.")
    assert set(add.files) == {"conftest.py", "python_programs/add.py", "python_testcases/test_add.py",
                              "python_testcases/load_testdata.py", "python_testcases/node.py", "json_testcases/add.json"}
    assert add.reference == (("python_programs/add.py", "correct_python_programs/add.py"),)
    assert add.test.per_test_timeout > 0


def test_no_reference_file_ever_appears_in_a_workspace(tmp_path):
    out = tmp_path / "quixbugs_suite.json"
    assert cli("suite", "build", "quixbugs", "--root", write_quixbugs(tmp_path / "qb"), "--out", out).exit_code == 0
    for path in (out, REPO / "eval" / "suites" / "bundled_suite.json"):
        suite = load_suite(path)
        references = {(suite.root / src).read_bytes() for t in suite.tasks for _, src in t.reference}
        for task in suite.tasks:
            with materialize(suite, task) as ws:
                files = [p for p in ws.root.rglob("*") if p.is_file()]
                assert files
                assert not any("correct" in p.relative_to(ws.root).as_posix() for p in files)
                assert not any(p.read_bytes() in references for p in files)
                assert not any(b"SECRET-FIX" in p.read_bytes() for p in files)


def test_build_rejects_a_folder_that_is_not_quixbugs(tmp_path):
    result = cli("suite", "build", "quixbugs", "--root", tmp_path, "--out", tmp_path / "s.json")
    assert result.exit_code == 2 and "missing folder python_programs/" in result.output
    assert not (tmp_path / "s.json").exists()


def test_without_root_offline_says_how_to_pass_root(tmp_path):
    result = cli("suite", "build", "quixbugs", "--cache-dir", tmp_path / "cache",
                 "--repo-url", "http://127.0.0.1:9/QuixBugs", "--out", tmp_path / "s.json")
    assert result.exit_code == 2
    assert "could not clone" in result.output and "--root /path/to/QuixBugs" in result.output
    assert not (tmp_path / "cache" / "quixbugs").exists()


def test_without_root_clones_the_pinned_commit_into_the_cache(tmp_path):
    upstream = write_quixbugs(tmp_path / "upstream", ["add", "mul"])
    repo = git.Repo.init(upstream)
    repo.index.add([str(p.relative_to(upstream)) for p in upstream.rglob("*") if p.is_file() and ".git" not in p.parts])
    actor = git.Actor("t", "t@example.invalid")
    pinned = repo.index.commit("two programs", author=actor, committer=actor).hexsha
    write_quixbugs(upstream, ["maximum"])
    repo.index.add(["python_programs/maximum.py", "correct_python_programs/maximum.py",
                    "python_testcases/test_maximum.py", "json_testcases/maximum.json"])
    repo.index.commit("a later program", author=actor, committer=actor)
    cache = tmp_path / "cache"
    checkout = fetch_quixbugs(cache, url=str(upstream), commit=pinned[:7])
    assert checkout == cache / "quixbugs"
    assert not (checkout / "python_programs" / "maximum.py").exists()  # the pin, not the newest commit
    assert fetch_quixbugs(cache, url="http://127.0.0.1:9/unused", commit=pinned[:7]) == checkout  # reused
    out = tmp_path / "s.json"
    result = cli("suite", "build", "quixbugs", "--cache-dir", cache, "--commit", pinned, "--out", out)
    assert result.exit_code == 0, result.output
    assert load_suite(out).task_ids == ["quixbugs/add", "quixbugs/mul"]
