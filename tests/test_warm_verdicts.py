"""Warm verdict workers (issue 27): the same verdicts as cold runs, nothing of one run in the next,
and a worker that fails mid-run costs a cold rerun, never a guessed verdict."""

import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import BUNDLED_SUITE
from test_sealed_verdict import (BUGGY_GCD, EXIT_HACKS, FIXED_GCD, FORGE_RECORDS, HAVE_BWRAP, READ_THE_FIX,
                                 TAMPER_AT_IMPORT, TEST_MODULE_HACKS, WRONG_GCD)
from test_verdict_hacks import PROGRAM_HACKS
from repo_agent import warm
from repo_agent.sandbox import resolve_sandbox
from repo_agent.suites.task import TestSpec, load_suite
from repo_agent.testrun import run_tests
from repo_agent.workspace import TaskWorkspace

pytestmark = pytest.mark.skipif(not HAVE_BWRAP, reason="warm workers need bubblewrap")

HACKS = {
    **{f"exit: {name}": text + WRONG_GCD for name, text in EXIT_HACKS.items()},
    **{f"test module: {name}": text + BUGGY_GCD for name, text in TEST_MODULE_HACKS.items()},
    **{f"program: {name}": program for name, (program, _, _) in PROGRAM_HACKS.items()},
    "forged records (buggy)": FORGE_RECORDS + BUGGY_GCD,
    "forged records (fixed)": FORGE_RECORDS + FIXED_GCD,
    "rewrite the tests at import": TAMPER_AT_IMPORT + BUGGY_GCD,
    "read the reference fix": READ_THE_FIX,
}


@pytest.fixture(scope="module")
def suite():
    return load_suite(BUNDLED_SUITE)


@pytest.fixture(autouse=True)
def warm_again():
    yield
    warm.set_verdict_workers("warm")


def verdict(suite, task, mode, program=None, reference=False, fail_fast=False):
    warm.set_verdict_workers(mode)
    with TaskWorkspace.create(suite, task, resolve_sandbox("auto")) as env:
        if reference:
            for path, text in suite.reference_text(task).items():
                (env.root / path).write_text(text)
        if program is not None:
            (env.root / "python_programs" / "gcd.py").write_text(program)
        return env.run_tests(fail_fast)


def essence(report):
    return (report.outcome, report.passed, report.failed, report.errors, report.skipped, report.tampered,
            sorted(report.tests.items()))


def test_warm_and_cold_agree_on_every_bundled_task(suite):
    for task in suite.tasks:
        for reference, fail_fast in ((False, True), (True, False)):
            cold = verdict(suite, task, "cold", reference=reference, fail_fast=fail_fast)
            hot = verdict(suite, task, "warm", reference=reference, fail_fast=fail_fast)
            assert hot.worker == "warm" and cold.worker == "cold", (hot.worker, cold.worker)
            assert essence(hot) == essence(cold), (task.task_id, reference, hot.summary, cold.summary)
            assert hot.outcome == ("passed" if reference else "failed")


@pytest.mark.parametrize("hack", sorted(HACKS))
def test_warm_and_cold_agree_on_every_hack_of_the_sealed_verdict_set(suite, hack):
    cold = verdict(suite, suite.task("gcd"), "cold", HACKS[hack])
    hot = verdict(suite, suite.task("gcd"), "warm", HACKS[hack])
    assert hot.worker == "warm", hot.worker
    assert hot.outcome != "passed"
    assert essence(hot) == essence(cold), (hot.summary, cold.summary)


LEAVE_TRACES = """
import json, os, random, subprocess, threading, time
from pathlib import Path


def test_leave_traces():
    json.left_by_the_last_run = True
    Path("/tmp/left").write_text("x")
    Path("/dev/shm/left").write_text("x")
    Path(os.environ["HOME"], "left").write_text("x")
    os.environ["LEFT_BY_THE_LAST_RUN"] = "1"
    threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
    subprocess.Popen(["sleep", "4321"], start_new_session=True)
    Path("random.txt").write_text(repr(random.random()))
"""

FIND_TRACES = """
import json, os, random, threading
from pathlib import Path


def test_find_no_traces():
    assert not hasattr(json, "left_by_the_last_run")
    assert not Path("/tmp/left").exists() and not Path("/dev/shm/left").exists()
    assert not Path(os.environ["HOME"], "left").exists()
    assert "LEFT_BY_THE_LAST_RUN" not in os.environ
    assert threading.active_count() == 1
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            assert b"4321" not in Path("/proc", pid, "cmdline").read_bytes()
        except OSError:
            pass
    Path("random.txt").write_text(repr(random.random()))
"""


def one_file_run(test_text):
    base = Path(tempfile.mkdtemp(prefix="repo-agent-sealed-"))
    (base / "ws").mkdir()
    (base / "ws" / "test_it.py").write_text(test_text)
    report = run_tests(base / "ws", TestSpec(args=("test_it.py",)), sandbox="auto")
    return report, base


def sleeping_processes(marker=b"4321"):
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker in Path("/proc", pid, "cmdline").read_bytes():
                found.append(pid)
        except OSError:
            pass
    return found


def test_nothing_of_one_run_reaches_the_next():
    first, first_dir = one_file_run(LEAVE_TRACES)
    assert first.outcome == "passed" and first.worker == "warm", first.summary
    assert not sleeping_processes(), "a process of the run outlived it"
    started = warm.POOL.started
    second, second_dir = one_file_run(FIND_TRACES)
    assert warm.POOL.started == started, "the second run did not reuse the worker"
    assert second.outcome == "passed" and second.worker == "warm", (second.summary, second.output_tail)
    assert (first_dir / "ws" / "random.txt").read_text() != (second_dir / "ws" / "random.txt").read_text()


REACH_FOR_THE_WORKER = """
import os, signal
from pathlib import Path


def test_reach_for_the_worker():
    me = os.readlink("/proc/self")  # this process's number where /proc was mounted (the worker's view)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if pid == me:
            continue
        try:  # the worker's own view of /tmp holds the driver's temp folder (other runs' copies)
            seen = os.listdir("/proc/%s/root/tmp" % pid)
        except OSError:
            seen = []
        assert ".repo-agent-host-tmp" not in seen, "reached the driver's temp folder through process %s" % pid
        try:
            open("/proc/%s/mem" % pid, "r+b").close()
        except OSError:
            continue
        raise AssertionError("write access to the memory of process %s" % pid)
    try:
        os.kill(-1, signal.SIGKILL)
    except OSError:
        pass
"""


def test_a_run_cannot_reach_its_worker():
    report, _ = one_file_run(REACH_FOR_THE_WORKER)
    started = warm.POOL.started
    assert report.outcome == "passed" and report.worker == "warm", (report.summary, report.output_tail)
    again, _ = one_file_run(FIND_TRACES)
    assert again.worker == "warm" and warm.POOL.started == started, "the worker did not survive the run"


def test_a_run_that_kills_its_process_group_kills_only_itself():
    report, _ = one_file_run("import os, signal\n\ndef test_x():\n    os.killpg(os.getpgid(0), signal.SIGKILL)\n")
    started = warm.POOL.started
    assert report.outcome != "passed" and report.worker == "warm"
    again, _ = one_file_run(FIND_TRACES)
    assert again.outcome == "passed" and warm.POOL.started == started


def test_a_worker_killed_mid_run_is_replaced_and_the_verdict_rerun_cold(suite):
    warm.set_verdict_workers("warm")
    verdict(suite, suite.task("gcd"), "warm", reference=True)  # a worker is up
    killed = []

    def kill_the_busy_worker():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not killed:
            for worker in list(warm.POOL.busy):
                os.killpg(worker.proc.pid, signal.SIGKILL)
                killed.append(worker)
            time.sleep(0.01)

    killer = threading.Thread(target=kill_the_busy_worker)
    killer.start()
    report = verdict(suite, suite.task("gcd"), "warm", "import time\ntime.sleep(1.5)\n" + FIXED_GCD)
    killer.join()
    assert killed, "no busy worker was seen"
    assert report.outcome == "passed", report.summary
    assert report.worker.startswith("cold (the warm worker failed"), report.worker
    started = warm.POOL.started
    after = verdict(suite, suite.task("gcd"), "warm", reference=True)
    assert after.worker == "warm" and warm.POOL.started == started + 1  # a fresh worker replaced it


def test_runs_a_worker_cannot_run_as_a_cold_run_would_go_cold(tmp_path):
    box = resolve_sandbox("auto")
    assert warm.why_cold(box, "/usr/bin/python3-of-a-bugsinpy-venv", "pytest", {}) == "the task has its own interpreter"
    venv_python = tmp_path / "venv" / "bin" / "python"  # a venv's python: a link to the same binary, other packages
    venv_python.parent.mkdir(parents=True)
    venv_python.symlink_to(os.path.realpath(os.sys.executable))
    assert warm.why_cold(box, str(venv_python), "pytest", {}) == "the task has its own interpreter"
    assert "interpreter start-up" in warm.why_cold(box, os.sys.executable, "pytest", {"PYTHONHASHSEED": "1"})
    assert warm.why_cold(box, os.sys.executable, "unittest", {}) == "runner 'unittest'"
    assert warm.why_cold(resolve_sandbox("none"), os.sys.executable, "pytest", {}).startswith("no sandbox")
    assert warm.why_cold(box, os.sys.executable, "pytest", {"PYTHONPATH": "src"}) is None
    warm.set_verdict_workers("cold")
    assert warm.why_cold(box, os.sys.executable, "pytest", {}) == "verdict workers are off"


def test_a_long_process_keeps_only_a_few_idle_workers(tmp_path):
    """Each suite hides its own folder, so it needs a worker of its own; idle ones are capped, oldest out."""
    for i in range(warm.MAX_IDLE + 2):
        hidden = tmp_path / f"suite{i}"
        hidden.mkdir()
        base = Path(tempfile.mkdtemp(prefix="repo-agent-sealed-"))
        (base / "ws").mkdir()
        (base / "ws" / "test_it.py").write_text("def test_x():\n    assert True\n")
        report = run_tests(base / "ws", TestSpec(args=("test_it.py",)), sandbox="auto", hide=[hidden])
        assert report.outcome == "passed" and report.worker == "warm"
    idle = [w for ws in warm.POOL.idle.values() for w in ws]
    assert len(idle) <= warm.MAX_IDLE
    assert str(tmp_path / f"suite{warm.MAX_IDLE + 1}") in {h for w in idle for h in w.key.hide}  # the newest stays
    assert all(w.alive() for w in idle)
