"""mini-swe-agent side of benchmarks/harness_overhead.py. Runs inside mini-swe-agent's own venv.

It replays a given bash action script per task with mini-swe-agent's deterministic test model, its
DefaultAgent loop and its LocalEnvironment (bash subprocesses), saving the trajectory after every step
as mini-swe-agent does. It only observes: the agent, model and environment classes are mini-swe-agent's
own, subclassed solely to stamp the start and end of model queries, command executions and trajectory
saves. The parent turns those events into per-step figures (the same code for both sides).

Usage (normally started by harness_overhead.py):
    /tmp/mini-venv/bin/python benchmarks/_mini_driver.py --spec SPEC.json
The spec names, per episode, the files to copy into a fresh workspace, the goal and the bash commands.
After its imports the driver prints `@@READY {...}`, then runs the episode whose index it reads on each
stdin line and prints `@@EPISODE {...}` (timing events), until `quit` or end of input.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", type=Path, required=True, help="episodes to run (written by harness_overhead.py)")
    args = parser.parse_args()
    spec = json.loads(args.spec.read_text(encoding="utf-8"))

    scratch = Path(tempfile.mkdtemp(prefix="mini-bench-"))
    # mini-swe-agent creates and reads a global config folder on import; keep it out of the user's home
    # and keep its start-up banner out of the parent's output.
    os.environ.setdefault("MSWEA_GLOBAL_CONFIG_DIR", str(scratch / "mswea-config"))
    os.environ.setdefault("MSWEA_SILENT_STARTUP", "1")
    import_started = time.perf_counter()
    runner = _build_runner()
    import_s = time.perf_counter() - import_started
    ready_at = time.time()  # wall clock: the parent compares it with the moment it spawned us
    try:
        _reply("READY", {"side": "mini-swe-agent", "python": sys.version.split()[0], "versions": _versions(),
                         "import_s": import_s, "ready_at": ready_at})
        # The parent interleaves the two sides episode by episode: it sends an index, we run that episode.
        for line in sys.stdin:
            if line.strip() == "quit":
                break
            _reply("EPISODE", runner(spec["episodes"][int(line)], scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


def _reply(tag: str, payload: dict) -> None:
    """One marked line on stdout; anything else a library might print there is ignored by the parent."""
    sys.stdout.write(f"@@{tag} {json.dumps(payload)}\n")
    sys.stdout.flush()


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("mini-swe-agent", "jinja2", "pydantic", "litellm"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def _build_runner():
    """Import mini-swe-agent (timed by the caller) and return a function that runs one episode."""
    from minisweagent.agents.default import DefaultAgent
    from minisweagent.config import get_config_from_spec
    from minisweagent.environments.local import LocalEnvironment
    from minisweagent.models.test_models import DeterministicModel, make_output

    # The text-based config matches the deterministic model: same templates a real run renders.
    config = get_config_from_spec("mini_textbased")
    agent_config = dict(config["agent"])
    agent_config.update(step_limit=0, cost_limit=0)  # the script itself decides when to stop
    observation_template = config["model"]["observation_template"]
    environment_env = dict(config.get("environment", {}).get("env", {}))

    events: list[dict] = []
    clock = time.perf_counter

    def record(kind: str, start: float, **extra) -> None:
        events.append({"kind": kind, "start": start, "end": clock(), **extra})

    class StampedModel(DeterministicModel):
        def query(self, messages, **kwargs):
            start = clock()
            try:
                return super().query(messages, **kwargs)
            finally:
                record("model", start)

    class StampedEnvironment(LocalEnvironment):
        test_command = ""

        def execute(self, action, cwd="", *, timeout=None):
            start = clock()
            kind = "test" if action.get("command") == self.test_command else "tool"
            try:
                return super().execute(action, cwd, timeout=timeout)
            finally:
                record(kind, start)

    class StampedAgent(DefaultAgent):
        def save(self, path, *extra_dicts):
            start = clock()
            try:
                return super().save(path, *extra_dicts)
            finally:
                record("trace", start)

    def run_episode(episode: dict, scratch: Path) -> dict:
        events.clear()
        episode_start = clock()
        workspace = Path(tempfile.mkdtemp(prefix="ws-", dir=scratch))
        for src, rel in episode["files"]:
            dst = workspace / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        record("workspace", episode_start)
        outputs = [make_output(step["content"], [{"command": step["command"]}], cost=0.0) for step in episode["steps"]]
        model = StampedModel(outputs=outputs, observation_template=observation_template, cost_per_call=0.0)
        env = StampedEnvironment(cwd=str(workspace), env=environment_env, timeout=episode.get("timeout", 120))
        env.test_command = episode["test_command"]
        trajectory = scratch / f"{episode['task_id'].replace('/', '__')}.traj.json"
        agent = StampedAgent(model, env, output_path=trajectory, **agent_config)
        run_start = clock()
        result = agent.run(task=episode["goal"])
        run_end = clock()
        cleanup_start = clock()
        shutil.rmtree(workspace, ignore_errors=True)
        record("workspace", cleanup_start)
        test_outputs = [m for m in agent.messages if m.get("role") == "user" and "returncode" in m.get("extra", {})]
        test_index = next(i for i, s in enumerate(episode["steps"]) if s["command"] == episode["test_command"])
        test_ok = len(test_outputs) > test_index and test_outputs[test_index]["extra"]["returncode"] == 0
        return {
            "task_id": episode["task_id"],
            "warmup": episode.get("warmup", False),
            "start": episode_start,
            "loop_start": run_start,
            "loop_end": run_end,
            "end": clock(),
            "events": list(events),
            "steps": agent.n_calls,
            "passed": bool(test_ok and result.get("exit_status") == "Submitted"),
            "exit_status": result.get("exit_status"),
            "trace_bytes": trajectory.stat().st_size if trajectory.exists() else 0,
        }

    return run_episode


if __name__ == "__main__":
    sys.exit(main())
