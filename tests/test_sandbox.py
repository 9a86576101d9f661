"""The test run is contained: what test code (hence a model's program) can and cannot reach.

Each test runs the real runner (`testrun.run_tests`) on a folder of test code, inside bubblewrap when it
works here (tests that need it are skipped, saying why, where it does not).
"""

import os
import socket
import time
import uuid
from pathlib import Path

import pytest

from repo_agent.sandbox import SandboxUnavailable, fork_bomb_contained, resolve_sandbox
from repo_agent.suites.task import TestSpec
from repo_agent.testrun import run_tests

BOX = resolve_sandbox("auto")
needs_bwrap = pytest.mark.skipif(not BOX.isolated, reason=f"bubblewrap does not work here: {BOX.note}")


def make_tests(root: Path, body: str, per_test: float = 10, total: float = 60) -> TestSpec:
    root.mkdir(parents=True, exist_ok=True)
    (root / "test_it.py").write_text(body)
    return TestSpec(args=("test_it.py",), per_test_timeout=per_test, total_timeout=total)


@needs_bwrap
def test_the_real_home_and_its_secrets_are_hidden(tmp_path, monkeypatch):
    marker = Path.home() / f".repo-agent-probe-{uuid.uuid4().hex}"
    marker.write_text("machine example.com login me password secret\n")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_not_for_tests")
    try:
        spec = make_tests(tmp_path / "ws", (
            "import os\n"
            "def test_home():\n"
            f"    assert not os.path.exists({str(marker)!r})\n"
            "    assert not os.path.exists(os.path.expanduser('~/.netrc'))\n"
            "    assert os.listdir(os.path.expanduser('~')) == []\n"
            "    assert 'GITHUB_TOKEN' not in os.environ\n"
        ))
        report = run_tests(tmp_path / "ws", spec)
    finally:
        marker.unlink()
    assert report.ok, report.summary


@needs_bwrap
def test_no_network_not_even_loopback(tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        spec = make_tests(tmp_path / "ws", (
            "import socket, pytest\n"
            "def test_connect():\n"
            "    with pytest.raises(OSError):\n"
            f"        socket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
        ))
        report = run_tests(tmp_path / "ws", spec)
    finally:
        server.close()
    assert report.ok, report.summary


@needs_bwrap
def test_writes_outside_the_workspace_fail(tmp_path):
    outside = Path(__file__).resolve().parent / f".outside-{uuid.uuid4().hex}.txt"  # a host folder, not /tmp
    spec = make_tests(tmp_path / "ws", (
        "import pytest\n"
        "def test_write():\n"
        f"    with pytest.raises(OSError):\n"
        f"        open({str(outside)!r}, 'w').write('x')\n"
        "    open('inside.txt', 'w').write('fine')\n"
        "    open('/tmp/private.txt', 'w').write('a private /tmp is fine')\n"
    ))
    try:
        report = run_tests(tmp_path / "ws", spec)
        assert report.ok, report.summary
        assert not outside.exists()
        assert not Path("/tmp/private.txt").exists()
    finally:
        outside.unlink(missing_ok=True)


@needs_bwrap
def test_read_only_files_stay_read_only(tmp_path):
    root = tmp_path / "ws"
    spec = make_tests(root, (
        "import os, pytest\n"
        "def test_write():\n"
        "    with pytest.raises(OSError):\n"
        "        open('data.json', 'w').write('[]')\n"
        "    with pytest.raises(OSError):\n"
        "        os.remove('data.json')\n"
    ))
    (root / "data.json").write_text("[1]")
    report = run_tests(root, spec, readonly=[root / "data.json"])
    assert report.ok, report.summary
    assert (root / "data.json").read_text() == "[1]"


def test_read_only_files_are_guarded_without_a_sandbox_too(tmp_path):
    root = tmp_path / "ws"
    spec = make_tests(root, (
        "import os, pytest\n"
        "def test_write():\n"
        "    with pytest.raises(PermissionError):\n"
        "        open('data.json', 'w').write('[]')\n"
        "    with pytest.raises(PermissionError):\n"
        "        os.replace('other.txt', 'data.json')\n"
    ))
    (root / "data.json").write_text("[1]")
    (root / "other.txt").write_text("x")
    report = run_tests(root, spec, sandbox="none", readonly=[root / "data.json"])
    assert report.ok and report.sandbox == "none", report.summary
    assert (root / "data.json").read_text() == "[1]"


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def test_a_fork_bomb_is_contained_and_nothing_survives(tmp_path):
    if not fork_bomb_contained():
        pytest.skip("no pids cgroup can be created here and root is exempt from RLIMIT_NPROC: a fork bomb cannot be contained")
    marker = f"bomb-{uuid.uuid4().hex}"
    spec = make_tests(tmp_path / "ws", (
        "import os, time\n"
        "def test_bomb():\n"
        "    started = 0\n"
        "    try:\n"
        "        for _ in range(3000):\n"
        "            if os.fork() == 0:\n"
        f"                os.execvp('sleep', ['sleep', '120', '{marker}'])\n"
        "            started += 1\n"
        "    except OSError:\n"
        "        pass\n"
        "    assert started < 1000, started\n"
    ), total=60)
    report = run_tests(tmp_path / "ws", spec)
    assert report.ok, report.summary
    time.sleep(0.5)
    assert _processes_with(marker) == []


def test_an_infinite_print_is_stopped_and_reported(tmp_path):
    """Output goes to files capped at OUTPUT_LIMIT_BYTES (RLIMIT_FSIZE): writing past it fails (Python
    ignores SIGXFSZ, so the write raises instead of the process dying)."""
    spec = make_tests(tmp_path / "ws", (
        "import sys\n"
        "def test_print():\n"
        "    while True:\n"
        "        sys.stdout.write('x' * 65536)\n"
    ), per_test=120, total=120)
    started = time.monotonic()
    report = run_tests(tmp_path / "ws", spec)
    assert time.monotonic() - started < 100, "the run was not cut short by the output limit"
    assert report.outcome in ("failed", "error"), report.summary
    assert "File too large" in report.summary or "SIGXFSZ" in report.summary, report.summary


def test_a_memory_hog_is_stopped(tmp_path):
    spec = make_tests(tmp_path / "ws", (
        "def test_hog():\n"
        "    blocks = []\n"
        "    while True:\n"
        "        blocks.append(bytes(1024 ** 3))\n"
    ))
    report = run_tests(tmp_path / "ws", spec)
    assert report.outcome == "failed" and "MemoryError" in report.summary, report.summary


def test_a_detached_daemon_does_not_outlive_the_run(tmp_path):
    marker = f"daemon-{uuid.uuid4().hex}"
    spec = make_tests(tmp_path / "ws", (
        "import subprocess\n"
        "def test_daemon():\n"
        f"    subprocess.Popen(['setsid', 'sleep', '300', '{marker}'], start_new_session=True)\n"
    ))
    report = run_tests(tmp_path / "ws", spec)
    assert report.ok, report.summary
    time.sleep(0.5)
    survivors = _processes_with(marker)
    for pid in survivors:
        os.kill(pid, 9)
    if not BOX.isolated and not fork_bomb_contained():
        pytest.skip("without bubblewrap or a pids cgroup a process that leaves the process group survives")
    assert survivors == []


def test_bwrap_mode_refuses_to_run_without_bubblewrap(monkeypatch):
    import repo_agent.sandbox as S

    S._bwrap_status.cache_clear()
    monkeypatch.setattr(S, "bwrap_binary", lambda: None)
    try:
        with pytest.raises(SandboxUnavailable, match="no bubblewrap"):
            S.resolve_sandbox("bwrap")
        assert S.resolve_sandbox("auto").kind == "none"
    finally:
        S._bwrap_status.cache_clear()
