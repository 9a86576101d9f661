"""What validating a whole suite costs, and what fail-fast and per-test timeouts buy (issue 7, item 3).

Variants, interleaved within each repetition:
  serial_sum     every task's buggy and reference run once, one after another, no fail-fast; the sum
                 divided by the core count is the ideal parallel cost of one verdict per side
  validate       `suite validate` defaults: 2 repeats per side, buggy runs fail-fast, per-test timeout
  no_fail_fast   the same, but buggy runs go through every test (hanging ones wait for the timeout)
  short_timeout  the defaults with a 2 s per-test timeout instead of the suite's 5 s
Without any per-test timeout a hanging buggy run only ends at the whole-run timeout (120 s), so each of
those runs would cost 120 s; that figure is computed, not run.

Default suite: a QuixBugs-SHAPED checkout generated in a temp folder (the real QuixBugs is not on this
machine). It copies what decides the cost from SUITES.md: the 40 real program names, 276 test items (the real 278 minus 2 skipped),
buggy outcomes 89 pass / 170 fail / 17 hang (bitcount 9/9, sqrt 6/7, find_first_in_sorted 2/7 hang), and
one 1.5 s test in a correct run. Pass --suite to measure a real suite instead.

    .venv/bin/python benchmarks/verdict_cost.py [--suite FILE] [--reps 3] [--workers N]
Prints a table and writes benchmarks/results/verdict_cost.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from repo_agent.suites.quixbugs import build_quixbugs_suite  # noqa: E402
from repo_agent.suites.task import Suite, load_suite  # noqa: E402
from repo_agent.suites.validate import ValidateOptions, validate_suite, validate_task  # noqa: E402

QUIXBUGS_NAMES = (
    "bitcount breadth_first_search bucketsort depth_first_search detect_cycle find_first_in_sorted find_in_sorted "
    "flatten gcd get_factors hanoi is_valid_parenthesization kheapsort knapsack kth lcs_length levenshtein lis "
    "longest_common_subsequence max_sublist_sum mergesort minimum_spanning_tree next_palindrome next_permutation "
    "pascal possible_change powerset quicksort reverse_linked_list rpn_eval shortest_path_length "
    "shortest_path_lengths shortest_paths shunting_yard sieve sqrt subsequences to_base topological_ordering wrap"
).split()
# name -> buggy outcomes of its test items (p = pass, f = fail, h = hang), as measured on the real suite
FIXED_PROFILES = {"bitcount": "h" * 9, "sqrt": "p" + "h" * 6, "find_first_in_sorted": "pppffhh"}
REMAINING_PASS, REMAINING_FAIL = 85, 168  # of the other 37 programs' 253 items


def profiles() -> dict[str, str]:
    others = [n for n in QUIXBUGS_NAMES if n not in FIXED_PROFILES]
    sizes = [7] * 31 + [6] * 6  # 253 items over 37 programs
    passes = [REMAINING_PASS // len(others) + (i < REMAINING_PASS % len(others)) for i in range(len(others))]
    result = dict(FIXED_PROFILES)
    for name, size, n_pass in zip(others, sizes, passes):
        n_pass = min(n_pass, size - 1)  # every buggy program fails at least one test
        result[name] = "p" * n_pass + "f" * (size - n_pass)
    return result


PROGRAM = '''def {name}(x, outcome):
    if outcome == "h":
        while True:
            pass
    return -1 if outcome == "f" else x
'''
CORRECT = '''import time

def {name}(x, outcome):
    if x == 999:
        time.sleep(1.5)  # the real suite's slowest correct test takes about 1.5 s
    return x
'''
TEST = '''import pytest
from load_testdata import load_json_testcases

if pytest.use_correct:
    from correct_python_programs.{name} import {name}
else:
    from python_programs.{name} import {name}

@pytest.mark.parametrize("input_data,expected", load_json_testcases({name}.__name__))
def test_{name}(input_data, expected):
    assert {name}(*input_data) == expected
'''
CONFTEST = '''import pytest

def pytest_addoption(parser):
    parser.addoption("--correct", action="store_true")

def pytest_configure(config):
    pytest.use_correct = config.getoption("--correct")
'''
LOADER = '''import json
from pathlib import Path

def load_json_testcases(name):
    path = Path(__file__).resolve().parent.parent / "json_testcases" / f"{name}.json"
    return [tuple(json.loads(l)) for l in path.read_text().splitlines() if l.strip()]
'''


def write_quixbugs_shaped(root: Path) -> Path:
    for folder in ("python_programs", "correct_python_programs", "python_testcases", "json_testcases"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "conftest.py").write_text(CONFTEST)
    (root / "python_testcases" / "load_testdata.py").write_text(LOADER)
    (root / "python_programs" / "node.py").write_text("class Node:\n    pass\n")
    for index, (name, outcomes) in enumerate(sorted(profiles().items())):
        (root / "python_programs" / f"{name}.py").write_text(PROGRAM.format(name=name))
        (root / "correct_python_programs" / f"{name}.py").write_text(CORRECT.format(name=name))
        (root / "python_testcases" / f"test_{name}.py").write_text(TEST.format(name=name))
        slow = name == "knapsack"
        cases = [[[999 if slow and i == 0 else i, o], 999 if slow and i == 0 else i] for i, o in enumerate(outcomes)]
        (root / "json_testcases" / f"{name}.json").write_text("\n".join(json.dumps(c) for c in cases) + "\n")
    return root


def serial_sum(suite: Suite) -> float:
    """Seconds of one buggy (no fail-fast) plus one reference run per task, run one at a time."""
    once = ValidateOptions(repeats=1, num_workers=1, fail_fast=False)
    return sum(validate_task(suite, task, once).duration_s for task in suite.tasks)


def timed_validate(suite: Suite, options: ValidateOptions) -> tuple[float, int]:
    started = time.monotonic()
    results = validate_suite(suite, options)
    return time.monotonic() - started, sum(r.valid for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", type=Path, help="suite file (default: a generated QuixBugs-shaped suite)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "verdict_cost.json")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="verdict-cost-") as tmp:
        build_s = None
        if args.suite:
            suite, label = load_suite(args.suite), str(args.suite)
        else:
            root = write_quixbugs_shaped(Path(tmp) / "QuixBugs")
            started = time.monotonic()
            suite = build_quixbugs_suite(root)
            build_s = time.monotonic() - started
            label = "generated QuixBugs-shaped checkout (40 tasks, 276 items, 17 hanging)"
        per_test = suite.tasks[0].test.per_test_timeout
        variants = {
            "serial_sum": lambda: (serial_sum(suite), None),
            "validate": lambda: timed_validate(suite, ValidateOptions(num_workers=args.workers)),
            "no_fail_fast": lambda: timed_validate(suite, ValidateOptions(num_workers=args.workers, fail_fast=False)),
            "short_timeout": lambda: timed_validate(suite, ValidateOptions(num_workers=args.workers, per_test_timeout=2.0)),
        }
        samples: dict[str, list[float]] = {k: [] for k in variants}
        valid: dict[str, list[int]] = {k: [] for k in variants}
        for rep in range(args.reps):
            for name, run in variants.items():  # interleaved: machine load hits every variant alike
                seconds, n_valid = run()
                samples[name].append(seconds)
                if n_valid is not None:
                    valid[name].append(n_valid)
                print(f"rep {rep + 1}/{args.reps} {name}: {seconds:.1f}s" + (f" ({n_valid}/{len(suite.tasks)} valid)" if n_valid is not None else ""), flush=True)
    rows = summarize(samples, valid, cores, len(suite.tasks))
    hanging_runs = sum(1 for t in suite.tasks if profiles().get(t.name, "").count("h")) if not args.suite else None
    report = {
        "benchmark": "verdict_cost", "suite": label, "tasks": len(suite.tasks), "per_test_timeout_s": per_test,
        "reps": args.reps, "workers": args.workers, "build_s": build_s,
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cores": cores,
                    "note": "cores shared with other jobs while measuring"},
        "rows": rows,
        "no_per_test_timeout_estimate_s": None if hanging_runs is None else hanging_runs * 2 * 120.0 / cores,
    }
    print_table(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


def summarize(samples: dict[str, list[float]], valid: dict[str, list[int]], cores: int, tasks: int) -> list[dict]:
    ideal = statistics.median(samples["serial_sum"]) / cores
    rows = []
    for name, values in samples.items():
        median = statistics.median(values)
        rows.append({"variant": name, "median_s": round(median, 2), "min_s": round(min(values), 2),
                     "max_s": round(max(values), 2),
                     "vs_serial_sum_per_core": round(median / ideal, 2) if name != "serial_sum" else None,
                     "valid": valid[name] or None, "tasks": tasks})
    return rows


def print_table(report: dict) -> None:
    print(f"\nverdict cost on {report['suite']}; {report['machine']['cores']} cores, {report['workers']} workers, "
          f"{report['reps']} reps, per-test timeout {report['per_test_timeout_s']} s")
    if report["build_s"] is not None:
        print(f"build: {report['build_s'] * 1000:.0f} ms")
    print(f"{'variant':<15}{'median s':>10}{'min-max s':>16}{'/ (serial/cores)':>18}  valid")
    for row in report["rows"]:
        ratio = "-" if row["vs_serial_sum_per_core"] is None else f"{row['vs_serial_sum_per_core']:.2f}x"
        print(f"{row['variant']:<15}{row['median_s']:>10.1f}{row['min_s']:>8.1f}-{row['max_s']:<7.1f}{ratio:>18}  {row['valid'] or '-'}")
    if report["no_per_test_timeout_estimate_s"] is not None:
        print(f"without per-test timeouts (whole-run timeout 120 s per hanging run, 2 repeats): "
              f">= {report['no_per_test_timeout_estimate_s']:.0f} s for the hanging tasks alone (computed)")


if __name__ == "__main__":
    main()
