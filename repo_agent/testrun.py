"""The driver's test runner.

pytest runs in a subprocess (inside the sandbox when there is one), in its own process group, with
time budgets in **CPU seconds** (the same code gets the same verdict on a quiet and on a loaded
machine): per test call, the task's `per_test_timeout` of CPU time (ITIMER_PROF, in our plugin), and
for the whole run `total_timeout` (RLIMIT_CPU of the test process). Wall-clock limits stay as a
backstop, WALL_BACKSTOP times longer, for code that sleeps or blocks (pytest-timeout's signal method
per test, a kill of the whole run). Memory/file-size/process limits and an environment scrubbed of
credentials complete it. Its stdout/stderr go to a file capped in size, never
whole into memory. Results come from our plugin (`_child/repo_agent_results.py`) as authenticated
records over a pipe, one per test phase as it finishes; verdict.py checks them and decides the outcome.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable

from . import warm
from .sandbox import Sandbox, interpreter_folders, kill_group, new_pids_cgroup, resolve_sandbox
from .secrets import scrubbed_environ
from .suites.task import Resolution, TestSpec
from .verdict import ExpectedTests, TestReport, decide, verify_records

MEMORY_LIMIT_BYTES = int(os.environ.get("REPO_AGENT_TEST_MEMORY_BYTES", 4 * 1024**3))
OUTPUT_LIMIT_BYTES = int(os.environ.get("REPO_AGENT_TEST_OUTPUT_BYTES", 8 * 1024**2))
MAX_RECORD_BYTES = 64 * 1024
MAX_RECORDS = 200_000
CHILD_DIR = Path(__file__).resolve().parent / "_child"
MAX_FILE_BINDS = 2000  # bubblewrap refuses more than 9000 arguments; each bind takes three
CONFIG_ARG_LIMIT = 64 * 1024  # a longer bootstrap config (thousands of protected files) goes through a file
WALL_BACKSTOP = float(os.environ.get("REPO_AGENT_WALL_BACKSTOP", 6.0))  # wall-clock limit = this x the CPU budget


@dataclass(frozen=True)
class StrictConfig:
    """Which classes are the program's (see _child/repo_agent_strict.py). `program`: every class made by
    code in a file the model may change. `repository` (SWE-bench-style and BugsInPy tasks): only classes
    the pristine repository does not define, by file and class name."""

    mode: str = "program"
    pristine_files: tuple[str, ...] = ()  # repository mode: the pristine task's .py files
    pristine_classes: tuple[tuple[str, tuple[str, ...]], ...] = ()  # changed file -> its pristine class names
    trusted_files: tuple[str, ...] = ()  # files trusted besides the read-only ones (an unsealed run's conftests)

    def to_config(self) -> dict[str, Any]:
        return {"mode": self.mode, "pristine_files": list(self.pristine_files),
                "pristine_classes": {rel: list(names) for rel, names in self.pristine_classes},
                "trusted_files": list(self.trusted_files)}


def budget_of(spec: TestSpec) -> dict[str, Any]:
    """The time budget a verdict ran under (recorded in the verdict)."""
    return {"kind": "cpu", "per_test_s": spec.per_test_timeout, "total_s": spec.total_timeout,
            "wall_backstop_x": WALL_BACKSTOP}

def scrubbed_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = scrubbed_environ()
    for key in ("PYTEST_ADDOPTS", "PYTHONSTARTUP", "PYTHONINSPECT", "PYTHONUSERBASE", "PYTHONHOME",
                "VIRTUAL_ENV", "PYTHONPATH"):
        env.pop(key, None)
    env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
               PYTHONNOUSERSITE="1")
    env.update(extra or {})
    return env


def _user_process_count() -> int:
    uid, count = os.getuid(), 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                count += entry.stat().st_uid == uid
            except OSError:
                pass
    return count


def pytest_command(spec: TestSpec, fail_fast: bool, protected: Iterable[Path] = (),
                   strict: StrictConfig | None = None, stop_on_timeout: bool = False) -> list[str]:
    """The test process's command: our bootstrap, then pytest (or, for `runner: unittest`, the task's
    runner script or module, whose unittest results our hook streams instead of the pytest plugin)."""
    python = spec.python or sys.executable
    wall_per_test = round(spec.per_test_timeout * WALL_BACKSTOP, 3)
    config = {
        "runner": spec.runner,
        "per_test_cpu": spec.per_test_timeout,
        "stop_on_timeout": stop_on_timeout,
        "per_test_timeout": wall_per_test,
        "strict": (strict or StrictConfig()).to_config(),
        "memory_bytes": MEMORY_LIMIT_BYTES,
        "cpu_seconds": int(math.ceil(spec.total_timeout)) + 1,
        "file_bytes": OUTPUT_LIMIT_BYTES,
        # root is exempt from RLIMIT_NPROC (a pids cgroup contains it instead); others get headroom
        "max_processes": None if os.geteuid() == 0 else _user_process_count() + 256,
        "protected": [str(p) for p in protected],
    }
    launcher = (f"import sys; sys.path.append({str(CHILD_DIR)!r}); import repo_agent_bootstrap; repo_agent_bootstrap.main()")
    if spec.runner == "unittest":
        return [python, "-c", launcher, json.dumps(config), *spec.args]
    if spec.runner != "pytest":
        raise ValueError(f"unknown test runner {spec.runner!r} (pytest or unittest)")
    args = [python, "-c", launcher, json.dumps(config),
            "-q", "-p", "pytest_timeout", "-p", "no:cacheprovider", "-p", "no:junitxml", "--rootdir=.",
            "-o", "addopts=", f"--timeout={wall_per_test}", "--timeout-method=signal"]
    if fail_fast:
        args.append("-x")
    return args + list(spec.args)


# Test runs are CPU-bound while model calls are I/O-bound: many rollout threads may wait on a model at
# once, but at most one test run per core runs at a time.
_TEST_SLOTS = threading.BoundedSemaphore(os.cpu_count() or 1)


def set_test_concurrency(slots: int) -> None:
    global _TEST_SLOTS
    _TEST_SLOTS = threading.BoundedSemaphore(max(1, slots))


def run_tests(root: Path, spec: TestSpec, fail_fast: bool = False, *, sandbox: Sandbox | str = "auto",
              expected: ExpectedTests | None = None, readonly: Iterable[Path] = (), hide: Iterable[Path] = (),
              resolution: Resolution | None = None, strict: StrictConfig | None = None,
              stop_on_timeout: bool = False, warm_allowed: bool = True) -> TestReport:
    """Run `spec` in `root`. `stop_on_timeout` ends the run at the first test over its budget (the other
    tests then count as missing): what `suite synth` wants of a mutant, which is dropped then anyway. Never raises for test failures, crashes or hangs. `readonly` files are
    bound read-only in the sandbox and write-guarded without one (the caller checks them afterwards);
    `hide` folders (the suite's, which hold the reference fixes) are empty inside the sandbox. With a
    `resolution` only its tests decide (SWE-bench's rule), and the run never stops at a first failure.
    The run goes to a warm worker where one can run it as a cold run would (warm.py); a worker that
    fails raises warm.WorkerFailed, and the caller reruns on a fresh copy with `warm_allowed=False`."""
    box = resolve_sandbox(sandbox) if isinstance(sandbox, str) else sandbox
    with _TEST_SLOTS:
        return _run_tests(Path(root), spec, fail_fast and resolution is None, box, expected,
                          [Path(p) for p in readonly], list(hide), resolution, strict, stop_on_timeout, warm_allowed)


class _RecordReader(threading.Thread):
    """Drains the result pipe as records arrive (so the child never blocks on a full pipe)."""

    def __init__(self, fd: int):
        super().__init__(daemon=True)
        self.fd, self.lines, self.overflow = fd, [], False

    def run(self) -> None:
        buffer = b""
        with open(self.fd, "rb", buffering=0, closefd=True) as pipe:
            while True:
                chunk = pipe.read(65536)
                if not chunk:
                    break
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                for line in complete:
                    if len(self.lines) >= MAX_RECORDS:
                        self.overflow = True
                    else:
                        self.lines.append(line[:MAX_RECORD_BYTES])
                if len(buffer) > MAX_RECORD_BYTES:
                    self.lines.append(buffer[:MAX_RECORD_BYTES])
                    buffer = b""
        if buffer:
            self.lines.append(buffer[:MAX_RECORD_BYTES] + b"\x00torn")


def _run_tests(root: Path, spec: TestSpec, fail_fast: bool, box: Sandbox, expected: ExpectedTests | None,
               readonly: list[Path], hide: list[Path], resolution: Resolution | None = None,
               strict: StrictConfig | None = None, stop_on_timeout: bool = False,
               warm_allowed: bool = True) -> TestReport:
    started = time.monotonic()
    key = secrets.token_bytes(32)
    result_r, result_w = os.pipe()
    key_r, key_w = os.pipe()
    os.write(key_w, key)  # 32 bytes fit in any pipe buffer
    os.close(key_w)
    env = scrubbed_env(dict(spec.env))
    env.update(REPO_AGENT_RESULT_FD=str(result_w), REPO_AGENT_KEY_FD=str(key_r))
    if spec.pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(str(root / folder) for folder in spec.pythonpath)
    if box.isolated:
        env["HOME"] = "/tmp/home"
    strict = strict or StrictConfig()
    if not readonly:  # an unsealed run (no read-only files named): its own conftests are the task's
        strict = replace(strict, trusted_files=tuple(str(p) for p in root.rglob("conftest.py")))
    cmd = pytest_command(spec, fail_fast, readonly, strict, stop_on_timeout)
    python = spec.python or sys.executable
    binds = _fewer_binds(root, [p for p in readonly if p.exists()])
    visible = [*interpreter_folders(python), CHILD_DIR]
    cold_because = _why_cold(root, box, python, spec, warm_allowed)
    if cold_because is None:
        worker = warm.WorkerKey(python, tuple(sorted(str(h) for h in hide)), tuple(sorted(str(v) for v in visible)))
        return _run_in_worker(root, spec, cmd, box, worker, env, (result_r, result_w, key_r), key, binds,
                              expected, resolution, started)
    config_dir = _config_through_file(cmd, binds)
    try:
        report = _run_wrapped(root, spec, box.wrap(cmd, workdir=root, readonly=binds, hide=hide, visible=visible),
                              box, env, (result_r, result_w, key_r), key, expected, resolution, started)
    finally:
        if config_dir is not None:
            shutil.rmtree(config_dir, ignore_errors=True)
    report.worker = f"cold ({cold_because})" if warm.verdict_workers() == "warm" and box.isolated else "cold"
    return report


def _why_cold(root: Path, box: Sandbox, python: str, spec: TestSpec, warm_allowed: bool) -> str | None:
    if not warm_allowed:
        return "a rerun after a worker failed"
    return warm.why_cold(box, python, spec.runner, dict(spec.env), root)


def _run_in_worker(root: Path, spec: TestSpec, cmd: list[str], box: Sandbox, worker: "warm.WorkerKey",
                   env: dict[str, str], fds: tuple[int, int, int], key: bytes, binds: list[Path],
                   expected: ExpectedTests | None, resolution: Resolution | None, started: float) -> TestReport:
    """The run on a warm worker (warm.py): the same command, limits, records and verdict rule as a cold
    run; only the interpreter start and pytest's imports are paid once per worker instead of per run."""
    result_r, result_w, key_r = fds
    reader = _RecordReader(result_r)
    request = {"folder": str(root.parent), "cwd": str(root), "readonly": [str(p) for p in binds],
               "visible": list(worker.visible), "config": json.loads(cmd[3]), "args": cmd[3:], "env": env}
    with tempfile.TemporaryFile(prefix="repo-agent-output-") as output:
        reader.start()
        try:
            reply = warm.run_in_worker(box, worker, request, (result_w, key_r, output.fileno()),
                                       spec.total_timeout * WALL_BACKSTOP, scrubbed_env({"HOME": "/tmp/home"}))
        finally:
            os.close(result_w)  # the worker got its own copies; the reader ends when they are closed too
            os.close(key_r)
            reader.join(timeout=10)
        tail = _tail(output)
    timed_out = bool(reply.get("timed_out"))
    exit_code = -signal.SIGKILL if timed_out else int(reply["exit_code"])
    report = _report(reader, key, exit_code, timed_out, tail, spec, box, expected, resolution, started)
    report.worker = "warm"
    return report


def _fewer_binds(root: Path, files: list[Path], limit: int = MAX_FILE_BINDS) -> list[Path]:
    """bubblewrap takes at most 9000 arguments, so thousands of read-only files (a large repository's
    test tree) are bound as the highest folders all of whose files are read-only; files beside writable
    ones keep their own bind. (Tests then cannot create files inside such a folder either.)"""
    if len(files) <= limit:
        return files
    readonly = set(files)
    whole: dict[Path, bool] = {}
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        folder = Path(dirpath)
        whole[folder] = bool(filenames or dirnames) and all(folder / f in readonly for f in filenames) \
            and all(whole.get(folder / d, False) for d in dirnames)
    chosen: dict[Path, None] = {}
    for path in files:
        top = None
        for parent in path.parents:
            if parent == root or root not in parent.parents:
                break
            if whole.get(parent):
                top = parent
        chosen[top or path] = None
    return list(chosen)


def _config_through_file(cmd: list[str], binds: list[Path]) -> Path | None:
    """One argument holds at most 128 KiB (MAX_ARG_STRLEN): a longer bootstrap config (thousands of
    protected files) goes into a private file, bound read-only into the sandbox, named as `@path`."""
    if len(cmd[3]) <= CONFIG_ARG_LIMIT:
        return None
    folder = Path(tempfile.mkdtemp(prefix="repo-agent-config-"))
    (folder / "config.json").write_text(cmd[3], encoding="utf-8")
    os.chmod(folder, 0o755)
    os.chmod(folder / "config.json", 0o644)
    cmd[3] = "@" + str(folder / "config.json")
    binds.append(folder / "config.json")
    return folder


def _run_wrapped(root: Path, spec: TestSpec, cmd: list[str], box: Sandbox, env: dict[str, str], fds: tuple[int, int, int],
                 key: bytes, expected: ExpectedTests | None, resolution: Resolution | None, started: float) -> TestReport:
    result_r, result_w, key_r = fds
    cgroup = new_pids_cgroup()
    if cgroup is not None:
        cmd = cgroup.wrap(cmd)
    reader = _RecordReader(result_r)
    timed_out = False
    with tempfile.TemporaryFile(prefix="repo-agent-output-") as output:
        try:
            proc = subprocess.Popen(cmd, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=output,
                                    stderr=subprocess.STDOUT, start_new_session=True, pass_fds=(result_w, key_r))
        finally:
            os.close(result_w)
            os.close(key_r)
        reader.start()
        try:
            timed_out = not _wait(proc, spec.total_timeout * WALL_BACKSTOP)
        finally:
            kill_group(proc.pid)  # tests may leave children behind
            if cgroup is not None:
                cgroup.close()
            proc.wait()
        reader.join(timeout=10)
        tail = _tail(output)
    return _report(reader, key, proc.returncode, timed_out, tail, spec, box, expected, resolution, started)


def _report(reader: _RecordReader, key: bytes, exit_code: int | None, timed_out: bool, tail: str, spec: TestSpec,
            box: Sandbox, expected: ExpectedTests | None, resolution: Resolution | None, started: float) -> TestReport:
    """The verdict of a finished run, cold or warm: its authentic records through the verdict rule."""
    records, problems = verify_records(reader.lines, key)
    if reader.overflow:
        problems.append(f"more than {MAX_RECORDS} result records")
    report = decide(records, problems, exit_code=exit_code, run_timed_out=timed_out,
                    total_timeout=spec.total_timeout * WALL_BACKSTOP, expected=expected, output_tail=tail,
                    resolution=resolution)
    report.budget = budget_of(spec)
    report.sandbox = box.kind
    report.duration_s = time.monotonic() - started
    return report


def _wait(proc: subprocess.Popen, timeout: float) -> bool:
    """Wait for `proc` to end (True) or `timeout` seconds to pass (False), waking the moment it ends
    (a pidfd, where the kernel has them; Popen.wait with a timeout polls every few milliseconds)."""
    opener = getattr(os, "pidfd_open", None)
    if opener is not None:
        try:
            fd = opener(proc.pid)
        except OSError:
            fd = None
        if fd is not None:
            try:
                poller = select.poll()
                poller.register(fd, select.POLLIN)
                if not poller.poll(max(0, int(timeout * 1000))):
                    return False
            finally:
                os.close(fd)
            proc.wait()
            return True
    try:
        proc.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        return False


def _tail(output: Any, limit: int = 4000) -> str:
    size = output.seek(0, os.SEEK_END)
    output.seek(max(0, size - limit))
    return output.read().decode("utf-8", errors="replace")
