"""How fast `suite synth` makes valid tasks, and whether the oracle fixes them (issue 24).

Runs the real command (one sealed run per candidate) on the bundled suite's train side plus HumanEval's
train side, timed from start to end, then reads its sidecar for the yield per operator and source; with
--oracle-sample N it evaluates the oracle on N tasks drawn at random (seeded) with each tool set
(files, edit, bash) and checks that its `edit` fix is one replace_in_file of the recorded minimal fix.

    .venv/bin/python benchmarks/synth_throughput.py [--per-program 8] [--oracle-sample 100]
Writes benchmarks/results/synth_throughput.json. Goal: >= 1,000 valid tasks in <= 20 minutes, run alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from repo_agent.suites.task import load_suite, save_suite, with_tasks  # noqa: E402


def run(cmd: list[str]) -> tuple[float, str]:
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.monotonic() - started, proc.stdout


def oracle_check(suite_path: Path, sample: int, seed: int, tmp: Path) -> dict:
    suite = load_suite(suite_path)
    chosen = sorted(random.Random(seed).sample(list(suite.tasks), min(sample, len(suite.tasks))), key=lambda t: t.task_id)
    sample_path = suite_path.with_name("oracle_sample_suite.json")
    save_suite(with_tasks(suite, tuple(chosen)), sample_path)
    out = {"tasks": len(chosen)}
    for toolset in ("files", "edit", "bash"):
        trace_dir = tmp / f"oracle_{toolset}"
        seconds, _ = run([sys.executable, "-m", "repo_agent.cli", "eval", "--suite", str(sample_path), "--llm-provider", "oracle",
                          "--allow-oracle", "--allow-train-split", "--toolset", toolset, "--trace-dir", str(trace_dir),
                          "--num-workers", "4"])
        report = json.loads((trace_dir / "report.json").read_text())
        entry = {"pass_rate": report["overall"]["pass_rate"], "seconds": round(seconds, 1)}
        if toolset == "edit":
            single = 0
            for path in sorted((trace_dir / "traces").glob("*.json")):
                trace = json.loads(path.read_text())
                edits = [s["action"]["name"] for s in trace["steps"] if s.get("action") and s["action"].get("name")
                         in ("replace_in_file", "write_file")]
                single += edits == ["replace_in_file"]
            entry["one_replace_in_file"] = single
        out[toolset] = entry
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-program", type=int, default=8)
    parser.add_argument("--max-tries", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--oracle-sample", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "synth_throughput.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="synth-bench-") as tmp:
        suite_path = Path(tmp) / "synth_suite.json"
        cmd = [sys.executable, "-m", "repo_agent.cli", "suite", "synth", "--from", "eval/suites/bundled_suite.json",
               "--from", "humaneval", "--out", str(suite_path), "--per-program", str(args.per_program),
               "--max-tries", str(args.max_tries), "--seed", str(args.seed), "--num-workers", str(os.cpu_count() or 2)]
        load_before = os.getloadavg()
        seconds, stdout = run(cmd)
        stats = json.loads(suite_path.with_name("synth_suite.synth.json").read_text())
        suite = load_suite(suite_path)
        result = {
            "benchmark": "synth_throughput", "command": " ".join(["repo-agent"] + cmd[3:]).replace(tmp, "TMP"),
            "machine": {"platform": platform.platform(), "python": platform.python_version(), "cores": os.cpu_count(),
                        "load_avg_before": load_before, "load_avg_after": os.getloadavg()},
            "wall_time_s": round(seconds, 1), "valid_tasks": len(suite.tasks),
            "seconds_per_valid_task": round(seconds / max(1, len(suite.tasks)), 3),
            "goal": {"valid_tasks": 1000, "wall_time_s": 1200,
                     "met": len(suite.tasks) >= 1000 and seconds <= 1200},
            "programs": stats["programs"], "candidates_tried": stats["candidates_tried"], "dropped": stats["dropped"],
            "per_operator": stats["per_operator"], "per_origin": stats["per_origin"],
            "programs_without_tasks": stats["programs_without_tasks"],
        }
        if args.oracle_sample:
            result["oracle"] = oracle_check(suite_path, args.oracle_sample, args.seed, Path(tmp))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(stdout[-4000:])
    print(json.dumps({k: result[k] for k in ("wall_time_s", "valid_tasks", "seconds_per_valid_task", "goal")}, indent=2))
    if "oracle" in result:
        print(json.dumps(result["oracle"], indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
