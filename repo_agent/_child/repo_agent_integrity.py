"""What a verdict depends on, captured before any code of the task runs and re-checked (Python >= 3.6).

The program under test runs in the test process, so it can reach pytest, pluggy, our plugin and the
builtins. `capture()` records, after pytest is configured and before anything is collected (hence
before any test module or program is imported), the identity of every attribute of the modules a
verdict depends on (pytest's runtest protocol and report creation, the assertion rewriter, pluggy's
hook calling, unittest's assert methods, our plugin and result channel (which bound what it calls from
json, hmac and os when it was imported, so tests may monkeypatch those), the builtins),
and the code object of every function among them. `problems()` compares: a rebinding, a deletion, a
swapped `__code__`/`__defaults__`, a replaced `sys.modules` entry, an import hook put in front of
pytest's, a hook implementation whose code comes from a file the model may change (a plugin registered
from the program), or a test module whose strict-assert helper was rebound, is named. A cheap check
runs with every test phase; the full one (every code object) after collection and at the end.

In `program` mode (tasks whose program is a few files: QuixBugs layout, synthesized, HumanEval) two
more guards keep the program from reading what a test expects: `frame_guard()` refuses, while any
frame of the program is on the stack, every way Python hands out frames (sys._getframe, a traceback's
or generator's frame, sys._current_frames, gc's object walks, trace and profile functions), and the
signal handlers are part of the snapshot (a handler receives the interrupted frame). Repositories
(`repository` mode) use logging and inspect in their own code, so these two stay off there.
"""

import builtins
import sys
import types

import repo_agent_strict

WATCHED_MODULES = (
    "pytest", "_pytest.runner", "_pytest.reports", "_pytest.python", "_pytest.main", "_pytest.nodes",
    "_pytest.outcomes", "_pytest.skipping", "_pytest.unittest", "_pytest.fixtures", "_pytest.assertion",
    "_pytest.assertion.rewrite", "_pytest.assertion.util", "_pytest.config", "_pytest.terminal",
    "pluggy", "pluggy._callers", "pluggy._hooks", "pluggy._manager", "pluggy._result", "pytest_timeout",
    "unittest", "unittest.case", "unittest.result", "unittest.runner", "unittest.suite", "unittest.loader",
    "repo_agent_results", "repo_agent_pytest", "repo_agent_strict", "repo_agent_integrity", "repo_agent_unittest",
    "importlib._bootstrap_external",
)
# Modules whose functions' code objects are not recorded (their rebinding still is): reporting and
# configuration code that no record of ours goes through.
NO_CODE = frozenset(["_pytest.terminal", "_pytest.config", "unittest.runner", "unittest.loader", "pluggy._manager"])
# Module globals pytest itself rebinds while it runs (set per test by the assertion plugin).
MUTABLE = {
    "_pytest.assertion.util": frozenset(["_reprcompare", "_assertion_pass", "_config"]),
    "_pytest.assertion.rewrite": frozenset(["_saferepr"]),
}
_MISSING = object()


class Snapshot(object):
    def __init__(self):
        self.owners = []  # (label, live mapping: a module's dict or a class's mappingproxy, {key: value})
        self.builtins = {}  # the builtins' names and values
        self.code = []  # (label, function, code, defaults, kwdefaults)
        self.critical = []  # the code checks that run with every test phase
        self.modules = []  # (name, module)
        self.meta_path = []
        self.hooks = {}  # hook caller -> the tuple of hook implementations last checked
        self.helper_modules = None  # names of the modules whose asserts were rewritten (found lazily)
        self.signals = []  # program mode: (signal, handler) of every signal but SIGALRM and SIGPROF


_snapshot = Snapshot()
# Modules whose functions' code objects are re-checked with every test (the rest: after collection and
# at the end); rebinding is checked everywhere, every time.
_CRITICAL = ("_pytest.runner", "pluggy._callers", "repo_agent_results", "repo_agent_pytest")


def _add_function(label, function, critical):
    try:
        entry = (label, function, function.__code__, function.__defaults__, function.__kwdefaults__)
    except AttributeError:
        return
    _snapshot.code.append(entry)
    if critical:
        _snapshot.critical.append(entry)


def capture():
    """Record what the verdict depends on (call once, after pytest's configure, before collection)."""
    for name in WATCHED_MODULES:
        module = sys.modules.get(name)
        if module is None:
            continue
        _snapshot.modules.append((name, module))
        skip = MUTABLE.get(name, frozenset())
        critical = name in _CRITICAL
        code = name not in NO_CODE
        kept = {}
        for key, value in list(vars(module).items()):
            if key in skip or (key.startswith("__") and key.endswith("__")):
                continue
            kept[key] = value
            if isinstance(value, types.FunctionType) and code:
                _add_function("{}.{}".format(name, key), value, critical)
            elif isinstance(value, type) and getattr(value, "__module__", None) == name:
                members = {}
                for attr, member in list(vars(value).items()):
                    if attr in ("__dict__", "__weakref__", "__doc__"):
                        continue
                    members[attr] = member
                    function = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
                    if isinstance(function, types.FunctionType) and code:
                        _add_function("{}.{}.{}".format(name, key, attr), function, critical)
                _snapshot.owners.append(("{}.{}".format(name, key), vars(value), members))
        _snapshot.owners.append((name, vars(module), kept))
    _snapshot.builtins = dict(vars(builtins))
    _snapshot.modules.append(("builtins", builtins))
    _snapshot.meta_path = list(sys.meta_path)
    if repo_agent_strict._settings.mode == "program":
        import signal

        for number in range(1, getattr(signal, "NSIG", 65)):
            if number in (signal.SIGALRM, signal.SIGPROF, signal.SIGKILL, signal.SIGSTOP):
                continue
            try:
                _snapshot.signals.append((number, signal.getsignal(number)))
            except (ValueError, OSError):
                pass


def _rebound(label, live, kept, found):
    for key, value in kept.items():
        if live.get(key, _MISSING) is not value:
            found.append("{}.{} was rebound".format(label, key))


def problems(pluginmanager=None, full=False):
    """What changed since capture(), as readable lines (empty: nothing). Call it when no fixture of a
    test may still hold a patch of its own (monkeypatch undoes them at teardown)."""
    found = []
    for name, module in _snapshot.modules:
        if sys.modules.get(name) is not module:
            found.append("sys.modules[{!r}] was replaced".format(name))
    for label, live, kept in _snapshot.owners:
        _rebound(label, live, kept, found)
    _rebound("builtins", vars(builtins), _snapshot.builtins, found)
    for label, function, code, defaults, kwdefaults in (_snapshot.code if full else _snapshot.critical):
        if function.__code__ is not code or function.__defaults__ is not defaults or function.__kwdefaults__ is not kwdefaults:
            found.append("the code of {} was replaced".format(label))
    meta_path = sys.meta_path
    if len(meta_path) < len(_snapshot.meta_path) or any(a is not b for a, b in zip(meta_path, _snapshot.meta_path)):
        found.append("sys.meta_path was changed in front of pytest's import hooks")
    if _snapshot.signals:
        import signal

        for number, handler in _snapshot.signals:
            if signal.getsignal(number) is not handler:
                found.append("the handler of signal {} was replaced".format(number))
    if pluginmanager is not None:
        found += _foreign_hooks(pluginmanager)
    found += _helper_problems()
    return found[:20]


def _foreign_hooks(pluginmanager):
    """Hook implementations whose code is not from a trusted file (e.g. registered by the program).
    Only callers whose implementations changed since the last check are looked at again."""
    found = []
    for hook_name, caller in list(vars(pluginmanager.hook).items()):
        impls = getattr(caller, "_hookimpls", None)
        if impls is None:
            get = getattr(caller, "get_hookimpls", None)
            if get is None:
                continue
            impls = get()
        current = tuple(impls)
        if _snapshot.hooks.get(caller) == current:
            continue
        bad = []
        for impl in current:
            function = getattr(impl, "function", None)
            function = getattr(function, "__func__", function)
            code = getattr(function, "__code__", None)
            if not isinstance(function, types.FunctionType) or code is None or \
                    not repo_agent_strict.trusted_file(code.co_filename):
                bad.append("hook {} is implemented by {} from {}".format(
                    hook_name, getattr(impl, "plugin_name", "?"), getattr(code, "co_filename", type(function).__name__)))
        if not bad:
            _snapshot.hooks[caller] = current  # a trusted set: skip it until it changes
        found += bad
    return found


def _helper_problems():
    files = repo_agent_strict.rewritten_files
    if not files:
        return []
    if _snapshot.helper_modules is None or len(_snapshot.helper_modules) < len(files):
        names = []
        for name, module in list(sys.modules.items()):
            path = getattr(module, "__file__", None)
            if isinstance(path, str) and repo_agent_strict._real(path) in files:
                names.append(name)
        _snapshot.helper_modules = names
    found = []
    for name in _snapshot.helper_modules:
        module = sys.modules.get(name)
        if module is None or vars(module).get(repo_agent_strict.HELPER_NAME) is not repo_agent_strict.strict:
            found.append("the strict-assert helper of test module {} was rebound".format(name))
    return found


_FRAME_EVENTS = frozenset(["sys._getframe", "sys._current_frames", "gc.get_objects", "gc.get_referrers",
                           "gc.get_referents", "sys.settrace", "sys.setprofile"])
_FRAME_ATTRIBUTES = frozenset(["tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_back"])


def _printing_callers():
    """Code that walks frames only to print them (no frame reaches the program)."""
    timeout = sys.modules.get("pytest_timeout")
    dump = getattr(timeout, "dump_stacks", None)
    return (dump.__code__,) if dump is not None else ()


def _frozen_stdlib(frame, path):
    """The import machinery's frames (`<frozen importlib._bootstrap>` ...), running in its own module."""
    if not path.startswith("<frozen "):
        return False
    module = sys.modules.get(frame.f_globals.get("__name__") or "")
    spec = getattr(module, "__spec__", None)
    return module is not None and vars(module) is frame.f_globals and getattr(spec, "origin", None) == "frozen"


class FrameAccessRefused(RuntimeError):
    """The program under test asked for a frame (where a test's expected values live)."""


def frame_guard():
    """The audit-hook check that refuses frame access while the program runs (program mode), or None.
    The bootstrap calls it from its one audit hook (a second Python hook would double the cost of the
    tens of thousands of audit events a run raises)."""
    if not hasattr(sys, "addaudithook") or repo_agent_strict._settings.mode != "program":
        return None
    getframe, trusted = sys._getframe, repo_agent_strict.trusted_file
    verdicts = {}  # code object -> trusted (code objects of a run are few and never change file)
    busy = [False]

    def check(event, args):
        if busy[0]:
            return
        busy[0] = True
        try:
            frame = getframe(2)  # 0: this check, 1: the audit hook, 2: who raised the event
            if frame.f_code in _printing_callers():
                return  # e.g. pytest-timeout printing every thread's stack when a test times out
            while frame is not None and frame.f_back is not None:  # the outermost frame is our launcher
                code = frame.f_code
                ok = verdicts.get(code)
                if ok is None:
                    ok = verdicts[code] = trusted(code.co_filename) or _frozen_stdlib(frame, code.co_filename)
                if not ok:
                    raise FrameAccessRefused("repo-agent: the program under test may not inspect frames or "
                                             "the garbage collector ({} from {})".format(event, code.co_filename))
                frame = frame.f_back
        finally:
            busy[0] = False

    return check


FRAME_EVENTS, FRAME_ATTRIBUTES = _FRAME_EVENTS, _FRAME_ATTRIBUTES
