"""What the teacher's data looks like (issue 14): counts, not timings.

Runs the real CLI on a suite's training side (default: the bundled train split) in three settings:
  plain      the oracle with its defaults (test policy never, no mistakes, no branching), pairs mined
             with --min-outcome-gap none: what the teacher gave before outcome gaps existed
  mistakes   --test-policy on_write --oracle-mistake-rate R, no branching: recoveries for SFT
  branched   --test-policy on_write --oracle-mistake-rate R --branch-pairs: exact pairs
and for each reports: rollouts and their verdicts, rollouts with a failing (or refused) write followed
by a passing one, mistakes by kind, SFT examples (and what was removed), write_file targets that differ
from the file the model last read only by the task's minimal fix, and pairs by outcome gap.

    .venv/bin/python benchmarks/teacher_data.py [--suite FILE] [--rollouts 4] [--rate 0.3] [--seed 0]
Prints a table and writes benchmarks/results/teacher_data.json.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from typer.testing import CliRunner  # noqa: E402

from repo_agent.cli import app  # noqa: E402
from repo_agent.suites.task import load_suite  # noqa: E402
from repo_agent.traces import read_trace  # noqa: E402


def cli(*args: object) -> None:
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    if result.exit_code not in (0, 1):  # 1: nothing to write (no pair), a result too
        raise SystemExit(f"repo-agent {' '.join(map(str, args))} failed ({result.exit_code}):\n{result.output}")


def changed(a: str, b: str) -> list[str]:
    return [l for l in difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm="", n=0)
            if l[:1] in "+-" and not l.startswith(("+++", "---"))]


def measure(name: str, suite_path: Path, run: Path, rollouts: int, seed: int, flags: list[str], gap: str) -> dict:
    suite = load_suite(suite_path)
    started = time.monotonic()
    cli("prefs", "--suite", suite_path, "--trace-dir", run, "--out", run / "pairs.jsonl", "--rollouts", rollouts,
        "--num-workers", 2, "--seed", seed, "--min-outcome-gap", gap, "--llm-provider", "oracle", *flags)
    cli("sft-extract", "--trace-dir", run, "--output", run / "sft.jsonl")
    wall = time.monotonic() - started
    traces = {p.stem: read_trace(p) for p in sorted((run / "traces").glob("*.json"))}
    recovered, kinds = 0, Counter()
    for trace in traces.values():
        outcomes = ["refused" if s["refused"] else "pass" if (s["test_snippet"] or "").startswith("[TESTS PASS]")
                    else "fail" if s["test_snippet"] else "untested"
                    for s in trace["steps"] if (s["action"] or {}).get("name") == "write_file"]
        recovered += bool(outcomes) and outcomes[0] in ("fail", "refused") and "pass" in outcomes
        for step in trace["steps"]:
            if step.get("mistake"):
                kinds["refused" if step["refused"] else "tests_failed"] += 1
    sft_stats = json.loads((run / "sft.stats.json").read_text())
    rows = [json.loads(l) for l in (run / "sft.jsonl").read_text().splitlines()]
    meta = [json.loads(l) for l in (run / "sft.meta.jsonl").read_text().splitlines()]
    writes = only_fix = 0
    for row, where in zip(rows, meta):
        target = json.loads(row["messages"][-1]["content"])
        if target.get("name") != "write_file":
            continue
        writes += 1
        path, content = target["args"]["rel_path"], target["args"]["content"]
        task = suite.task(where["task_id"])
        read = [row["messages"][i + 1]["content"].split("\n", 1)[1] for i, m in enumerate(row["messages"][:-1])
                if m["role"] == "assistant" and json.loads(m["content"]).get("name") == "read_file"
                and json.loads(m["content"])["args"]["rel_path"] == path]
        buggy = suite.buggy_text(task)[path]
        fix, _ = suite.teacher_fix(task)
        if read and read[-1] == buggy and changed(buggy, content) == changed(buggy, fix.get(path, "")):
            only_fix += 1
    pair_stats = json.loads((run / "pairs.stats.json").read_text()) if (run / "pairs.stats.json").exists() else {}
    return {
        "setting": name, "flags": flags, "min_outcome_gap": gap, "wall_s": round(wall, 1),
        "rollouts": len(traces), "passed": sum(1 for t in traces.values() if t["verdict"]["outcome"] == "passed"),
        "recovered_after_failing_write": recovered, "mistakes": dict(kinds),
        "sft_examples": sft_stats["examples"], "sft_removed": sft_stats["removed"],
        "sft_write_targets": writes, "sft_writes_buggy_plus_minimal_fix_only": only_fix,
        "pairs": pair_stats.get("examples", 0), "pairs_by_outcome_gap": pair_stats.get("pairs_by_outcome_gap", {}),
        "pairs_removed": pair_stats.get("removed", {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", type=Path, default=REPO / "eval" / "suites" / "bundled_train_suite.json")
    parser.add_argument("--rollouts", type=int, default=4)
    parser.add_argument("--rate", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    teacher = ["--test-policy", "on_write", "--oracle-mistake-rate", str(args.rate)]
    settings = [("plain", [], "none"), ("mistakes", teacher, "step"), ("branched", [*teacher, "--branch-pairs"], "step")]
    results = []
    with tempfile.TemporaryDirectory(prefix="teacher-data-") as tmp:
        for name, flags, gap in settings:
            results.append(measure(name, args.suite, Path(tmp) / name, args.rollouts, args.seed, flags, gap))
    report = {"suite": str(args.suite.relative_to(REPO) if args.suite.is_relative_to(REPO) else args.suite),
              "rollouts_per_task": args.rollouts, "mistake_rate": args.rate, "seed": args.seed, "results": results,
              "machine": {"platform": platform.platform(), "python": platform.python_version(), "cores": os.cpu_count()}}
    out = REPO / "benchmarks" / "results" / "teacher_data.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"teacher data on {report['suite']} ({args.rollouts} rollouts per task, seed {args.seed})")
    for column in ("setting", "rollouts (passed)", "fail->pass", "SFT examples", "write targets = read + fix",
                   "pairs", "by outcome gap", "dropped: no gap"):
        table.add_column(column)
    for r in results:
        table.add_row(r["setting"], f"{r['rollouts']} ({r['passed']})",
                      f"{r['recovered_after_failing_write']} ({r['recovered_after_failing_write'] / r['rollouts']:.0%})",
                      f"{r['sft_examples']} (-{r['sft_removed'].get('mistake', 0)} mistakes)",
                      f"{r['sft_writes_buggy_plus_minimal_fix_only']}/{r['sft_write_targets']}", str(r["pairs"]),
                      ", ".join(f"{k} {v}" for k, v in r["pairs_by_outcome_gap"].items()) or "-",
                      str(r["pairs_removed"].get("no_outcome_gap", 0)))
    Console(width=160).print(table)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
