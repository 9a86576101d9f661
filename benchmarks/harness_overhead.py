"""Harness overhead per step: repo-agent's loop vs mini-swe-agent's, same work, model time excluded.

Both sides replay the same action script on every task of a QuixBugs-layout suite: list the tree, read
the buggy file, grep for its definition, write the fix, then the final tests and the end of the episode.
    repo-agent      ScriptedModel -> agent.run_episode (JSON protocol, confined tools, trace written
                    atomically after every step); the driver runs pytest after `final`.
    mini-swe-agent  DeterministicModel -> DefaultAgent + LocalEnvironment with the equivalent bash
                    commands (find, cat, grep -rn, a heredoc, pytest, the submit echo); trajectory saved
                    after every step.
Each side runs in its own interpreter (mini-swe-agent in its own venv via benchmarks/_mini_driver.py).
Inside each process the start and end of every model call, tool/command execution, test run,
trace write and workspace copy is stamped; a step is the time from the end of one model call to the
start of the next (or to the end of the episode). Per-step overhead = that span minus test runs and
workspace copies. Test runs, workspace copies, process start-up and the first (warm-up) episode are
reported separately. Every repetition starts one fresh process per side; inside it the two sides take
turns episode by episode in ABBA order, so load changes on a shared machine hit both alike.

    .venv/bin/python benchmarks/harness_overhead.py             # 5 repetitions x every task of the suite
    .venv/bin/python benchmarks/harness_overhead.py --quick     # 2 x 3, under a minute
    .venv/bin/python benchmarks/harness_overhead.py --profile   # cProfile of repo-agent's steps only

mini-swe-agent lives in its own venv:  python3 -m venv /tmp/mini-venv && /tmp/mini-venv/bin/pip install mini-swe-agent
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))  # runnable from a checkout without installing

DEFAULT_SUITE = REPO / "eval/suites/bundled_suite.json"
DEFAULT_OUT = HERE / "results/harness_overhead.json"
DEFAULT_MINI_PYTHON = Path("/tmp/mini-venv/bin/python")
COMMON_STEPS = ("list", "read", "grep", "write", "final")  # steps both sides take; mini adds "test"
HEREDOC_END = "REPO_AGENT_BENCH_EOF"
GOAL_RATIO = 0.5


# ---------------------------------------------------------------- the action script, rendered twice

def action_script(suite, task) -> list[tuple[str, dict]]:
    """The side-neutral plan: (kind, arguments). Both renderings below follow it step by step."""
    target = task.target_files[0]
    fix = suite.reference_text(task)[target]
    return [
        ("list", {"rel_dir": "."}),
        ("read", {"rel_path": target}),
        ("grep", {"pattern": f"def {task.name}"}),
        ("write", {"rel_path": target, "content": fix}),
        ("test", {}),
        ("final", {"summary": f"Fixed {target} so the tests of {task.name} pass."}),
    ]


def repo_agent_replies(script: list[tuple[str, dict]]) -> list[str]:
    """JSON-protocol replies; `test` is no step here: repo-agent's driver runs the tests after final."""
    from repo_agent.protocol import Final, ToolCall, render_action

    calls = {
        "list": lambda a: ToolCall("list_files", {"rel_dir": a["rel_dir"], "max_files": 200}),
        "read": lambda a: ToolCall("read_file", {"rel_path": a["rel_path"], "max_chars": 4000}),
        "grep": lambda a: ToolCall("grep", {"pattern": a["pattern"], "rel_dir": ".", "max_matches": 50}),
        "write": lambda a: ToolCall("write_file", {"rel_path": a["rel_path"], "content": a["content"]}),
        "final": lambda a: Final(a["summary"]),
    }
    return [render_action(calls[kind](args)) for kind, args in script if kind != "test"]


def test_command(task, python: str) -> str:
    """The pytest run repo-agent's driver does, minus its JUnit file and rlimit bootstrap."""
    spec = task.test
    return " ".join([
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 PYTHONDONTWRITEBYTECODE=1", shlex.quote(python), "-m pytest -q -x",
        "-p pytest_timeout -p no:cacheprovider --rootdir=.", f"--timeout={spec.per_test_timeout:g}",
        *map(shlex.quote, spec.args),
    ])


def mini_steps(script: list[tuple[str, dict]], test_cmd: str) -> list[dict]:
    commands = {
        "list": lambda a: "find . -type f",
        "read": lambda a: f"cat {shlex.quote(a['rel_path'])}",
        "grep": lambda a: f"grep -rn {shlex.quote(a['pattern'])} .",
        "write": lambda a: f"cat <<'{HEREDOC_END}' > {shlex.quote(a['rel_path'])}\n{a['content'].rstrip(chr(10))}\n{HEREDOC_END}",
        "test": lambda a: test_cmd,
        "final": lambda a: "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT",
    }
    steps = []
    for kind, args in script:
        command = commands[kind](args)
        steps.append({"kind": kind, "command": command,
                      "content": f"THOUGHT: next step ({kind}).\n\n```mswea_bash_command\n{command}\n```"})
    return steps


def build_specs(suite_path: Path, task_names: list[str], python: str) -> tuple[dict, dict, dict]:
    from repo_agent.suites.task import load_suite

    suite = load_suite(suite_path)
    tasks = [suite.task(name) for name in task_names] if task_names else list(suite.tasks)
    repo_eps, mini_eps, kinds = [], [], {}
    for index, task in enumerate([tasks[0], *tasks]):  # the first episode of each process is a warm-up
        script = action_script(suite, task)
        test_cmd = test_command(task, python)
        steps = mini_steps(script, test_cmd)
        base = (suite.root / task.base).resolve()
        repo_eps.append({"task_id": task.task_id, "warmup": index == 0, "replies": repo_agent_replies(script)})
        mini_eps.append({"task_id": task.task_id, "warmup": index == 0, "goal": task.goal, "steps": steps,
                         "test_command": test_cmd, "timeout": int(task.test.total_timeout),
                         "files": [[str(base / rel), rel] for rel in task.files]})
    kinds["repo-agent"] = [k for k, _ in script if k != "test"]
    kinds["mini-swe-agent"] = [k for k, _ in script]
    return {"suite": str(suite_path), "episodes": repo_eps}, {"episodes": mini_eps}, kinds


# ---------------------------------------------------------------- the repo-agent side (own process)

def repo_agent_driver(spec_path: Path) -> int:
    """Runs in a fresh interpreter and speaks the same stdin/stdout protocol as _mini_driver.py."""
    import_started = time.perf_counter()
    from repo_agent import agent as agent_module
    from repo_agent import traces, workspace
    from repo_agent.agent import AgentConfig, run_episode
    from repo_agent.models.scripted import ScriptedModel
    from repo_agent.suites.task import load_suite
    import_s = time.perf_counter() - import_started
    ready_at = time.time()

    events: list[dict] = []
    clock = time.perf_counter

    def stamped(kind, function):
        """Only stamps: the wrapped repo-agent function still does all the work."""
        def wrapper(*args, **kwargs):
            start = clock()
            try:
                return function(*args, **kwargs)
            finally:
                events.append({"kind": kind, "start": start, "end": clock()})
        return wrapper

    agent_module.run_tool = stamped("tool", agent_module.run_tool)
    agent_module.run_tests = stamped("test", agent_module.run_tests)
    agent_module.materialize = stamped("workspace", agent_module.materialize)
    workspace.Workspace.cleanup = stamped("workspace", workspace.Workspace.cleanup)
    traces.TraceWriter.flush = stamped("trace", traces.TraceWriter.flush)

    class StampedScriptedModel(ScriptedModel):
        complete = stamped("model", ScriptedModel.complete)

    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    suite = load_suite(spec["suite"])

    def run_one(number: int, scratch: str) -> dict:
        episode = spec["episodes"][number]
        events.clear()
        task = suite.task(episode["task_id"])
        trace_path = Path(scratch) / "traces" / f"{task.task_id.replace('/', '__')}__{number}.json"
        start = clock()
        trace = run_episode(suite, task, StampedScriptedModel(episode["replies"]), AgentConfig(), trace_path)
        end = clock()
        return {
            "task_id": task.task_id, "warmup": episode["warmup"], "start": start, "loop_start": start,
            "loop_end": end, "end": end, "events": list(events), "steps": len(trace["steps"]),
            "passed": bool(trace["metrics"]["passed"]), "exit_status": trace["stop_reason"],
            "trace_bytes": trace_path.stat().st_size,
        }

    with tempfile.TemporaryDirectory(prefix="repo-agent-bench-") as scratch:
        _reply("READY", {"side": "repo-agent", "python": sys.version.split()[0], "versions": _versions(
            ["jsonschema", "typer", "rich"]), "import_s": import_s, "ready_at": ready_at})
        for line in sys.stdin:
            if line.strip() == "quit":
                break
            _reply("EPISODE", run_one(int(line), scratch))
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


# ---------------------------------------------------------------- turning stamps into figures

def episode_figures(episode: dict, kinds: list[str]) -> dict:
    """Per-step overhead (ms) by kind plus totals. Same code for both sides."""
    events = episode["events"]
    models = sorted((e for e in events if e["kind"] == "model"), key=lambda e: e["start"])
    seen = {e["kind"] for e in events}
    if not {"model", "tool", "test", "trace", "workspace"} <= seen:
        # A renamed or moved function in the harness would otherwise silently drop out of the figures.
        raise SystemExit(f"{episode['task_id']}: instrumentation lost, only saw {sorted(seen)}; "
                         "update the stamped functions in benchmarks/harness_overhead.py")

    def inside(kind, lo, hi):
        return sum(max(0.0, min(e["end"], hi) - max(e["start"], lo)) for e in events if e["kind"] == kind)

    def excluded(lo, hi):
        return inside("test", lo, hi) + inside("workspace", lo, hi)

    ms = 1000.0
    first = models[0]["start"]
    steps, trace_ms, tool_ms = {}, 0.0, 0.0
    for index, model in enumerate(models):
        lo = model["end"]
        hi = models[index + 1]["start"] if index + 1 < len(models) else episode["loop_end"]
        kind = kinds[index] if index < len(kinds) else f"extra{index}"
        steps[kind] = (hi - lo - excluded(lo, hi)) * ms
    setup = (first - episode["loop_start"] - excluded(episode["loop_start"], first)) * ms
    lo, hi = episode["start"], episode["end"]
    trace_ms, tool_ms = inside("trace", lo, hi) * ms, inside("tool", lo, hi) * ms
    common = [steps[k] for k in COMMON_STEPS if k in steps]
    return {
        "step_ms": steps,
        "per_step_ms": sum(common) / len(common),
        "episode_overhead_ms": setup + sum(steps.values()),
        "setup_ms": setup,
        "trace_write_ms_per_step": trace_ms / len(models),
        "tool_exec_ms_per_step": tool_ms / len(models),
        "test_ms": inside("test", lo, hi) * ms,
        "workspace_ms": inside("workspace", lo, hi) * ms,
        "model_ms": inside("model", lo, hi) * ms,
        "steps": len(models),
        "trace_bytes": episode["trace_bytes"],
    }


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarize(runs: dict[str, list[dict]], kinds: dict[str, list[str]]) -> dict:
    """runs[side] = one record per process (repetition). Figures pool the measured episodes."""
    sides: dict[str, dict] = {}
    for side, records in runs.items():
        figures = [episode_figures(e, kinds[side]) for r in records for e in r["episodes"] if not e["warmup"]]
        warm = [episode_figures(e, kinds[side]) for r in records for e in r["episodes"] if e["warmup"]]
        keys = [k for k, v in figures[0].items() if isinstance(v, (int, float))]
        summary = {k: spread([f[k] for f in figures]) for k in keys}
        summary["step_ms"] = {k: spread([f["step_ms"][k] for f in figures]) for k in figures[0]["step_ms"]}
        summary["warmup_episode_overhead_ms"] = spread([f["episode_overhead_ms"] for f in warm])
        summary["startup_ms"] = spread([r["startup_s"] * 1000 for r in records])
        summary["import_ms"] = spread([r["import_s"] * 1000 for r in records])
        summary["passed"] = f"{sum(e['passed'] for r in records for e in r['episodes'])}/{sum(len(r['episodes']) for r in records)}"
        summary["per_rep_per_step_ms"] = [statistics.median(
            episode_figures(e, kinds[side])["per_step_ms"] for e in r["episodes"] if not e["warmup"]) for r in records]
        sides[side] = summary
    result = {"sides": sides}
    if len(sides) == 2:
        ra, mini = sides["repo-agent"], sides["mini-swe-agent"]
        per_rep = [a / b for a, b in zip(ra["per_rep_per_step_ms"], mini["per_rep_per_step_ms"])]
        result["ratios"] = {
            "per_step": ra["per_step_ms"]["median"] / mini["per_step_ms"]["median"],
            "per_step_per_rep": spread(per_rep),
            "episode_overhead": ra["episode_overhead_ms"]["median"] / mini["episode_overhead_ms"]["median"],
            "test_run": ra["test_ms"]["median"] / mini["test_ms"]["median"],
            "startup": ra["startup_ms"]["median"] / mini["startup_ms"]["median"],
        }
        result["goal"] = {"per_step_ratio_at_most": GOAL_RATIO, "met": result["ratios"]["per_step"] <= GOAL_RATIO}
    return result


# ---------------------------------------------------------------- running, printing, machine

class Driver:
    """One side's driver process: started once per repetition, asked for one episode at a time."""

    def __init__(self, name: str, command: list[str], spec: dict, scratch: Path):
        self.name = name
        spec_path = scratch / f"{name}.spec.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        self.stderr = open(scratch / f"{name}.stderr", "w+", encoding="utf-8")
        spawned = time.time()
        self.proc = subprocess.Popen([*command, "--spec", str(spec_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True, cwd=scratch)
        self.info = self._read("READY")
        self.info["startup_s"] = self.info["ready_at"] - spawned  # interpreter start + imports
        self.info["episodes"] = []

    def run(self, index: int) -> dict:
        self.proc.stdin.write(f"{index}\n")
        self.proc.stdin.flush()
        episode = self._read("EPISODE")
        self.info["episodes"].append(episode)
        return episode

    def close(self) -> dict:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.stderr.close()
        return self.info

    def _read(self, tag: str) -> dict:
        for line in self.proc.stdout:
            if line.startswith(f"@@{tag} "):
                return json.loads(line[len(tag) + 3:])
        self.proc.wait(timeout=60)
        self.stderr.seek(0)
        raise SystemExit(f"{self.name} driver ended without {tag} (exit {self.proc.returncode}):\n{self.stderr.read()[-4000:]}")


def machine_info(mini_versions: dict | None) -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cpu": cpu, "logical_cpus": os.cpu_count(), "platform": platform.platform(),
        "python_repo_agent": sys.version.split()[0], "repo_agent_commit": commit,
        "packages_repo_agent": _versions(["jsonschema", "typer", "rich", "pytest", "pytest-timeout"]),
        "packages_mini": mini_versions or {},
    }


def fmt(s: dict) -> str:
    return f"{s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f})"


def print_table(result: dict, kinds: dict[str, list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    sides = result["sides"]
    names = list(sides)
    table = Table(title="Harness overhead, ms: median (min-max) over measured episodes")
    table.add_column("figure")
    for name in names:
        table.add_column(name, justify="right")
    if len(names) == 2:
        table.add_column("ratio repo/mini", justify="right")

    def row(label, get):
        cells = [get(sides[n]) for n in names]
        ratio = []
        if len(names) == 2 and all(cells):
            ratio = [f"{cells[0]['median'] / cells[1]['median']:.2f}"]
        table.add_row(label, *[fmt(c) if c else "-" for c in cells], *ratio)

    row("per step (mean of list/read/grep/write/final)", lambda s: s["per_step_ms"])
    for kind in ("list", "read", "grep", "write", "test", "final"):
        row(f"  step: {kind}" + (" (mini's pytest step minus pytest)" if kind == "test" else ""),
            lambda s, k=kind: s["step_ms"].get(k))
    row("  of which tool/command execution", lambda s: s["tool_exec_ms_per_step"])
    row("  of which trace/trajectory writing", lambda s: s["trace_write_ms_per_step"])
    row("episode setup (prompt, trace start)", lambda s: s["setup_ms"])
    row("episode overhead (setup + all steps)", lambda s: s["episode_overhead_ms"])
    row("final test run (pytest)", lambda s: s["test_ms"])
    row("workspace copy + cleanup", lambda s: s["workspace_ms"])
    row("process start-up (interpreter + imports)", lambda s: s["startup_ms"])
    row("first episode overhead (warm-up, excluded)", lambda s: s["warmup_episode_overhead_ms"])
    Console(width=140).print(table)
    if "ratios" in result:
        r = result["ratios"]
        print(f"per-step ratio repo-agent/mini-swe-agent: {r['per_step']:.2f} "
              f"(per repetition {r['per_step_per_rep']['min']:.2f}-{r['per_step_per_rep']['max']:.2f}); "
              f"goal <= {GOAL_RATIO}: {'met' if result['goal']['met'] else 'NOT met'}")
    for side in names:
        print(f"{side}: passed {sides[side]['passed']} episodes; steps per episode {', '.join(kinds[side])}")


def profile_repo_agent(suite_path: Path, task_names: list[str], episodes: int) -> None:
    """cProfile of repo-agent episodes in this process, after one warm-up, tests excluded."""
    import cProfile
    import pstats

    from repo_agent import agent as agent_module
    from repo_agent.agent import AgentConfig, run_episode
    from repo_agent.models.scripted import ScriptedModel
    from repo_agent.suites.task import load_suite
    from repo_agent.testrun import TestReport

    suite = load_suite(suite_path)
    tasks = [suite.task(n) for n in task_names] if task_names else list(suite.tasks)
    # The test run is reported separately; a passing stub keeps pytest's subprocess out of the profile.
    agent_module.run_tests = lambda *a, **k: TestReport(passed=1)
    profiler = cProfile.Profile()
    with tempfile.TemporaryDirectory() as scratch:
        for number in range(episodes + 1):
            task = tasks[number % len(tasks)]
            replies = repo_agent_replies(action_script(suite, task))
            if number == 1:
                profiler.enable()
            run_episode(suite, task, ScriptedModel(replies), AgentConfig(), Path(scratch) / f"traces/{number}.json")
        profiler.disable()
    stats = pstats.Stats(profiler).strip_dirs().sort_stats("cumulative")
    print(f"repo-agent, {episodes} episodes x {len(replies)} steps, pytest excluded")
    stats.print_stats(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5, help="repetitions; each starts one process per side (default 5)")
    parser.add_argument("--tasks", nargs="*", default=[], help="task names (default: every task of the suite)")
    parser.add_argument("--quick", action="store_true", help="2 repetitions x 3 tasks (under a minute)")
    parser.add_argument("--suite", type=Path, default=DEFAULT_SUITE, help="QuixBugs-layout suite file")
    parser.add_argument("--mini-python", type=Path, default=DEFAULT_MINI_PYTHON,
                        help="python of a venv with mini-swe-agent installed (default /tmp/mini-venv/bin/python)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    parser.add_argument("--profile", action="store_true", help="only profile repo-agent's steps with cProfile")
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)  # internal: run as the repo-agent driver
    args = parser.parse_args()
    if args.spec:
        return repo_agent_driver(args.spec)
    if args.quick:
        args.reps, args.tasks = 2, args.tasks or ["gcd", "bitcount", "median"]
    if args.profile:
        profile_repo_agent(args.suite, args.tasks, episodes=30)
        return 0

    repo_spec, mini_spec, kinds = build_specs(args.suite.resolve(), args.tasks, sys.executable)
    sides = {"repo-agent": [sys.executable, str(Path(__file__).resolve())]}
    if args.mini_python.exists():
        sides["mini-swe-agent"] = [str(args.mini_python), str(HERE / "_mini_driver.py")]
    else:
        print(f"mini-swe-agent side SKIPPED: {args.mini_python} not found. Install it in its own venv:\n"
              "    python3 -m venv /tmp/mini-venv && /tmp/mini-venv/bin/pip install mini-swe-agent\n"
              "or pass --mini-python PATH.", file=sys.stderr)
    specs = {"repo-agent": repo_spec, "mini-swe-agent": mini_spec}
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    episodes = len(repo_spec["episodes"])
    started, load_start = time.time(), os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="harness-bench-") as scratch:
        for rep in range(args.reps):
            drivers = [Driver(name, sides[name], specs[name], Path(scratch)) for name in sides]
            # Episode by episode, in ABBA order, so load changes on a shared machine hit both sides alike.
            for index in range(episodes):
                for driver in (drivers if (rep + index) % 2 == 0 else drivers[::-1]):
                    driver.run(index)
            for driver in drivers:
                runs[driver.name].append(driver.close())
            print(f"repetition {rep + 1}/{args.reps} done ({time.time() - started:.0f}s)", file=sys.stderr)
    result = summarize(runs, kinds)
    mini_versions = runs["mini-swe-agent"][0]["versions"] if "mini-swe-agent" in runs else None
    machine = machine_info(mini_versions)
    machine["loadavg_start"], machine["loadavg_end"] = load_start, os.getloadavg()
    if "mini-swe-agent" in runs:
        machine["python_mini"] = runs["mini-swe-agent"][0]["python"]
    result = {"benchmark": "harness_overhead", "command": " ".join(["python", "benchmarks/harness_overhead.py", *sys.argv[1:]]),
              "machine": machine, "reps": args.reps, "tasks": [e["task_id"] for e in repo_spec["episodes"][1:]],
              "steps": kinds, "wall_s": round(time.time() - started, 1), **result}
    print_table(result, kinds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(flush=True)
    print(f"machine: {machine['cpu']}, {machine['logical_cpus']} logical CPUs, Python {machine['python_repo_agent']}; "
          f"load {machine['loadavg_start'][0]:.1f} -> {machine['loadavg_end'][0]:.1f}\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
