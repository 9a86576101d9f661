"""What a sealed verdict costs per test run, against the unsealed run it replaced (issue 12).

For every task, the same verdict (the reference fix in place: a full, passing run; and the buggy
program with fail-fast) is measured three ways, interleaved task by task so machine load hits each alike:
  unsealed      the runner before sealed verdicts: pytest in the model's own workspace, results from a
                JUnit XML file the tests could rewrite, no sandbox (reproduced here as it was)
  sealed        a fresh pristine copy with the editable changes laid over it, results streamed through
                the authenticated pipe and checked against the expected tests, read-only files checked
                afterwards; no sandbox
  sealed_bwrap  the same inside bubblewrap (read-only system, private /tmp, no network, pid namespace),
                a cold run: a fresh interpreter imports pytest for every verdict
  warm          the same sealed, sandboxed verdict on a warm worker (issue 27: repo_agent/warm.py), which
                imported pytest once and forks a fresh child with its own namespaces per verdict
The workspace itself exists before the clock starts in every variant (it is made once per episode).
Verdicts in which a test hangs or sleeps (a timeout in the cold verdict) are timed apart: no worker
shortens a CPU or wall-clock budget, so they would only dilute the ratio.

    .venv/bin/python benchmarks/sealed_verdict_cost.py [--reps 3] [--suites bundled,quixbugs-shaped]
Prints a table and writes benchmarks/results/sealed_verdict_cost.json. Goals: sealed_bwrap <= 1.15x
unsealed; warm <= 0.5x sealed_bwrap on the verdicts that do not hang, every warm verdict identical to
the cold one (outcome, counts, per-test statuses, tampering).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from repo_agent import warm  # noqa: E402
from repo_agent.sandbox import resolve_sandbox  # noqa: E402
from repo_agent.suites.quixbugs import build_quixbugs_suite  # noqa: E402
from repo_agent.suites.task import Suite, TaskSpec, load_suite  # noqa: E402
from repo_agent.testrun import scrubbed_env  # noqa: E402
from repo_agent.workspace import TaskWorkspace  # noqa: E402
from verdict_cost import write_quixbugs_shaped  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# The runner as it was before sealed verdicts (commit 9bdd685): rlimits via a bootstrap, pytest with a
# JUnit file, in the model's workspace.
_OLD_BOOTSTRAP = (
    "import resource, sys\n"
    "mem, cpu = int(sys.argv[1]), int(sys.argv[2])\n"
    "resource.setrlimit(resource.RLIMIT_AS, (mem, mem))\n"
    "resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))\n"
    "import pytest\n"
    "sys.exit(pytest.main(sys.argv[3:]))\n"
)


def unsealed_run(root: Path, task: TaskSpec, fail_fast: bool) -> bool:
    import xml.etree.ElementTree as ET

    spec = task.test
    with tempfile.TemporaryDirectory(prefix="repo-agent-junit-") as tmp:
        junit = Path(tmp) / "junit.xml"
        cmd = [spec.python or sys.executable, "-c", _OLD_BOOTSTRAP, str(4 * 1024**3), str(int(spec.total_timeout) + 10),
               "-q", "-p", "pytest_timeout", "-p", "no:cacheprovider", "--rootdir=.", f"--junitxml={junit}",
               "-o", "junit_family=xunit1", f"--timeout={spec.per_test_timeout}", "--timeout-method=signal",
               *(["-x"] if fail_fast else []), *spec.args]
        subprocess.run(cmd, cwd=root, env=scrubbed_env(dict(spec.env)), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, timeout=spec.total_timeout)
        if not junit.exists():
            return False
        cases = list(ET.parse(junit).iter("testcase"))
        return bool(cases) and all(c.find("failure") is None and c.find("error") is None and c.find("skipped") is None
                                   for c in cases)


def essence(report) -> tuple:
    return (report.outcome, report.passed, report.failed, report.errors, report.skipped, report.tampered,
            tuple(sorted(report.tests.items())))


def measure_task(suite: Suite, task: TaskSpec, fixed: bool, box_none, box_bwrap) -> dict[str, tuple[float, bool, tuple | None]]:
    """One verdict per variant on the same workspace state; returns seconds, whether it passed, and the
    verdict's essence (sealed variants). `hang` marks a state whose cold verdict had a timeout."""
    out: dict[str, tuple[float, bool, tuple | None]] = {}
    with TaskWorkspace.create(suite, task, box_none) as env:
        if fixed:
            for path, text in suite.reference_text(task).items():
                (env.root / path).write_text(text, encoding="utf-8")
        fail_fast = not fixed
        started = time.perf_counter()
        passed = unsealed_run(env.root, task, fail_fast)
        out["unsealed"] = (time.perf_counter() - started, passed, None)
        warm.set_verdict_workers("cold")
        started = time.perf_counter()
        report = env.run_tests(fail_fast)
        out["sealed"] = (time.perf_counter() - started, report.ok, essence(report))
        if box_bwrap is not None:
            env.sandbox = box_bwrap
            started = time.perf_counter()
            report = env.run_tests(fail_fast)
            out["sealed_bwrap"] = (time.perf_counter() - started, report.ok, essence(report))
            hang = report.timeouts > 0 or report.run_timed_out
            warm.set_verdict_workers("warm")
            started = time.perf_counter()
            report = env.run_tests(fail_fast)
            out["warm"] = (time.perf_counter() - started, report.ok, essence(report))
            if report.worker != "warm":
                raise SystemExit(f"{task.task_id}: the warm variant ran {report.worker}")
            out["hang"] = (0.0, hang, None)
    return out


def suites(names: list[str], tmp: Path) -> dict[str, Suite]:
    found = {}
    for name in names:
        if name == "bundled":
            found[name] = load_suite(REPO / "eval" / "suites" / "bundled_suite.json")
        elif name == "quixbugs-shaped":
            found[name] = build_quixbugs_suite(write_quixbugs_shaped(tmp / "QuixBugs"))
        else:
            found[name] = load_suite(name)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--suites", default="bundled,quixbugs-shaped", help="bundled, quixbugs-shaped, or suite files")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "sealed_verdict_cost.json")
    args = parser.parse_args()
    box_none = resolve_sandbox("none")
    bwrap = resolve_sandbox("auto")
    box_bwrap = bwrap if bwrap.isolated else None
    report_rows = []
    with tempfile.TemporaryDirectory(prefix="sealed-cost-") as tmp:
        for label, suite in suites(args.suites.split(","), Path(tmp)).items():
            totals: dict[str, list[float]] = {}
            agree = checked = same = compared = 0
            for rep in range(args.reps):
                rep_totals: dict[str, float] = {}
                for task in suite.tasks:
                    for fixed in (True, False):
                        result = measure_task(suite, task, fixed, box_none, box_bwrap)
                        hang = result.pop("hang", (0.0, False, None))[1]
                        for variant, (seconds, _, _) in result.items():
                            if variant in ("sealed_bwrap", "warm"):  # the warm comparison, hangs apart
                                key = f"{variant} ({'hangs' if hang else 'no hang'})"
                                rep_totals[key] = rep_totals.get(key, 0.0) + seconds
                                rep_totals[f"#{key}"] = rep_totals.get(f"#{key}", 0) + 1
                            rep_totals[variant] = rep_totals.get(variant, 0.0) + seconds
                        checked += 1
                        agree += len({passed for _, passed, _ in result.values()}) == 1
                        if "warm" in result:
                            compared += 1
                            same += result["warm"][2] == result["sealed_bwrap"][2]
                for variant, seconds in rep_totals.items():
                    totals.setdefault(variant, []).append(seconds)
                print(f"{label} rep {rep + 1}/{args.reps}: " + ", ".join(f"{v} {s:.1f}s" for v, s in rep_totals.items()
                                                                         if not v.startswith("#")), flush=True)
            runs = 2 * len(suite.tasks)
            base = statistics.median(totals["unsealed"])
            for variant, values in totals.items():
                if variant.startswith("#") or "(" in variant:
                    continue
                median = statistics.median(values)
                report_rows.append({"suite": label, "variant": variant, "verdicts_per_rep": runs,
                                    "median_total_s": round(median, 2), "ms_per_verdict": round(1000 * median / runs, 1),
                                    "ratio_vs_unsealed": round(median / base, 3),
                                    "per_rep_ratio": [round(v / u, 3) for v, u in zip(values, totals["unsealed"])]})
            for kind in ("no hang", "hangs"):
                cold, hot = totals.get(f"sealed_bwrap ({kind})"), totals.get(f"warm ({kind})")
                if not cold:
                    continue
                count = int(totals[f"#sealed_bwrap ({kind})"][0])
                report_rows.append({"suite": label, "variant": f"warm vs cold sealed_bwrap ({kind})", "verdicts_per_rep": count,
                                    "cold_ms_per_verdict": round(1000 * statistics.median(cold) / count, 1),
                                    "warm_ms_per_verdict": round(1000 * statistics.median(hot) / count, 1),
                                    "ratio_warm_vs_cold": round(statistics.median(hot) / statistics.median(cold), 3),
                                    "per_rep_ratio": [round(h / c, 3) for h, c in zip(hot, cold)]})
            report_rows.append({"suite": label, "variant": "(verdicts agreeing across variants)", "agree": agree, "of": checked})
            if compared:
                report_rows.append({"suite": label, "variant": "(warm verdicts identical to cold)", "agree": same, "of": compared})
    report = {"benchmark": "sealed_verdict_cost", "reps": args.reps,
              "machine": {"platform": platform.platform(), "python": platform.python_version(), "cores": os.cpu_count(),
                          "load_avg_at_end": os.getloadavg()},
              "bubblewrap": bwrap.binary if bwrap.isolated else f"unavailable: {bwrap.note}", "rows": report_rows}
    print(f"\n{'suite':<16}{'variant':<14}{'ms/verdict':>11}{'ratio':>8}  per-rep ratios")
    for row in report_rows:
        if "ratio_vs_unsealed" in row:
            print(f"{row['suite']:<16}{row['variant']:<14}{row['ms_per_verdict']:>11.1f}{row['ratio_vs_unsealed']:>7.3f}x  {row['per_rep_ratio']}")
        elif "ratio_warm_vs_cold" in row:
            print(f"{row['suite']:<16}{row['variant']}: {row['verdicts_per_rep']} verdicts/rep, cold {row['cold_ms_per_verdict']} ms, "
                  f"warm {row['warm_ms_per_verdict']} ms = {row['ratio_warm_vs_cold']:.3f}x  {row['per_rep_ratio']}")
        else:
            print(f"{row['suite']:<16}{row['variant']}: {row['agree']}/{row['of']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
