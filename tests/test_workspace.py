import os
import time
import uuid
from pathlib import Path

import pytest

from repo_agent.suites.task import TestSpec, load_suite
from repo_agent.testrun import run_tests
from repo_agent.workspace import apply_reference, materialize

from conftest import BUNDLED_SUITE


def write_tests(root: Path, body: str) -> TestSpec:
    root.mkdir(parents=True, exist_ok=True)
    (root / "test_it.py").write_text(body)
    return TestSpec(args=("test_it.py",), per_test_timeout=2, total_timeout=20)


def processes_with(marker: str) -> list[int]:
    """Live (non-zombie) processes whose command line holds `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes() and pid_alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_counts_and_summary_of_a_test_run(tmp_path):
    spec = write_tests(tmp_path, (
        "import pytest\n"
        "def test_ok(): assert 1\n"
        "def test_bad(): assert 1 == 2, 'one is not two'\n"
        "@pytest.mark.skip\n"
        "def test_skip(): pass\n"
        "def test_hang():\n    while True: pass\n"
    ))
    report = run_tests(tmp_path, spec)
    assert (report.passed, report.failed, report.skipped, report.timeouts) == (1, 2, 1, 1)
    assert not report.ok
    assert report.snippet().startswith("[TESTS FAIL] 1 passed, 2 failed, 1 skipped (1 timed out)")
    assert report.outcome == "failed"
    assert "test_bad" in report.summary and "test_hang: timeout" in report.summary


def test_fail_fast_stops_at_first_failure(tmp_path):
    spec = write_tests(tmp_path, "def test_a(): assert 0\n" + "".join(f"def test_{i}(): pass\n" for i in range(5)))
    assert run_tests(tmp_path, spec, fail_fast=True).total == 1
    assert run_tests(tmp_path, spec).total == 6


def test_whole_run_timeout_kills_the_process_group(tmp_path):
    marker = f"survivor-{uuid.uuid4().hex}"  # pids inside the sandbox's pid namespace mean nothing here
    spec = write_tests(tmp_path, (
        "import subprocess, time, signal\n"
        "def test_spawn_and_hang():\n"
        "    signal.signal(signal.SIGALRM, signal.SIG_IGN)  # defeat the per-test timeout\n"
        f"    subprocess.Popen(['sleep', '300', '{marker}'])\n"
        "    time.sleep(300)\n"
    ))
    spec = TestSpec(args=spec.args, per_test_timeout=1, total_timeout=2)  # it sleeps: the wall backstop (6x) kills it at 12 s
    started = time.monotonic()
    report = run_tests(tmp_path, spec)
    assert time.monotonic() - started < 30
    assert report.run_timed_out and not report.ok and report.outcome == "error"
    assert "whole-run timeout" in report.snippet()
    for _ in range(50):
        if not processes_with(marker):
            break
        time.sleep(0.1)
    assert not processes_with(marker), "a process spawned by the tests survived the run"


def test_environment_is_scrubbed_of_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    monkeypatch.setenv("TOGETHER_API_KEY", "tgp_v1_secret")
    monkeypatch.setenv("HARMLESS_SETTING", "kept")
    spec = write_tests(tmp_path, (
        "import os\n"
        "def test_env():\n"
        "    assert 'OPENAI_API_KEY' not in os.environ and 'TOGETHER_API_KEY' not in os.environ\n"
        "    assert os.environ['HARMLESS_SETTING'] == 'kept'\n"
    ))
    assert run_tests(tmp_path, spec).ok


def test_memory_is_limited(tmp_path):
    spec = write_tests(tmp_path, (
        "import pytest\n"
        "def test_big():\n"
        "    with pytest.raises(MemoryError):\n"
        "        bytearray(8 * 1024 ** 3)\n"
    ))
    assert run_tests(tmp_path, spec).ok


def test_workspace_holds_only_task_files_and_no_reference():
    suite = load_suite(BUNDLED_SUITE)
    for task in suite.tasks:
        with materialize(suite, task) as ws:
            files = sorted(p.relative_to(ws.root).as_posix() for p in ws.root.rglob("*") if p.is_file())
            assert files == sorted(task.files)
            assert not any("correct" in f for f in files)
            reference = suite.reference_text(task)
            for path, text in reference.items():
                assert (ws.root / path).read_text() != text
        assert not ws.root.exists()


@pytest.mark.parametrize("task_id", ["bundled/gcd", "bundled/bitcount"])
def test_buggy_fails_and_reference_passes(task_id):
    suite = load_suite(BUNDLED_SUITE)
    task = suite.task(task_id)
    with materialize(suite, task) as ws:
        assert not run_tests(ws.root, task.test, fail_fast=True).ok
        apply_reference(suite, ws)
        assert run_tests(ws.root, task.test).ok
