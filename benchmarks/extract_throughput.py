"""sft-extract and pair-mining throughput and peak memory as the trace count grows (issue 7, item 4).

    .venv/bin/python benchmarks/extract_throughput.py [--reps 3] [--scales 1,10,100]

A base set of real traces is made once: oracle rollouts of every bundled task (2 seeds) plus scripted
rollouts with parse errors, tool errors and loops. Scale N copies it N times; each copy gets its own
task id and a goal suffix so no example is a duplicate of another (dedup would otherwise hide the work).
Every measurement runs in a fresh child process that runs the real command path (extract -> data check
-> rename -> stats) and reports wall time per phase and peak RSS above the post-import baseline. The
together SDK (whose file checker `data check` also runs) is imported before the clock starts: a fixed
~0.5 s / ~20 MB per command, reported separately.
Runs are interleaved (rep, scale, variant) and repeated; the table shows median and min-max.

Goal (issue 5/7): linear time, flat memory, >= 10,000 steps/s for sft-extract.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "extract_throughput.json"
VARIANTS = ("sft-json", "sft-native", "pairs-json")

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
variant, trace_dir, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
from repo_agent.data.check import check_file
from repo_agent.data.export import file_kind
from repo_agent.data.sft import SftOptions, extract_sft
from repo_agent.data.pairs import extract_pairs, SOURCES
from repo_agent.data.stats import meta_path, stats_path
def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t_import = time.perf_counter()
import together.lib.utils.files  # the SDK checker's import is a fixed cost (~0.5 s, ~20 MB): kept out of the rates
import_s = time.perf_counter() - t_import
base = rss_mb()
t0 = time.perf_counter()
fmt = variant.split("-")[1]
if variant.startswith("sft"):
    opts = SftOptions(fmt=fmt, require_success=False, require_valid_tool_ok=False, skip_loops=False)
    stats, *writers = extract_sft(trace_dir, out, meta_path(out), opts)
    kind = file_kind(fmt, pairs=False)
else:
    # every gap kept (as before outcome gaps existed), so that the work measured is the same mining + rendering
    stats, *writers = extract_pairs(trace_dir, out, meta_path(out), fmt, SOURCES, min_gap="none")
    kind = file_kind(fmt, pairs=True)
writers[0].close()
t1 = time.perf_counter()
report = check_file(writers[0].tmp, kind, use_sdk=False)  # as the commands do (data check adds the SDK pass)
t2 = time.perf_counter()
assert report.ok, report.errors[:3]
for w in writers:
    w.commit()
stats.write(stats_path(out))
t3 = time.perf_counter()
print(json.dumps({"extract_s": t1 - t0, "check_s": t2 - t1, "total_s": t3 - t0, "steps": stats.steps_seen,
                  "rows": stats.examples, "peak_rss_mb": rss_mb(), "base_rss_mb": base, "sdk_import_s": import_s,
                  "bytes": out.stat().st_size}))
"""


def build_base(folder: Path) -> None:
    """Real episodes: oracle rollouts of every bundled task (seeds 0, 1) and scripted bad ones."""
    sys.path.insert(0, str(REPO / "tests"))
    from test_data_helpers import SUITE, bad_rollouts, oracle  # the same builders the tests use

    for task in SUITE.tasks:
        for seed in (0, 1):
            oracle(folder, task.task_id, seed)
    first = json.loads(next((folder / "traces").glob("gcd__oracle0*.json")).read_text())["steps"][0]["raw_output"]
    bad_rollouts(folder, first)


def replicate(base: Path, target: Path, copies: int) -> int:
    """`copies` renamed copies of every base trace; returns the number of trace files."""
    out = target / "traces"
    out.mkdir(parents=True)
    n = 0
    for path in sorted((base / "traces").glob("*.json")):
        trace = json.loads(path.read_text())
        for c in range(copies):
            copy = dict(trace)
            copy["task_id"] = f"{trace['task_id']}~{c}"
            copy["prompt_messages"] = [dict(m) for m in trace["prompt_messages"]]
            copy["prompt_messages"][1]["content"] += f" (copy {c})"
            (out / f"{path.stem}~{c}.json").write_text(json.dumps(copy, ensure_ascii=False, indent=1))
            n += 1
    return n


def measure(variant: str, trace_dir: Path, out_dir: Path) -> dict:
    out = out_dir / f"{variant}.jsonl"
    proc = subprocess.run([sys.executable, "-c", CHILD, variant, str(trace_dir), str(out)], capture_output=True,
                          text=True, cwd=REPO, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for p in out_dir.glob(f"{variant}*"):
        p.unlink()
    return result


def machine() -> dict:
    import psutil

    return {"platform": platform.platform(), "python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
            "logical_cpus": os.cpu_count(), "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "load_avg_1_5_15": [round(x, 1) for x in os.getloadavg()],
            "note": "CPU shared with other jobs; compare ratios within one run"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--scales", default="1,10,100")
    args = parser.parse_args()
    scales = [int(s) for s in args.scales.split(",")]
    work = Path(tempfile.mkdtemp(prefix="extract_bench_"))
    try:
        started = time.perf_counter()
        build_base(work / "base")
        print(f"base trace set built in {time.perf_counter() - started:.1f}s", file=sys.stderr)
        dirs = {s: work / f"x{s}" for s in scales}
        files = {s: replicate(work / "base", dirs[s], s) for s in scales}
        runs: dict[tuple[str, int], list[dict]] = {}
        for rep in range(args.reps):
            for scale in scales:
                for variant in VARIANTS:
                    runs.setdefault((variant, scale), []).append(measure(variant, dirs[scale], work / "out"))
                    print(f"rep {rep} x{scale} {variant} done", file=sys.stderr)
        rows = summarize(runs, files, scales)
        print_table(rows)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({"benchmark": "extract_throughput", "machine": machine(), "reps": args.reps,
                                       "command": "python benchmarks/extract_throughput.py --reps %d --scales %s" % (args.reps, args.scales),
                                       "rows": rows}, indent=1) + "\n")
        print(f"\nwrote {RESULTS}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def summarize(runs: dict, files: dict, scales: list[int]) -> list[dict]:
    rows = []
    for (variant, scale), samples in sorted(runs.items(), key=lambda kv: (VARIANTS.index(kv[0][0]), kv[0][1])):
        rate = [s["steps"] / s["total_s"] for s in samples]
        extract_rate = [s["steps"] / s["extract_s"] for s in samples]
        extra_mb = [s["peak_rss_mb"] - s["base_rss_mb"] for s in samples]
        total = [s["total_s"] for s in samples]
        rows.append({
            "variant": variant, "scale": scale, "traces": files[scale], "steps": samples[0]["steps"], "rows": samples[0]["rows"],
            "output_mb": round(samples[0]["bytes"] / 2**20, 1),
            "total_s": {"median": round(statistics.median(total), 3), "min": round(min(total), 3), "max": round(max(total), 3)},
            "steps_per_s": {"median": round(statistics.median(rate)), "min": round(min(rate)), "max": round(max(rate))},
            "extract_only_steps_per_s": round(statistics.median(extract_rate)),
            "check_share": round(statistics.median(s["check_s"] / s["total_s"] for s in samples), 2),
            "extra_peak_rss_mb": {"median": round(statistics.median(extra_mb), 1), "min": round(min(extra_mb), 1), "max": round(max(extra_mb), 1)},
        })
    base = {r["variant"]: r for r in rows if r["scale"] == scales[0]}
    for r in rows:
        b = base[r["variant"]]
        r["time_ratio_vs_1x"] = round(r["total_s"]["median"] / b["total_s"]["median"], 2)
        r["steps_ratio_vs_1x"] = round(r["steps"] / b["steps"], 2)
    return rows


def print_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="sft-extract / pairs-extract throughput (median, min-max)")
    for col in ("variant", "scale", "traces", "steps", "rows", "out MB", "total s", "steps/s", "extract-only steps/s",
                "check share", "time x / steps x", "extra peak RSS MB"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["variant"], f"{r['scale']}x", str(r["traces"]), str(r["steps"]), str(r["rows"]), str(r["output_mb"]),
                      "{median} ({min}-{max})".format(**r["total_s"]), "{median} ({min}-{max})".format(**r["steps_per_s"]),
                      str(r["extract_only_steps_per_s"]), f"{r['check_share']:.0%}",
                      f"{r['time_ratio_vs_1x']} / {r['steps_ratio_vs_1x']}",
                      "{median} ({min}-{max})".format(**r["extra_peak_rss_mb"]))
    Console(width=220).print(table)
    print(f"machine: {machine()}")


if __name__ == "__main__":
    main()
