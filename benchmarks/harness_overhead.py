"""Harness overhead per step: repo-agent's loop (each tool set) vs mini-swe-agent's, same work, model time excluded.

Every side replays the same action script on every task of a QuixBugs-layout suite: list the tree, read
the buggy file, grep for its definition, write the fix, then the final tests and the end of the episode.
    repo-agent files   ScriptedModel -> agent.run_episode, tool set `files` (JSON protocol, confined
                       in-process tools, trace written atomically after every step); the driver runs
                       the sealed test run after `final`.
    repo-agent bash    the same loop, tool set `bash`: the shell commands mini-swe-agent runs below, each
                       in the bubblewrap sandbox, then `submit`.
    ... bash, no sandbox   the same with --sandbox none (what the sandbox costs; optional side).
    mini-swe-agent     DeterministicModel -> DefaultAgent + LocalEnvironment with those bash commands
                       (find, cat, grep -rn, a heredoc, pytest, the submit echo); trajectory saved after
                       every step.
Each side runs in its own interpreter (benchmarks/_repo_agent_driver.py; mini-swe-agent in its own venv
via benchmarks/_mini_driver.py). repo-agent is measured through its seams only (a stamped model, and a
measuring Environment passed as `open_env`), patching nothing; mini-swe-agent through subclasses of its
own classes. A step is the time from the end of one model call to the start of the next (or to the end of
the episode). Per-step overhead = that span minus test runs and workspace copies; a second figure also
leaves out tool/command execution, i.e. the harness alone. Test runs, workspace copies, process start-up
and the first (warm-up) episode are reported separately. Every repetition starts one fresh process per
side; inside it the sides take turns episode by episode, in forward then reverse order (ABBA), so load
changes on a shared machine hit all alike.

    .venv/bin/python benchmarks/harness_overhead.py             # 5 repetitions x every task of the suite
    .venv/bin/python benchmarks/harness_overhead.py --quick     # 2 x 3 tasks
    .venv/bin/python benchmarks/harness_overhead.py --sides files,mini
    .venv/bin/python benchmarks/harness_overhead.py --profile   # cProfile of repo-agent's steps only

mini-swe-agent lives in its own venv:  python3 -m venv /tmp/mini-venv && /tmp/mini-venv/bin/pip install mini-swe-agent==2.4.6
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness_figures import MINI, summarize  # benchmarks/, the script's folder, is on sys.path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))  # runnable from a checkout without installing

DEFAULT_SUITE = REPO / "eval/suites/bundled_suite.json"
DEFAULT_OUT = HERE / "results/harness_overhead.json"
DEFAULT_MINI_PYTHON = Path("/tmp/mini-venv/bin/python")
# side key -> (label, tool set, sandbox); the mini side is added when its venv exists
REPO_SIDES = {"files": ("repo-agent files", "files", "auto"), "bash": ("repo-agent bash", "bash", "auto"),
              "bash-nosandbox": ("repo-agent bash, no sandbox", "bash", "none")}
DEFAULT_SIDES = "files,bash,bash-nosandbox,mini"
HEREDOC_END = "REPO_AGENT_BENCH_EOF"

# ---------------------------------------------------------------- the action script, rendered per side

def action_script(suite, task) -> list[tuple[str, dict]]:
    """The side-neutral plan: (kind, arguments). Every rendering below follows it step by step."""
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


def shell_command(kind: str, args: dict) -> str:
    """The bash command for one step: what mini-swe-agent runs, and what repo-agent's bash tool runs."""
    return {
        "list": lambda: "find . -type f",
        "read": lambda: f"cat {shlex.quote(args['rel_path'])}",
        "grep": lambda: f"grep -rn {shlex.quote(args['pattern'])} .",
        "write": lambda: (f"cat <<'{HEREDOC_END}' > {shlex.quote(args['rel_path'])}\n"
                          f"{args['content'].rstrip(chr(10))}\n{HEREDOC_END}"),
    }[kind]()


def repo_agent_replies(script: list[tuple[str, dict]], toolset: str) -> list[str]:
    """JSON-protocol replies; `test` is no step here: repo-agent's driver runs the tests at the end."""
    from repo_agent.protocol import Final, ToolCall, render_action

    files = {
        "list": lambda a: ToolCall("list_files", {"rel_dir": a["rel_dir"], "max_files": 200}),
        "read": lambda a: ToolCall("read_file", {"rel_path": a["rel_path"], "max_chars": 4000}),
        "grep": lambda a: ToolCall("grep", {"pattern": a["pattern"], "rel_dir": ".", "max_matches": 50}),
        "write": lambda a: ToolCall("write_file", {"rel_path": a["rel_path"], "content": a["content"]}),
        "final": lambda a: Final(a["summary"]),
    }
    replies = []
    for kind, args in script:
        if kind == "test":
            continue
        if toolset == "bash":
            action = (ToolCall("submit", {"summary": args["summary"]}) if kind == "final"
                      else ToolCall("bash", {"command": shell_command(kind, args)}))
        else:
            action = files[kind](args)
        replies.append(render_action(action))
    return replies


def test_command(task, python: str) -> str:
    """The pytest run repo-agent's driver does, minus its sealed copy, sandbox and result stream."""
    spec = task.test
    return " ".join([
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 PYTHONDONTWRITEBYTECODE=1", shlex.quote(python), "-m pytest -q -x",
        "-p pytest_timeout -p no:cacheprovider --rootdir=.", f"--timeout={spec.per_test_timeout:g}",
        *map(shlex.quote, spec.args),
    ])


def mini_steps(script: list[tuple[str, dict]], test_cmd: str) -> list[dict]:
    steps = []
    for kind, args in script:
        command = {"test": test_cmd, "final": "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"}.get(kind) or shell_command(kind, args)
        steps.append({"kind": kind, "command": command,
                      "content": f"THOUGHT: next step ({kind}).\n\n```mswea_bash_command\n{command}\n```"})
    return steps


def build_specs(suite_path: Path, task_names: list[str], python: str, sides: list[str]) -> tuple[dict, dict]:
    """(spec per side, step kinds per side)."""
    from repo_agent.suites.task import load_suite

    suite = load_suite(suite_path)
    tasks = [suite.task(name) for name in task_names] if task_names else list(suite.tasks)
    specs, kinds = {}, {}
    plans = [(index == 0, task, action_script(suite, task)) for index, task in enumerate([tasks[0], *tasks])]
    for key in sides:  # the first episode of each process is a warm-up
        if key == "mini":
            specs[MINI] = {"episodes": [
                {"task_id": task.task_id, "warmup": warmup, "goal": task.goal, "test_command": test_command(task, python),
                 "steps": mini_steps(script, test_command(task, python)), "timeout": int(task.test.total_timeout),
                 "files": [[str((suite.root / task.base).resolve() / rel), rel] for rel in task.files]}
                for warmup, task, script in plans]}
            kinds[MINI] = [k for k, _ in plans[0][2]]
            continue
        label, toolset, sandbox = REPO_SIDES[key]
        specs[label] = {"suite": str(suite_path), "toolset": toolset, "sandbox": sandbox, "episodes": [
            {"task_id": task.task_id, "warmup": warmup, "replies": repo_agent_replies(script, toolset)}
            for warmup, task, script in plans]}
        kinds[label] = [k for k, _ in plans[0][2] if k != "test"]
    return specs, kinds


# ---------------------------------------------------------------- running, printing, machine

class Driver:
    """One side's driver process: started once per repetition, asked for one episode at a time."""

    def __init__(self, name: str, command: list[str], spec: dict, scratch: Path):
        self.name = name
        slug = name.replace(" ", "_").replace(",", "")
        spec_path = scratch / f"{slug}.spec.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        self.stderr = open(scratch / f"{slug}.stderr", "w+", encoding="utf-8")
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
        if not episode["passed"]:
            # A script that no longer fixes its task (or a harness error) would time a different episode.
            raise SystemExit(f"{self.name}: episode {episode['task_id']} did not pass "
                             f"({episode['exit_status']}): {episode.get('error') or ''}")
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


def machine_info(runs: dict[str, list[dict]]) -> dict:
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
    info = {"cpu": cpu, "logical_cpus": os.cpu_count(), "platform": platform.platform(),
            "python_repo_agent": sys.version.split()[0], "repo_agent_commit": commit,
            "packages": {side: records[0]["versions"] for side, records in runs.items()}}
    if MINI in runs:
        info["python_mini"] = runs[MINI][0]["python"]
    return info


def fmt(s: dict | None) -> str:
    return f"{s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f})" if s else "-"


def print_tables(result: dict, kinds: dict[str, list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    sides, ratios = result["sides"], result.get("ratios_vs_mini", {})
    n = next(iter(sides.values()))["per_step_ms"]["n"]
    head = Table(title=f"Per-step overhead, ms: median (min-max) over {n} measured episodes per side; "
                       "mean of the list/read/grep/write/final steps")
    for column in ("side", "per step, tool execution included", "x mini", "per step, tool execution excluded", "x mini",
                   "tool execution per step", "trace writing per step"):
        head.add_column(column, justify="left" if column == "side" else "right")
    for side, s in sides.items():
        r = ratios.get(side, {})
        head.add_row(side, fmt(s["per_step_ms"]), f"{r['per_step']:.2f}" if r else "", fmt(s["per_step_excl_tool_ms"]),
                     f"{r['per_step_excl_tool']:.2f}" if r else "", fmt(s["tool_exec_ms_per_step"]),
                     fmt(s["trace_write_ms_per_step"]))
    console.print(head)

    names = list(sides)
    detail = Table(title="Details, ms: median (min-max)")
    detail.add_column("figure")
    for name in names:
        detail.add_column(name, justify="right")

    def row(label, get):
        detail.add_row(label, *[fmt(get(sides[name])) for name in names])

    for kind in ("list", "read", "grep", "write", "test", "final"):
        suffix = " (mini's pytest step minus pytest)" if kind == "test" else ""
        row(f"step: {kind}{suffix}", lambda s, k=kind: s["step_ms"].get(k))
        row(f"  without tool execution", lambda s, k=kind: s["step_excl_tool_ms"].get(k))
    row("trace writing per step (repo-agent: I/O in place + encoding replayed)", lambda s: s["trace_write_ms_per_step"])
    row("  of which file I/O, in place (repo-agent)", lambda s: s.get("trace_io_ms_per_step"))
    row("  the whole write replayed (repo-agent, for reference)", lambda s: s.get("trace_replay_ms_per_step"))
    row("episode setup (prompt, trace start)", lambda s: s["setup_ms"])
    row("episode overhead (setup + all steps)", lambda s: s["episode_overhead_ms"])
    row("  of which final diff (repo-agent)", lambda s: s.get("final_diff_ms"))
    row("final test run (repo-agent: sealed)", lambda s: s["test_ms"])
    row("workspace copies + cleanup", lambda s: s["workspace_ms"])
    row("process start-up (interpreter + imports)", lambda s: s["startup_ms"])
    row("first episode overhead (warm-up, excluded)", lambda s: s["warmup_episode_overhead_ms"])
    console.print(detail)
    for side, r in ratios.items():
        goal = result["goal"][side]
        print(f"{side} / {MINI} per step: {r['per_step']:.2f} (per repetition {r['per_step_per_rep']['min']:.2f}-"
              f"{r['per_step_per_rep']['max']:.2f}), tool execution excluded {r['per_step_excl_tool']:.2f} "
              f"({r['per_step_excl_tool_per_rep']['min']:.2f}-{r['per_step_excl_tool_per_rep']['max']:.2f}); "
              f"goal <= {goal['at_most']}: {'met' if goal['met'] else 'NOT met'}")
    for side in names:
        print(f"{side}: passed {sides[side]['passed']} episodes; steps per episode {', '.join(kinds[side])}")


def profile_repo_agent(suite_path: Path, task_names: list[str], toolset: str, episodes: int) -> None:
    """cProfile of repo-agent episodes in this process, after one warm-up, test runs left out."""
    import cProfile
    import pstats

    from repo_agent.agent import AgentConfig, run_episode
    from repo_agent.environments import open_environment
    from repo_agent.models.scripted import ScriptedModel
    from repo_agent.suites.task import load_suite
    from repo_agent.verdict import TestReport

    class PassingTests:
        """The real environment, except that the test run (reported apart) is a passing stub."""

        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def run_tests(self, fail_fast: bool = False):
            return TestReport(passed=1, outcome="passed")

    suite = load_suite(suite_path)
    tasks = [suite.task(n) for n in task_names] if task_names else list(suite.tasks)
    profiler = cProfile.Profile()
    with tempfile.TemporaryDirectory() as scratch:
        for number in range(episodes + 1):
            task = tasks[number % len(tasks)]
            replies = repo_agent_replies(action_script(suite, task), toolset)
            if number == 1:
                profiler.enable()
            run_episode(suite, task, ScriptedModel(replies), AgentConfig(toolset=toolset), Path(scratch) / f"traces/{number}.json",
                        open_env=lambda *a: PassingTests(open_environment(*a)))
        profiler.disable()
    print(f"repo-agent {toolset}, {episodes} episodes x {len(replies)} steps, test runs left out")
    pstats.Stats(profiler).strip_dirs().sort_stats("cumulative").print_stats(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5, help="repetitions; each starts one process per side (default 5)")
    parser.add_argument("--tasks", nargs="*", default=[], help="task names (default: every task of the suite)")
    parser.add_argument("--quick", action="store_true", help="2 repetitions x 3 tasks")
    parser.add_argument("--sides", default=DEFAULT_SIDES, help=f"comma-separated, from {', '.join([*REPO_SIDES, 'mini'])} "
                        f"(default {DEFAULT_SIDES})")
    parser.add_argument("--suite", type=Path, default=DEFAULT_SUITE, help="QuixBugs-layout suite file")
    parser.add_argument("--mini-python", type=Path, default=DEFAULT_MINI_PYTHON,
                        help="python of a venv with mini-swe-agent installed (default /tmp/mini-venv/bin/python)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    parser.add_argument("--profile", choices=["files", "edit", "bash"], nargs="?", const="files",
                        help="only profile repo-agent's steps with cProfile (tool set, default files)")
    args = parser.parse_args()
    if args.quick:
        args.reps, args.tasks = 2, args.tasks or ["gcd", "bitcount", "median"]
    if args.profile:
        profile_repo_agent(args.suite, args.tasks, args.profile, episodes=30)
        return 0

    wanted = [s.strip() for s in args.sides.split(",") if s.strip()]
    unknown = [s for s in wanted if s != "mini" and s not in REPO_SIDES]
    if unknown:
        parser.error(f"unknown side(s) {', '.join(unknown)}")
    if "mini" in wanted and not args.mini_python.exists():
        print(f"{MINI} side SKIPPED: {args.mini_python} not found. Install it in its own venv:\n"
              "    python3 -m venv /tmp/mini-venv && /tmp/mini-venv/bin/pip install mini-swe-agent==2.4.6\n"
              "or pass --mini-python PATH.", file=sys.stderr)
        wanted.remove("mini")
    specs, kinds = build_specs(args.suite.resolve(), args.tasks, sys.executable, wanted)
    commands = {label: [sys.executable, str(HERE / "_repo_agent_driver.py")] for label in specs if label != MINI}
    if MINI in specs:
        commands[MINI] = [str(args.mini_python), str(HERE / "_mini_driver.py")]
    runs: dict[str, list[dict]] = {name: [] for name in specs}
    episodes = len(next(iter(specs.values()))["episodes"])
    started, loads = time.time(), [os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="harness-bench-") as scratch:
        for rep in range(args.reps):
            drivers = [Driver(name, commands[name], specs[name], Path(scratch)) for name in specs]
            # Episode by episode, forward then reverse, so load changes on a shared machine hit every side alike.
            for index in range(episodes):
                for driver in (drivers if (rep + index) % 2 == 0 else drivers[::-1]):
                    driver.run(index)
            for driver in drivers:
                runs[driver.name].append(driver.close())
            loads.append(os.getloadavg())
            print(f"repetition {rep + 1}/{args.reps} done ({time.time() - started:.0f}s, load {os.getloadavg()[0]:.1f})",
                  file=sys.stderr)
    machine = machine_info(runs)
    # 1-minute load average before the run and after each repetition (2 cores: above 2, jobs wait)
    machine["loadavg_1min"] = [round(load[0], 2) for load in loads]
    machine["loadavg_start"], machine["loadavg_end"] = loads[0], loads[-1]
    first = next(iter(specs.values()))["episodes"]
    result = {"benchmark": "harness_overhead", "command": " ".join(["python", "benchmarks/harness_overhead.py", *sys.argv[1:]]),
              "machine": machine, "reps": args.reps, "tasks": [e["task_id"] for e in first[1:]],
              "steps": kinds, "wall_s": round(time.time() - started, 1), **summarize(runs, kinds)}
    print_tables(result, kinds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"\nmachine: {machine['cpu']}, {machine['logical_cpus']} logical CPUs, Python {machine['python_repo_agent']}; "
          f"1-minute load {min(machine['loadavg_1min']):.1f}-{max(machine['loadavg_1min']):.1f}\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
