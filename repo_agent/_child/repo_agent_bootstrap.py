"""Runs first in the test process (Python >= 3.6): limits, class-origin records and strict asserts
(repo_agent_strict), the write guard, then pytest (or a unittest runner script, for tasks whose tests
run under the repository's own runner, e.g. Django's runtests.py).

Called as `python -c "<adds this folder to sys.path; imports this module; calls main()>" CONFIG_JSON
PYTEST_ARGS...`, or, in a warm verdict worker (verdict_server.py), `run(config, args)` in a child forked
from a process that imported pytest already (after `preload()`, the same imports in the same order).
pytest and the results plugin are imported while the workspace is NOT on sys.path, so a workspace file
named like them cannot stand in for them; the workspace goes back on sys.path before the tests load.
"""

import json
import os
import resource
import sys


def _limit(name, value):
    if value is None or not hasattr(resource, name):
        return
    try:
        resource.setrlimit(getattr(resource, name), (value, value))
    except (ValueError, OSError):
        pass


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _install_guard(protected, frame_check=None, frame_events=(), frame_attributes=()):
    """One audit hook for two guards: writes to protected files are refused (a second layer, for runs
    without bubblewrap; bubblewrap's read-only binds are the first), and, where `frame_check` is given,
    frame access by the program (repo_agent_integrity.frame_guard). Python >= 3.8 only."""
    if not hasattr(sys, "addaudithook") or (not protected and frame_check is None):
        return
    realpath, fsdecode = os.path.realpath, os.fsdecode
    guarded = frozenset(protected)
    write_events = frozenset(["open", "os.remove", "os.rmdir", "os.truncate", "os.chmod", "os.chown", "os.utime",
                              "shutil.rmtree", "os.rename", "os.link", "os.symlink"])
    frame_events = frozenset(frame_events) if frame_check is not None else frozenset()
    frame_attributes = frozenset(frame_attributes) if frame_check is not None else frozenset()

    def target(path):
        if isinstance(path, int):
            return None
        try:
            return realpath(fsdecode(path))
        except (TypeError, ValueError):
            return None

    def hook(event, args):
        if event == "object.__getattr__":  # tens of thousands per run (every __code__ read): decided here
            if args[1] in frame_attributes:
                frame_check(event, args)
            return
        if event in frame_events:
            frame_check(event, args)
            return
        if not guarded or event not in write_events:
            return
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS)
            paths = [path] if writing else []
        elif event in ("os.rename", "os.link", "os.symlink"):
            paths = [args[0], args[1]]
        else:
            paths = [args[0]]
        for path in paths:
            if target(path) in guarded:
                raise PermissionError("repo-agent: protected test file is read-only: {}".format(path))

    sys.addaudithook(hook)


def read_config(raw):
    if raw.startswith("@"):  # a config too long for one argument, in a read-only file
        with open(raw[1:], encoding="utf-8") as handle:
            raw = handle.read()
    return json.loads(raw)


def preload():
    """What a warm worker imports once, before any run: the class-origin record first (pytest's classes
    are then trusted, as in a cold run), then pytest and the modules it loads for every run. Nothing
    here reads the run's key or config: those come per run, after the fork."""
    sys.path[:] = [p for p in sys.path if p not in ("", os.getcwd())]
    import repo_agent_strict

    repo_agent_strict.install_class_origins()
    import importlib

    import pytest  # noqa: F401
    import pytest_timeout  # noqa: F401
    from _pytest.config import default_plugins

    for name in default_plugins:
        try:
            importlib.import_module("_pytest." + name)
        except ImportError:
            pass
    import repo_agent_integrity  # noqa: F401

    try:  # `-p NAME` looks NAME up among the installed packages' entry points: fill the path caches once
        import importlib.metadata

        importlib.metadata.entry_points(group="pytest11")
    except Exception:
        pass


def run(config, args):
    """Limits, strict asserts, the result channel, the guards, then pytest (or the unittest runner);
    exits the process with the runner's status."""
    _limit("RLIMIT_AS", config.get("memory_bytes"))
    _limit("RLIMIT_CPU", config.get("cpu_seconds"))
    _limit("RLIMIT_FSIZE", config.get("file_bytes"))
    _limit("RLIMIT_NPROC", config.get("max_processes"))
    workspace_entries = [p for p in sys.path if p in ("", os.getcwd())] or [""]
    sys.path[:] = [p for p in sys.path if p not in workspace_entries]
    import repo_agent_strict

    repo_agent_strict.install_class_origins()  # before pytest: its classes are recorded as trusted
    repo_agent_strict.configure(config)
    if config.get("runner") == "unittest":
        import repo_agent_results  # noqa: F401  (reads its key before any test code can run)
        import repo_agent_unittest

        repo_agent_strict.patch_unittest()
        repo_agent_strict.patch_bytecode_cache()
        sys.path[0:0] = workspace_entries
        import repo_agent_integrity

        _install_guard(config.get("protected") or [], repo_agent_integrity.frame_guard(),
                       repo_agent_integrity.FRAME_EVENTS, repo_agent_integrity.FRAME_ATTRIBUTES)
        repo_agent_unittest.run(args, config.get("per_test_cpu"), config.get("per_test_timeout"))
        return
    import pytest
    import pytest_timeout  # noqa: F401  (fails loudly here, not as a vanished test run)
    import repo_agent_results  # noqa: F401  (reads its key before any test code can run)
    import repo_agent_pytest

    repo_agent_pytest.configure(config)
    repo_agent_strict.patch_pytest_rewriter()
    repo_agent_strict.patch_unittest()
    repo_agent_strict.patch_bytecode_cache()
    sys.path[0:0] = workspace_entries
    import repo_agent_integrity

    _install_guard(config.get("protected") or [], repo_agent_integrity.frame_guard(),
                       repo_agent_integrity.FRAME_EVENTS, repo_agent_integrity.FRAME_ATTRIBUTES)
    sys.exit(pytest.main(list(args) + ["-p", "repo_agent_pytest"]))


def main():
    run(read_config(sys.argv[1]), sys.argv[2:])
