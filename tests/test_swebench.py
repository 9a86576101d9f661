"""SWE-bench-style suites end to end: instance records + clones made here -> a suite -> sealed verdicts
judged by FAIL_TO_PASS / PASS_TO_PASS -> the oracle -> predictions and verl parquet.

The three instances (tests/fixtures_swebench.py): calc-1 (its new test is a new file), calc-2 (a
PASS_TO_PASS test that the careless fix breaks), shop-1 (a Django-style unittest runner, names like
`test_total (cart.tests.CartTests)`, one test named by its docstring).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import git
import pytest

from fixtures_swebench import CARELESS_SLUGIFY, write_swebench
from repo_agent.sandbox import resolve_sandbox
from repo_agent.suites.task import load_suite
from repo_agent.traces import read_trace
from repo_agent.workspace import TaskWorkspace, materialize

HAVE_BWRAP = resolve_sandbox("auto").isolated
needs_bwrap = pytest.mark.skipif(not HAVE_BWRAP, reason="the bash tool set needs bubblewrap")


def build(cli, tmp: Path, *extra, instances: Path | None = None):
    records, repos, specs = write_swebench(tmp)
    out = tmp / "swebench_suite.json"
    result = cli("suite", "build", "swebench", "--instances", instances or records, "--repos-dir", repos,
                 "--specs", specs, "--work-dir", tmp / "work", "--out", out, *extra)
    return result, out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One suite for the tests that only read it (built with the running Python: nothing to install)."""
    from typer.testing import CliRunner

    from repo_agent.cli import app

    tmp = tmp_path_factory.mktemp("swebench")
    runner = CliRunner()
    result, out = build(lambda *a: runner.invoke(app, [str(x) for x in a], catch_exceptions=False), tmp,
                        "--use-current-python", "--per-test-timeout", "20")
    assert result.exit_code == 0, result.output
    return tmp, out, result.output


def sealed(suite, task_id: str, writes: dict[str, str] | None = None):
    """One sealed verdict of the task with `writes` made in its workspace as a model would make them."""
    task = suite.task(task_id)
    with TaskWorkspace.create(suite, task, "auto") as env:
        for path, text in (writes or {}).items():
            (env.root / path).parent.mkdir(parents=True, exist_ok=True)
            (env.root / path).write_text(text)
        return env.run_tests(fail_fast=True), env.final_diff()


def test_the_workspace_is_base_commit_in_a_fresh_repository_without_the_new_tests(built):
    tmp, out, output = built
    suite = load_suite(out)
    assert suite.kind == "swebench" and suite.task_ids == ["swebench/acme__calc-1", "swebench/acme__calc-2", "swebench/acme__shop-1"]
    # an unknown repo/version is said once per instance; the spec file's repo is not
    assert output.count("acme/calc 0.1 is not in the environment table") == 2 and "acme/shop" not in output
    task = suite.task("acme__calc-2")
    assert task.goal.startswith('slugify("a  b") gives "a--b"')
    assert task.resolution.fail_to_pass == ("tests/test_text.py::test_slugify_collapses_spaces",)
    with materialize(suite, task) as ws:
        names = sorted(p.relative_to(ws.root).as_posix() for p in ws.root.rglob("*") if p.is_file() and ".git" not in p.parts)
        assert names == ["README.md", "calc/__init__.py", "calc/ops.py", "calc/text.py", "pyproject.toml",
                         "tests/test_ops.py", "tests/test_text.py"]
        assert "collapses" not in (ws.root / "tests/test_text.py").read_text()  # the new test is not there
        assert "replace(\" \", \"-\")" in (ws.root / "calc/text.py").read_text()  # the bug is
        repo = git.Repo(ws.root)
        assert [c.message.strip() for c in repo.iter_commits("--all")] == ["base"]  # no upstream history
        assert not repo.is_dirty(untracked_files=True)
        blobs = {b.data_stream.read() for b in repo.head.commit.tree.traverse() if b.type == "blob"}
        assert not any(b"collapses" in blob or b'"-".join' in blob for blob in blobs)
    # the instance's new test file and the reference are elsewhere under the (hidden) suite root
    assert not any((suite.root / task.base / p).exists() for p, _ in suite.task("acme__calc-1").sealed_overlay)


def test_gold_resolves_and_empty_test_edits_and_careless_fixes_do_not(built):
    _, out, _ = built
    suite = load_suite(out)
    gold, _ = sealed(suite, "acme__calc-2", suite.reference_text(suite.task("acme__calc-2")))
    assert gold.outcome == "passed" and gold.resolution["status"] == "RESOLVED_FULL"
    empty, diff = sealed(suite, "acme__calc-2")
    assert empty.outcome == "failed" and empty.resolution["status"] == "RESOLVED_NO" and diff == ""
    assert empty.resolution["tests"] == {"tests/test_text.py::test_slugify_collapses_spaces": "FAILED",
                                         "tests/test_text.py::test_slugify_lowercases": "PASSED"}
    # the careless fix resolves the test and breaks a PASS_TO_PASS one
    careless, _ = sealed(suite, "acme__calc-2", {"calc/text.py": CARELESS_SLUGIFY})
    assert careless.outcome == "failed" and careless.resolution["status"] == "RESOLVED_NO"
    assert careless.resolution["FAIL_TO_PASS"]["success"] == ["tests/test_text.py::test_slugify_collapses_spaces"]
    assert careless.resolution["PASS_TO_PASS"]["failure"] == ["tests/test_text.py::test_slugify_lowercases"]
    # editing the tests: the old file made to pass, and the new test file written before the verdict brings it
    weak = "def test_slugify_collapses_spaces():\n    pass\n\n\ndef test_slugify_lowercases():\n    pass\n"
    edited, diff = sealed(suite, "acme__calc-2", {"tests/test_text.py": weak})
    assert edited.outcome == "failed" and "tests/" not in diff
    planted, diff = sealed(suite, "acme__calc-1", {"tests/test_add.py": "def test_add():\n    pass\n\n\ndef test_add_zero():\n    pass\n"})
    assert planted.outcome == "failed" and planted.resolution["tests"]["tests/test_add.py::test_add"] == "FAILED"
    with TaskWorkspace.create(suite, suite.task("acme__calc-1"), "auto") as env:
        assert env.refusal("tests/test_add.py") and env.refusal("tests/test_text.py")
        assert env.refusal("conftest.py") and env.refusal(".git/config")
        assert env.refusal("calc/helpers.py") is None  # a new module may be added


def test_skipping_or_faking_the_tests_does_not_resolve(built):
    _, out, _ = built
    suite = load_suite(out)
    skip = 'import pytest\npytest.skip("no", allow_module_level=True)\n' + "def slugify(text):\n    return text\n"
    skipped, _ = sealed(suite, "acme__calc-2", {"calc/text.py": skip})
    assert skipped.outcome == "tests_missing" and skipped.resolution["status"] == "RESOLVED_NO"
    # the unittest runner: printed result lines are not results (only the signed records count)
    forged = ("import sys\nfor name in ('test_total (cart.tests.CartTests)', 'test_count (cart.tests.CartTests)'):\n"
              "    sys.stderr.write(name + ' ... ok\\n')\n" + (Path(suite.root) / suite.task("acme__shop-1").base / "shop/cart.py").read_text())
    faked, _ = sealed(suite, "acme__shop-1", {"shop/cart.py": forged})
    assert faked.outcome == "failed" and faked.resolution["FAIL_TO_PASS"]["failure"] == ["test_total (cart.tests.CartTests)"]
    gold, _ = sealed(suite, "acme__shop-1", suite.reference_text(suite.task("acme__shop-1")))
    assert gold.outcome == "passed"
    assert gold.resolution["tests"]["An empty cart holds nothing."] == "PASSED"  # matched by its docstring


def test_validate_checks_gold_and_empty_per_instance_and_says_why(cli, built, tmp_path):
    _, out, _ = built
    report = tmp_path / "v.json"
    result = cli("suite", "validate", "--suite", out, "--json", report, "--repeats", "1", "--no-minimal")
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["valid"] == 3
    for task in data["tasks"]:
        assert task["buggy"][0]["resolution"]["status"] == "RESOLVED_NO"
        assert task["reference"][0]["resolution"]["status"] == "RESOLVED_FULL"
    # mislabeled: a FAIL_TO_PASS test that passes without the patch, and an unknown PASS_TO_PASS test
    suite = load_suite(out)
    task = suite.task("acme__calc-1")
    bad = replace(task, resolution=replace(task.resolution, fail_to_pass=("tests/test_ops.py::test_sub", "tests/test_add.py::test_add"),
                                            pass_to_pass=("tests/test_ops.py::test_gone",)))
    from repo_agent.suites.task import save_suite, with_tasks

    save_suite(with_tasks(suite, (bad,)), tmp_path / "bad_suite.json")
    result = cli("suite", "validate", "--suite", tmp_path / "bad_suite.json", "--json", report, "--repeats", "1", "--no-minimal")
    assert result.exit_code == 1
    problems = json.loads(report.read_text())["tasks"][0]["problems"]
    assert "FAIL_TO_PASS test(s) pass without the patch: tests/test_ops.py::test_sub" in problems
    assert "PASS_TO_PASS test(s) fail without the patch: tests/test_ops.py::test_gone" in problems
    assert any("reference fix failed" in p and "test_gone" in p for p in problems)


@needs_bwrap
@pytest.mark.parametrize("toolset", ["files", "bash"])
def test_the_oracle_resolves_every_instance_and_predictions_load(cli, built, tmp_path, toolset):
    from datasets import load_dataset

    _, out, _ = built
    run = tmp_path / "run"
    result = cli("eval", "--suite", out, "--trace-dir", run, "--llm-provider", "oracle", "--allow-oracle",
                 "--toolset", toolset, "--num-workers", "3")
    assert result.exit_code == 0, result.output
    traces = [read_trace(p) for p in sorted((run / "traces").glob("*.json"))]
    assert len(traces) == 3 and all(t["verdict"]["outcome"] == "passed" for t in traces)
    assert all(t["verdict"]["resolution"]["status"] == "RESOLVED_FULL" for t in traces)
    preds = tmp_path / "preds.jsonl"
    result = cli("export", "predictions", "--trace-dir", run, "--out", preds, "--model-name", "oracle-test")
    assert result.exit_code == 0, result.output
    rows = list(load_dataset("json", data_files=str(preds), split="train"))
    assert [r["instance_id"] for r in rows] == ["acme__calc-1", "acme__calc-2", "acme__shop-1"]
    assert all(set(r) == {"instance_id", "model_name_or_path", "model_patch"} and r["model_name_or_path"] == "oracle-test"
               for r in rows)
    # each model_patch applies with git to the repository at base_commit and touches no test file
    suite = load_suite(out)
    for row in rows:
        task = suite.task(row["instance_id"])
        assert "tests/" not in row["model_patch"]
        with materialize(suite, task) as ws:
            check = subprocess.run(["git", "apply", "--check", "-"], input=row["model_patch"], text=True,
                                   cwd=ws.root, capture_output=True)
            assert check.returncode == 0, check.stderr


@needs_bwrap
def test_a_shell_sees_neither_the_new_tests_nor_the_upstream_history(built):
    from repo_agent.environments import open_environment
    from repo_agent.protocol import ToolCall

    tmp, out, _ = built
    suite = load_suite(out)
    task = suite.task("acme__calc-1")
    env = open_environment(suite, task, "bash", "bwrap")
    try:
        def run(command: str) -> str:
            return env.execute(ToolCall("bash", {"command": command})).text

        assert run("git log --oneline | wc -l").splitlines()[0].strip() == "1"
        assert run("sed -i '2s/a - b/a + b/' calc/ops.py && git diff --stat").count("calc/ops.py") == 1
        assert "[undone]" not in run("git status --short")  # git reads the repository without rewriting it
        assert "test_add.py" not in run("ls -R .")
        assert "[exit code 0]" not in run(f"git -C {tmp / 'repos' / 'acme__calc'} log --oneline")
        assert "[exit code 0]" not in run(f"cat {suite.root / 'acme__calc-1' / 'tests' / 'tests' / 'test_add.py'}")
        report = env.run_tests()
        assert report.outcome == "passed"
    finally:
        env.close()


def test_verl_parquet_carries_the_fields_and_stable_ids(cli, built, tmp_path):
    from datasets import load_dataset

    from repo_agent.suites.task import save_suite, with_tasks
    from repo_agent.toolsets import toolset_named

    _, out, _ = built
    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):
        result = cli("export", "verl", "--suite", out, "--out", folder, "--toolset", "bash")
        assert result.exit_code == 0, result.output
    rows = [r for side in ("train", "test") if (first / f"{side}.parquet").exists()
            for r in load_dataset("parquet", data_files=str(first / f"{side}.parquet"), split="train")]
    assert sorted(r["extra_info"]["instance_id"] for r in rows) == ["acme__calc-1", "acme__calc-2", "acme__shop-1"]
    suite = load_suite(out)
    for row in rows:
        task = suite.task(row["extra_info"]["task_id"])
        assert row["data_source"] == "repo-agent/swebench" and row["ability"] == "swe" and row["agent_name"] == "tool_agent"
        assert row["prompt"] == [{"role": "system", "content": toolset_named("bash").system_prompt("json")},
                                 {"role": "user", "content": "GOAL:\n" + task.goal}]
        assert row["reward_model"]["style"] == "rule"
        truth = json.loads(row["reward_model"]["ground_truth"])
        assert truth["FAIL_TO_PASS"] == list(task.resolution.fail_to_pass)
        assert truth["PASS_TO_PASS"] == list(task.resolution.pass_to_pass)
        assert truth["reference_diff"].startswith("--- a/") and "+" in truth["reference_diff"]
        assert set(row["extra_info"]["tools_kwargs"]) == {"bash", "submit"}
        assert row["extra_info"]["tools_kwargs"]["bash"]["create_kwargs"]["task_id"] == task.task_id
        assert row["extra_info"]["split"] in ("train", "test")
    for side in ("train", "test"):
        if (first / f"{side}.parquet").exists():
            assert (first / f"{side}.parquet").read_bytes() == (second / f"{side}.parquet").read_bytes()
    # a task's index does not depend on the other tasks
    smaller = tmp_path / "one_suite.json"
    save_suite(with_tasks(suite, suite.tasks[1:2]), smaller)
    assert cli("export", "verl", "--suite", smaller, "--out", tmp_path / "c").exit_code == 0
    only = [r for p in (tmp_path / "c").glob("*.parquet") for r in load_dataset("parquet", data_files=str(p), split="train")]
    before = {r["extra_info"]["task_id"]: r["extra_info"]["index"] for r in rows}
    assert [(r["extra_info"]["task_id"], r["extra_info"]["index"]) for r in only] == [
        (suite.tasks[1].task_id, before[suite.tasks[1].task_id])]


def test_parquet_records_with_list_test_names_build_the_same_tasks(cli, tmp_path):
    from datasets import Dataset

    records_path, repos, specs = write_swebench(tmp_path)
    records = [json.loads(line) for line in records_path.read_text().splitlines()]
    for r in records:
        r["FAIL_TO_PASS"], r["PASS_TO_PASS"] = json.loads(r["FAIL_TO_PASS"]), json.loads(r["PASS_TO_PASS"])
    records.append({**records[0], "instance_id": "acme__calc-9", "FAIL_TO_PASS": []})  # no test: skipped, said why
    parquet = tmp_path / "instances.parquet"
    Dataset.from_list(records).to_parquet(str(parquet))
    result = cli("suite", "build", "swebench", "--instances", parquet, "--repos-dir", repos, "--specs", specs,
                 "--work-dir", tmp_path / "work", "--out", tmp_path / "p.json", "--use-current-python")
    assert result.exit_code == 0, result.output
    assert "skipped swebench/acme__calc-9: FAIL_TO_PASS is empty" in result.output
    result = cli("suite", "build", "swebench", "--instances", tmp_path / "instances.jsonl", "--repos-dir", repos,
                 "--specs", specs, "--work-dir", tmp_path / "work", "--out", tmp_path / "j.json", "--use-current-python")
    assert result.exit_code == 0
    assert load_suite(tmp_path / "p.json").tasks == load_suite(tmp_path / "j.json").tasks


def test_bad_records_and_specs_are_reported_not_fatal(cli, tmp_path):
    records_path, repos, specs = write_swebench(tmp_path)
    lines = records_path.read_text().splitlines()
    broken = json.loads(lines[0]) | {"instance_id": "acme__calc-8", "base_commit": "0" * 40}
    other = json.loads(lines[0]) | {"instance_id": "other__x-1", "repo": "other/x"}
    records_path.write_text("\n".join([lines[0], "{not json", json.dumps(broken), json.dumps(other)]) + "\n")
    result = cli("suite", "build", "swebench", "--instances", records_path, "--repos-dir", repos, "--specs", specs,
                 "--work-dir", tmp_path / "work", "--out", tmp_path / "s.json", "--use-current-python")
    assert result.exit_code == 0, result.output
    assert "record 1: line is not valid JSON" in result.output
    assert "acme__calc-8: base_commit 0000000000000000000000000000000000000000 is not in the clone" in result.output
    assert "other__x-1: no clone of other/x under" in result.output
    assert load_suite(tmp_path / "s.json").task_ids == ["swebench/acme__calc-1"]
    bad_specs = tmp_path / "bad_specs.json"
    bad_specs.write_text(json.dumps({"acme/calc": {"*": {"runner": "nose"}}}))
    result = cli("suite", "build", "swebench", "--instances", records_path, "--repos-dir", repos, "--specs", bad_specs,
                 "--out", tmp_path / "t.json")
    assert result.exit_code != 0 and "runner must be one of pytest, unittest" in result.output


def test_bugsinpy_bugs_become_instances_the_swebench_judge_validates(cli, tmp_path):
    from fixtures_suites import write_bugsinpy

    root, repos, _ = write_bugsinpy(tmp_path)
    records = tmp_path / "bugsinpy.jsonl"
    result = cli("suite", "convert", "bugsinpy-to-swebench", "--root", root, "--projects", "calc", "--repos-dir", repos,
                 "--work-dir", tmp_path / "work", "--out", records, "--use-current-python")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    assert [r["instance_id"] for r in rows] == ["calc-1", "calc-2"]
    assert json.loads(rows[0]["FAIL_TO_PASS"]) == ["tests/test_ops.py::test_add"]
    assert json.loads(rows[0]["PASS_TO_PASS"]) == ["tests/test_ops.py::test_add_zero"]  # the file's other passing test
    assert "def test_add():" in rows[0]["test_patch"] and "return a + b" in rows[0]["patch"]
    out = tmp_path / "converted_suite.json"
    result = cli("suite", "build", "swebench", "--instances", records, "--repos-dir", repos, "--work-dir", tmp_path / "w2",
                 "--out", out, "--use-current-python")
    assert result.exit_code == 0, result.output
    result = cli("suite", "validate", "--suite", out, "--repeats", "1", "--no-minimal")
    assert result.exit_code == 0, result.output
    # the workspace holds the buggy commit's tests only: the fixed test arrives with the verdict
    suite = load_suite(out)
    with materialize(suite, suite.task("calc-1")) as ws:
        assert "def test_add():" not in (ws.root / "tests/test_ops.py").read_text()


def test_an_unknown_repository_gets_a_venv_with_itself_installed_from_its_metadata(cli, tmp_path):
    """The slow path: pip builds a venv with pytest and the fixture repository (its pyproject.toml)."""
    result, out = build(cli, tmp_path, "--only", "acme__calc-2")
    assert result.exit_code == 0, result.output
    assert result.output.count("acme/calc 0.1 is not in the environment table: a venv of Python") == 1
    suite = load_suite(out)
    python = Path(suite.task("acme__calc-2").test.python)
    assert python.is_relative_to(tmp_path / "work" / "venvs") and python.exists()
    shown = subprocess.run([python, "-m", "pip", "show", "calc"], capture_output=True, text=True)
    assert shown.returncode == 0 and "Name: calc" in shown.stdout
    gold, _ = sealed(suite, "acme__calc-2", suite.reference_text(suite.task("acme__calc-2")))
    careless, _ = sealed(suite, "acme__calc-2", {"calc/text.py": CARELESS_SLUGIFY})
    assert (gold.outcome, careless.outcome) == ("passed", "failed")  # the workspace's code, not the installed copy


def test_a_run_with_thousands_of_read_only_files_starts_and_guards_them(tmp_path):
    """A large repository's test tree (Django's has thousands of files) makes the bootstrap config longer
    than one argument may be; it then travels through a read-only file."""
    from repo_agent.suites.task import TestSpec
    from repo_agent.testrun import CONFIG_ARG_LIMIT, run_tests

    data = tmp_path / "data"
    data.mkdir()
    files = [data / f"fixture_file_with_a_rather_long_name_{i:05d}.txt" for i in range(3000)]
    for path in files:
        path.write_text("pristine\n")
    assert sum(len(str(p)) for p in files) > 2 * CONFIG_ARG_LIMIT
    (tmp_path / "test_big.py").write_text(
        "from pathlib import Path\n\n\ndef test_guarded():\n    target = Path('data/fixture_file_with_a_rather_long_name_02999.txt')\n"
        "    try:\n        target.write_text('changed')\n    except OSError:\n        pass\n"
        "    assert target.read_text() == 'pristine\\n'\n")
    report = run_tests(tmp_path, TestSpec(args=("test_big.py",), per_test_timeout=60), sandbox="auto", readonly=files)
    assert report.outcome == "passed", report.summary
    assert files[-1].read_text() == "pristine\n"
