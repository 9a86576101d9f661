"""Does the data teach fixing? A learning curve over the number of synthesized training tasks (issue 26).

One command, resumable (every stage is an ordinary repo-agent command that resumes or skips finished
work; re-running the script continues where it stopped), every stage recorded in WORK/curve.json:

1. training tasks: `suite synth` from the TRAIN side of the bundled suite, HumanEval and (with
   --quixbugs) a real QuixBugs checkout; held-out tasks: `suite synth --held-out` from their TEST sides.
   Training tasks whose program matches a held-out program (`suite check --against`'s rule) are left out.
2. points: nested subsets of the training tasks (seeded order), e.g. 32 within 128 within 512;
3. teacher: oracle rollouts on the largest subset (mistakes 0.3, branched pairs, the `edit` tool set,
   test policy on_write); each point trains on the traces of its own tasks;
4. per point: episode-row SFT of the student (the same epochs at every point);
   at the largest point also DPO on the teacher's outcome-gap pairs and a short GRPO, both from its SFT
   adapter;
5. greedy eval of the base model and of every adapter on the same held-out sets: the synthesized held-out
   set (intervals resample SOURCE PROGRAMS: a cluster bootstrap), the bundled test side, and the real
   QuixBugs test side (with --quixbugs);
6. the report: per point and set, pass rate, parse-error rate, share of runs that edit the buggy file,
   share whose edit touches the bug's line(s), loops, steps, tokens, wall time; training tokens, epochs,
   time; the plot; written to --report (docs/results/learning_curve by default).

    .venv/bin/python benchmarks/learning_curve.py --work runs/learning_curve --points 0,32,128,512 \\
        --quixbugs ../shared/data/QuixBugs

The committed report (docs/results/learning_curve/) came from
    --points 0,32,128 --no-dpo --grpo-steps 0 --num-workers 8 --max-iters 5 --epochs 1 --grad-accum 2
with the same --quixbugs, then the same flags without --no-dpo (DPO at the 128 point), then with
--grpo-steps 4 instead of 0 (GRPO at the 128 point); report.json's settings list every value, and
`--report-only` with the flags of the last run rewrites the report from WORK without running anything.
Run it alone: two torch processes on 2 cores slow each other tenfold.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from repo_agent.atomic import atomic_write_json  # noqa: E402
from repo_agent.suites.leakage import leaks  # noqa: E402
from repo_agent.suites.split import sample_suite  # noqa: E402
from repo_agent.suites.task import SuiteError, load_suite, save_suite, with_tasks  # noqa: E402

SUITES = REPO / "eval" / "suites"
EDIT_TOOLS = ("replace_in_file", "write_file")  # what "tries an edit" counts, successful or not


class Stages:
    """WORK/curve.json: every stage with its command, seconds and outcome, rewritten after each."""

    def __init__(self, path: Path):
        self.path = path
        self.record: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {"stages": []}

    def run(self, name: str, args: list[str], done: Path | None = None) -> float:
        """`repo-agent ARGS`; skipped (and said) when `done` exists: the stage finished earlier."""
        if done is not None and done.exists():
            print(f"[done] {name}", flush=True)
            return 0.0
        print(f"[run] {name}: repo-agent {shlex.join(args)}", flush=True)
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "repo_agent.cli", *args], cwd=REPO, capture_output=True, text=True)
        seconds = time.monotonic() - started
        self.record["stages"].append({"stage": name, "command": ["repo-agent", *args], "seconds": round(seconds, 1),
                                      "exit_code": proc.returncode, "load_avg": os.getloadavg()})
        atomic_write_json(self.path, self.record)
        if proc.returncode != 0:
            raise SystemExit(f"stage {name!r} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return seconds

    def note(self, key: str, value: Any) -> None:
        self.record[key] = value
        atomic_write_json(self.path, self.record)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "learning_curve")
    parser.add_argument("--report", type=Path, default=REPO / "docs" / "results" / "learning_curve")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--points", default="0,32,128,512", help="training-task counts; 0 is the base model")
    parser.add_argument("--sources", default="bundled,humaneval", help="bundled, humaneval (and quixbugs with --quixbugs)")
    parser.add_argument("--quixbugs", type=Path, default=None, help="a QuixBugs checkout (scripts only, never tests)")
    parser.add_argument("--per-program", type=int, default=8, help="synthesized training tasks per program")
    parser.add_argument("--heldout-per-program", type=int, default=5)
    parser.add_argument("--heldout-per-test-timeout", type=float, default=14.0,
                        help="CPU seconds per test of held-out tasks (QuixBugs' levenshtein needs 1.3 s per test)")
    parser.add_argument("--synth-max-tries", type=int, default=40)
    parser.add_argument("--rollouts", type=int, default=1, help="teacher rollouts per task for SFT")
    parser.add_argument("--pairs-tasks", type=int, default=64,
                        help="DPO at the largest point: branched teacher pairs on this many of its tasks")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--max-seq-len", type=int, default=2048)
    parser.add_argument("--grad-accum", type=int, default=4)
    parser.add_argument("--dpo", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--dpo-epochs", type=float, default=1.0)
    parser.add_argument("--grpo-steps", type=int, default=4)
    parser.add_argument("--max-iters", type=int, default=6, help="steps per evaluation episode")
    parser.add_argument("--max-tokens", type=int, default=256, help="new tokens per student reply")
    parser.add_argument("--num-workers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label", default="", help="where the run was made, for the report (e.g. the machine)")
    parser.add_argument("--notes", default="", help="anything a reader must know about the run (interruptions, load)")
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------------------- suites


def build_suites(args: argparse.Namespace, stages: Stages) -> dict[str, Path]:
    work = args.work
    sources = [s for s in args.sources.split(",") if s]
    froms: list[str] = []
    suites: dict[str, Path] = {}
    if "bundled" in sources:
        froms += ["--from", str(SUITES / "bundled_suite.json")]
    if "humaneval" in sources:
        froms += ["--from", "humaneval"]
    if args.quixbugs is not None:
        qb = work / "quixbugs" / "quixbugs_suite.json"
        stages.run("QuixBugs suite", ["suite", "build", "quixbugs", "--root", str(args.quixbugs), "--out", str(qb)], qb)
        stages.run("QuixBugs split", ["suite", "split", "--suite", str(qb), "--train-pct", "80"],
                   qb.with_name("quixbugs_test_suite.json"))
        froms += ["--from", str(qb)]
        suites["quixbugs_test"] = qb.with_name("quixbugs_test_suite.json")
    common = ["--max-tries", str(args.synth_max_tries), "--seed", str(args.seed), "--num-workers", "2"]
    train = work / "synth" / "train_suite.json"
    held = work / "synth" / "heldout_suite.json"
    stages.run("synthesized training tasks", ["suite", "synth", *froms, "--out", str(train), "--per-program",
                                              str(args.per_program), *common], train)
    stages.run("synthesized held-out tasks", ["suite", "synth", *froms, "--held-out", "--out", str(held),
                                              "--per-program", str(args.heldout_per_program), "--per-test-timeout",
                                              str(args.heldout_per_test_timeout), *common], held)
    suites["synth_heldout"] = held
    if "bundled" in sources:
        suites["bundled_test"] = SUITES / "bundled_test_suite.json"
    clean = work / "synth" / "train_clean_suite.json"
    if not clean.exists():
        suite = load_suite(train)
        against = [load_suite(held), load_suite(SUITES / "bundled_suite.json")]
        if "quixbugs_test" in suites:
            against.append(load_suite(work / "quixbugs" / "quixbugs_suite.json"))
        leaked = {leak.task_id: str(leak) for leak in leaks(suite, against)}
        save_suite(with_tasks(suite, tuple(t for t in suite.tasks if t.task_id not in leaked)), clean)
        stages.note("leaks_left_out", {"count": len(leaked), "examples": list(leaked.values())[:10]})
    suites["train"] = clean
    return suites


def point_suite(train: Path, count: int, seed: int, out: Path) -> Path:
    """The first `count` training tasks in a seeded order (`suite sample`: smaller points are subsets of larger ones)."""
    try:
        sampled = sample_suite(load_suite(train), count, seed)
    except SuiteError as exc:
        raise SystemExit(f"point {count}: {exc} (raise --per-program)") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.exists():
        save_suite(sampled, out)
    return out


def copy_traces(teacher: Path, suite: Path, dest: Path) -> None:
    """The teacher's traces of the point's tasks, as a run folder of their own for sft-extract."""
    tasks = set(load_suite(suite).task_ids)
    (dest / "traces").mkdir(parents=True, exist_ok=True)
    for path in sorted((teacher / "traces").glob("*.json")):
        trace = json.loads(path.read_text())
        if trace.get("task_id") in tasks and not (dest / "traces" / path.name).exists():
            shutil.copy2(path, dest / "traces" / path.name)


# ------------------------------------------------------------------------------------------ stages


def train_point(args: argparse.Namespace, stages: Stages, n: int, suite: Path, teacher: Path) -> Path:
    folder = args.work / "points" / str(n)
    copy_traces(teacher, suite, folder / "teacher")
    sft = folder / "sft.jsonl"
    stages.run(f"SFT data, {n} tasks", ["sft-extract", "--trace-dir", str(folder / "teacher"), "--output", str(sft),
                                        "--rows", "episode", "--tokenizer", args.model, "--max-tokens", str(args.max_seq_len)], sft)
    adapter = folder / "adapter"
    stages.run(f"SFT, {n} tasks", ["finetune", "local", "sft", "--dataset", str(sft), "--model", args.model, "--output",
                                   str(adapter), "--epochs", str(args.epochs), "--learning-rate", str(args.learning_rate),
                                   "--lora-r", "16", "--max-seq-len", str(args.max_seq_len), "--batch-size", "1",
                                   "--grad-accum", str(args.grad_accum), "--seed", str(args.seed)],
               adapter / "adapter_config.json")
    return adapter


def evaluate(args: argparse.Namespace, stages: Stages, label: str, adapter: Path | None, suites: dict[str, Path]) -> None:
    for name, suite in suites.items():
        if name == "train":
            continue
        run = args.work / "eval" / label / name
        stages.run(f"eval {label} on {name}", [
            "eval", "--suite", str(suite), "--trace-dir", str(run), "--llm-provider", "local", "--model", args.model,
            *(["--adapter", str(adapter)] if adapter else []), "--toolset", "edit", "--test-policy", "on_write",
            "--max-iters", str(args.max_iters), "--max-tokens", str(args.max_tokens), "--temperature", "0",
            "--rollouts", "1", "--num-workers", str(args.num_workers), "--seed", str(args.seed)], run / "report.json")


# ------------------------------------------------------------------------------------------ report


def bug_lines(suite_task: Any, suite: Any) -> set[int]:
    """1-based lines of the buggy target file that hold the bug: a synthesized task's mutated lines, else the
    lines its minimal fix (or the reference) changes."""
    info = dict(suite_task.meta).get("synth")
    if info:
        return set(info["lines"])
    path = suite_task.target_files[0]
    buggy = suite.buggy_text(suite_task).get(path, "")
    fixed = suite.teacher_fix(suite_task)[0].get(path, buggy)
    rows: set[int] = set()
    for tag, i1, i2, _, _ in difflib.SequenceMatcher(None, buggy.splitlines(), fixed.splitlines(), autojunk=False).get_opcodes():
        if tag != "equal":
            rows |= set(range(i1 + 1, max(i1 + 1, i2) + 1))
    return rows


def changed_lines(diff: str, path: str) -> set[int] | None:
    """Old-file lines a unified diff of `path` changes (None: the diff does not touch the file)."""
    lines: set[int] = set()
    touched, current = False, None
    old = 0
    for line in diff.splitlines():
        if line.startswith("--- "):
            current = line[4:].removeprefix("a/")
            continue
        if line.startswith("+++ "):
            continue
        match = re.match(r"@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@", line)
        if match:
            old = int(match.group(1))
            touched = touched or current == path
            continue
        if current != path:
            continue
        if line.startswith("-"):
            lines.add(old)
            old += 1
        elif line.startswith("+"):
            lines.add(old)  # an insertion before this old line
        else:
            old += 1
    return lines if touched else None


def run_summary(run: Path, suite_path: Path) -> dict[str, Any]:
    from repo_agent.evaluate.report import load_run

    suite = load_suite(suite_path)
    loaded = load_run(run)
    report = json.loads((run / "report.json").read_text())
    per_task = {}
    for trace_path in sorted((run / "traces").glob("*.json")):
        trace = json.loads(trace_path.read_text())
        task = suite.task(trace["task_id"])
        diff = trace.get("final_diff") or ""
        touched = changed_lines(diff, task.target_files[0])
        per_task[task.task_id] = {
            "passed": bool((trace.get("metrics") or {}).get("passed")),
            "tried_edit": any((step.get("action") or {}).get("name") in EDIT_TOOLS for step in trace.get("steps") or []),
            "edited": touched is not None,
            "edited_bug": bool(touched and touched & bug_lines(task, suite)),
            "cluster": task.split_key or task.task_id,
        }
    overall = report["overall"]
    count = max(1, len(per_task))
    return {
        "tasks": len(per_task), "programs": len({v["cluster"] for v in per_task.values()}),
        "pass_rate": overall["pass_rate"], "parse_error_rate": overall["parse_error_rate"],
        "tried_edit": sum(v["tried_edit"] for v in per_task.values()) / count,
        "edited_buggy_file": sum(v["edited"] for v in per_task.values()) / count,
        "edited_at_bug": sum(v["edited_bug"] for v in per_task.values()) / count,
        "loops_per_run": overall["loop_detections_per_run"], "steps_per_run": overall["avg_steps"],
        "tokens_in_per_run": overall["tokens_in_per_run"], "tokens_out_per_run": overall["tokens_out_per_run"],
        "wall_time_s_per_run": overall["wall_time_s_per_run"], "per_task": per_task, "run": str(run),
        "loaded": loaded,
    }


def interval(values: dict[str, dict[str, Any]], key: str, clustered: bool, resamples: int = 4000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of a rate, resampling source programs (clustered) or tasks, with the
    cluster sums and draws `report compare` uses."""
    import numpy as np

    from repo_agent.evaluate.compare import cluster_sums, resample_indices

    if not values:
        return 0.0, 0.0
    ids = list(values)
    nums, dens, names = cluster_sums(np.array([float(values[t][key]) for t in ids]), np.ones(len(ids)),
                                     [values[t]["cluster"] if clustered else t for t in ids])
    draws = resample_indices(len(names), resamples, seed)
    low, high = np.percentile(nums[draws].sum(1) / dens[draws].sum(1), [2.5, 97.5])
    return float(low), float(high)


def training_figures(adapter: Path) -> dict[str, Any]:
    record = json.loads((adapter / "train_config.json").read_text())
    data, summary = record["data"], record.get("summary") or {}
    runtime = summary.get("runtime_s") or 0
    epochs = record["settings"]["epochs"]
    return {"rows": data["examples"], "trained_turns_per_epoch": data.get("trained_turns_per_epoch"),
            "trained_tokens_per_epoch": data.get("trained_tokens_per_epoch"), "tokens_per_epoch": data["tokens_per_epoch"],
            "epochs": epochs, "optimizer_steps": summary.get("steps"), "train_time_s": runtime,
            "tokens_per_s": round(data["tokens_per_epoch"] * epochs / runtime, 1) if runtime else None,
            "final_loss": summary.get("train_loss")}


def grpo_figures(run: Path) -> dict[str, Any]:
    """A GRPO run's own record: steps, episodes (and how many passed their sealed verdict), reward per step, time."""
    record = json.loads((run / "grpo_config.json").read_text())
    summary = record.get("summary") or {}
    steps = [json.loads(line) for line in (run / "training_log.jsonl").read_text().splitlines() if line.strip()]
    outcomes = [json.loads(path.read_text()).get("verdict", {}) or {} for path in sorted((run / "rollouts").glob("step-*/*.json"))]
    return {"steps": summary.get("steps"), "episodes": len(outcomes),
            "episodes_passed": sum(1 for v in outcomes if v.get("outcome") == "passed"),
            "learning_rate": record["settings"]["learning_rate"], "num_generations": record["settings"]["num_generations"],
            "mean_reward_per_step": [round(r["reward"], 3) for r in steps if "reward" in r],
            "zero_variance_share": summary.get("zero_variance_share"), "train_time_s": summary.get("runtime_s"),
            "seconds_per_step": summary.get("seconds_per_step")}


def write_report(args: argparse.Namespace, suites: dict[str, Path], models: dict[str, dict[str, Any]], stages: Stages) -> None:
    from repo_agent.evaluate.compare import compare_runs

    report: dict[str, Any] = {"benchmark": "learning_curve", "label": args.label, "model": args.model,
                              "machine": {"platform": platform.platform(), "python": platform.python_version(), "cores": os.cpu_count()},
                              "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                              "leaks_left_out": stages.record.get("leaks_left_out"), "sets": {}, "models": {}}
    sets = [name for name in suites if name != "train"]
    for name in sets:
        report["sets"][name] = {"suite": str(suites[name]), "tasks": len(load_suite(suites[name]).tasks)}
    base = {name: run_summary(args.work / "eval" / "base" / name, suites[name]) for name in sets}
    for name in sets:
        report["sets"][name]["programs"] = base[name]["programs"]
    finished = {label: info for label, info in models.items()
                if all((args.work / "eval" / label / name / "report.json").is_file() for name in sets)}
    report["unfinished_models"] = sorted(set(models) - set(finished))
    for label, info in finished.items():
        entry: dict[str, Any] = {"training_tasks": info["tasks"], "kind": info["kind"],
                                 "training": training_figures(info["adapter"]) if info.get("adapter") else None,
                                 **({"grpo": grpo_figures(info["grpo"])} if info.get("grpo") else {}), "sets": {}}
        for name in sets:
            summary = base[name] if label == "base" else run_summary(args.work / "eval" / label / name, suites[name])
            clustered = name == "synth_heldout"
            entry["sets"][name] = {k: v for k, v in summary.items() if k not in ("per_task", "loaded")}
            entry["sets"][name]["pass_rate_ci"] = interval(summary["per_task"], "passed", clustered)
            entry["sets"][name]["edited_at_bug_ci"] = interval(summary["per_task"], "edited_bug", clustered)
            entry["sets"][name]["tried_edit_ci"] = interval(summary["per_task"], "tried_edit", clustered)
            if label != "base":
                clusters = {t: v["cluster"] for t, v in summary["per_task"].items()} if clustered else None
                comparison = compare_runs(base[name]["loaded"], summary["loaded"], resamples=4000, clusters=clusters)
                pass_rate = comparison["metrics"]["pass_rate"]
                entry["sets"][name]["vs_base"] = {
                    "pass_rate_difference": pass_rate["difference"], "ci": [pass_rate["ci_low"], pass_rate["ci_high"]],
                    "ci_excludes_zero": pass_rate["ci_excludes_zero"], "interval": comparison["method"]["interval"],
                    "task_ci": [pass_rate.get("task_ci_low"), pass_rate.get("task_ci_high")],
                    "mcnemar_p": comparison["mcnemar"]["p_value"], "verdict": comparison["verdict"]}
        report["models"][label] = entry
    report["stages"] = stages.record["stages"]
    args.report.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.report / "report.json", report)
    plot(report, args.report / "curve.png")
    (args.report / "report.md").write_text(markdown(report), encoding="utf-8")
    print(f"wrote {args.report / 'report.md'}, report.json and curve.png")


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sft = [(label, m) for label, m in report["models"].items() if m["kind"] in ("base", "sft")]
    sft.sort(key=lambda item: item[1]["training_tasks"])
    figure, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    panels = ((axes[0], "pass_rate", "pass rate"), (axes[1], "edited_at_bug", "edit touches the bug's line(s)"),
              (axes[2], "tried_edit", "tries an edit (applied or not)"))
    for axis, key, title in panels:
        for name in report["sets"]:
            xs = [m["training_tasks"] for _, m in sft]
            ys = [m["sets"][name][key] for _, m in sft]
            cis = [m["sets"][name][f"{key}_ci"] for _, m in sft]
            axis.errorbar([max(x, 1) for x in xs], ys, yerr=[[y - c[0] for y, c in zip(ys, cis)], [c[1] - y for y, c in zip(ys, cis)]],
                          marker="o", capsize=3, label=name)
        axis.set_xscale("log")
        axis.set_xlabel("synthesized training tasks (base model at 1)")
        axis.set_ylabel(title)
        axis.set_ylim(-0.02, 1.02)
        axis.grid(alpha=0.3)
        axis.set_title(title + " (95% intervals)")
    axes[0].legend(fontsize=8)
    figure.suptitle(f"{report['model']}: episode-row SFT on synthesized tasks, greedy eval, edit tool set")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def markdown(report: dict[str, Any]) -> str:
    out = [f"# Learning curve: {report['model']}" + (f" ({report['label']})" if report["label"] else ""), "",
           "Generated by `benchmarks/learning_curve.py` (settings in report.json). Every model is evaluated greedily "
           "with the `edit` tool set on the same held-out sets; intervals on the synthesized held-out set resample "
           "source programs (cluster bootstrap), the others resample tasks.", "",
           "![curve](curve.png)", ""]
    if report["settings"].get("notes"):
        out += [report["settings"]["notes"], ""]
    for name, info in report["sets"].items():
        out += [f"## {name} ({info['tasks']} tasks from {info.get('programs', '?')} programs)", "",
                "| model | training tasks | pass rate [95% CI] | vs base [95% CI] | parse errors | tries an edit | edits buggy file | edit at the bug | loops/run | steps | tokens in/run | s/run |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for label, model in report["models"].items():
            s = model["sets"][name]
            vs = s.get("vs_base")
            vs_text = "-" if not vs else f"{vs['pass_rate_difference']:+.3f} [{vs['ci'][0]:+.3f}, {vs['ci'][1]:+.3f}]"
            out.append(f"| {label} | {model['training_tasks']} | {s['pass_rate']:.3f} [{s['pass_rate_ci'][0]:.3f}, "
                       f"{s['pass_rate_ci'][1]:.3f}] | {vs_text} | {s['parse_error_rate']:.3f} | {s.get('tried_edit', 0):.3f} | "
                       f"{s['edited_buggy_file']:.3f} | "
                       f"{s['edited_at_bug']:.3f} | {s['loops_per_run']:.2f} | {s['steps_per_run']:.2f} | "
                       f"{s['tokens_in_per_run']:.0f} | {s['wall_time_s_per_run']:.1f} |")
        out.append("")
    out += ["## Training", "", "| model | rows | trained turns/epoch | tokens/epoch | epochs | steps | time (s) | tokens/s | final loss |",
            "|---|---|---|---|---|---|---|---|---|"]
    for label, model in report["models"].items():
        t = model["training"]
        if t:
            out.append(f"| {label} | {t['rows']} | {t['trained_turns_per_epoch']} | {t['tokens_per_epoch']} | {t['epochs']} | "
                       f"{t['optimizer_steps']} | {t['train_time_s']:.0f} | {t['tokens_per_s']} | {t['final_loss']} |")
    grpo = [(label, m["grpo"]) for label, m in report["models"].items() if m.get("grpo")]
    if grpo:
        out += ["", "| GRPO run | steps | episodes (passed) | learning rate | mean reward per step | groups with zero reward variance | time (s) | s/step |",
                "|---|---|---|---|---|---|---|---|"]
        for label, g in grpo:
            zero = ", ".join(f"{z:.2f}" for z in g["zero_variance_share"] or [])
            out.append(f"| {label} | {g['steps']} | {g['episodes']} ({g['episodes_passed']}) | {g['learning_rate']} | "
                       f"{', '.join(str(r) for r in g['mean_reward_per_step'])} | {zero} | {g['train_time_s']:.0f} | "
                       f"{g['seconds_per_step']:.0f} |")
    if report.get("unfinished_models"):
        out += ["", f"Not finished when this report was written: {', '.join(report['unfinished_models'])}."]
    trained = [m["training"] for m in report["models"].values() if m["kind"] == "sft" and m["training"]]
    if trained:  # what the next point would cost, from what this run measured
        largest = max(trained, key=lambda t: t["rows"])
        per_row = largest["tokens_per_epoch"] / max(1, largest["rows"])
        rate = largest["tokens_per_s"] or 0
        if rate:
            out += ["", f"Cost of the next point, from the largest one: {per_row:.0f} tokens per episode row, {rate} trained "
                    f"tokens/s; one epoch on 512 tasks = {512 * per_row / rate / 60:.0f} min of SFT, on 2,048 = "
                    f"{2048 * per_row / rate / 60:.0f} min (plus one evaluation of every held-out set per model)."]
    total = sum(s["seconds"] for s in report["stages"])
    out += ["", f"Stages: {len(report['stages'])}, {total / 60:.1f} minutes of commands in all (WORK/curve.json lists each)."]
    if report.get("leaks_left_out"):
        out.append(f"Training tasks left out because their program matches a held-out program: {report['leaks_left_out']['count']}.")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    stages = Stages(args.work / "curve.json")
    suites = build_suites(args, stages)
    points = sorted({int(p) for p in args.points.split(",")})
    largest = max(points)
    teacher = args.work / "teacher"
    models: dict[str, dict[str, Any]] = {"base": {"tasks": 0, "kind": "base", "adapter": None}}
    evaluate(args, stages, "base", None, suites)
    if largest:
        big = point_suite(suites["train"], largest, args.seed, args.work / "points" / str(largest) / "train_suite.json")
        stages.run("teacher rollouts", [
            "prefs", "--suite", str(big), "--rollouts", str(args.rollouts), "--trace-dir", str(teacher),
            "--out", str(teacher / "_prefs.jsonl"), "--llm-provider", "oracle", "--oracle-mistake-rate", "0.3",
            "--branch-pairs" if args.rollouts >= 2 else "--no-branch-pairs", "--toolset", "edit", "--test-policy", "on_write",
            "--num-workers", str(args.num_workers), "--seed", str(args.seed)], teacher / "_prefs.stats.json")
    for n in (p for p in points if p):
        suite = point_suite(suites["train"], n, args.seed, args.work / "points" / str(n) / "train_suite.json")
        adapter = train_point(args, stages, n, suite, teacher)
        models[f"sft_{n}"] = {"tasks": n, "kind": "sft", "adapter": adapter}
        evaluate(args, stages, f"sft_{n}", adapter, suites)
    pairs_dir = args.work / "teacher_pairs"
    if largest and args.dpo:
        few = point_suite(suites["train"], min(args.pairs_tasks, largest), args.seed,
                          args.work / "points" / f"pairs_{min(args.pairs_tasks, largest)}" / "train_suite.json")
        stages.run("teacher pairs for DPO", [
            "prefs", "--suite", str(few), "--rollouts", "2", "--trace-dir", str(pairs_dir), "--out", str(pairs_dir / "_prefs.jsonl"),
            "--llm-provider", "oracle", "--oracle-mistake-rate", "0.3", "--branch-pairs", "--toolset", "edit",
            "--test-policy", "on_write", "--num-workers", str(args.num_workers), "--seed", str(args.seed)],
            pairs_dir / "_prefs.stats.json")
    if largest and args.dpo and (pairs_dir / "_prefs.jsonl").is_file():
        sft_adapter = args.work / "points" / str(largest) / "adapter"
        dpo = args.work / "points" / str(largest) / "adapter_dpo"
        stages.run("DPO at the largest point", [
            "finetune", "local", "dpo", "--dataset", str(pairs_dir / "_prefs.jsonl"), "--model", args.model, "--from-adapter",
            str(sft_adapter), "--output", str(dpo), "--epochs", str(args.dpo_epochs), "--learning-rate", "5e-5",
            "--max-seq-len", str(args.max_seq_len), "--batch-size", "1", "--grad-accum", str(args.grad_accum),
            "--gradient-checkpointing", "--seed", str(args.seed)], dpo / "adapter_config.json")
        models[f"sft_dpo_{largest}"] = {"tasks": largest, "kind": "dpo", "adapter": dpo}
        evaluate(args, stages, f"sft_dpo_{largest}", dpo, suites)
    if largest and args.grpo_steps:
        sft_adapter = args.work / "points" / str(largest) / "adapter"
        grpo = args.work / "points" / str(largest) / "grpo"
        stages.run("GRPO at the largest point", [
            "grpo", "--output", str(grpo), "--suite", str(args.work / "points" / str(largest) / "train_suite.json"),
            "--model", args.model, "--from-adapter", str(sft_adapter), "--max-steps", str(args.grpo_steps),
            "--num-generations", "4", "--prompts-per-step", "1", "--toolset", "edit", "--test-policy", "on_write",
            "--max-iters", str(args.max_iters), "--max-tokens", str(args.max_tokens), "--seed", str(args.seed)],
            grpo / "adapter_config.json")
        models[f"sft_grpo_{largest}"] = {"tasks": largest, "kind": "grpo", "adapter": None, "grpo": grpo}
        evaluate(args, stages, f"sft_grpo_{largest}", grpo, suites)
    write_report(args, suites, models, stages)


def report_only(argv: list[str] | None = None) -> None:
    """The report of whatever has finished so far (the stages keep running elsewhere, or were stopped)."""
    args = parse_args(argv)
    stages = Stages(args.work / "curve.json")
    suites = {"train": args.work / "synth" / "train_clean_suite.json", "synth_heldout": args.work / "synth" / "heldout_suite.json"}
    if (args.work / "quixbugs" / "quixbugs_test_suite.json").is_file():
        suites["quixbugs_test"] = args.work / "quixbugs" / "quixbugs_test_suite.json"
    if "bundled" in args.sources:
        suites["bundled_test"] = SUITES / "bundled_test_suite.json"
    points = sorted({int(p) for p in args.points.split(",") if int(p)})
    models: dict[str, dict[str, Any]] = {"base": {"tasks": 0, "kind": "base", "adapter": None}}
    for n in points:
        models[f"sft_{n}"] = {"tasks": n, "kind": "sft", "adapter": args.work / "points" / str(n) / "adapter"}
    if points and args.dpo:
        models[f"sft_dpo_{points[-1]}"] = {"tasks": points[-1], "kind": "dpo", "adapter": args.work / "points" / str(points[-1]) / "adapter_dpo"}
    if points and args.grpo_steps:
        models[f"sft_grpo_{points[-1]}"] = {"tasks": points[-1], "kind": "grpo", "adapter": None,
                                            "grpo": args.work / "points" / str(points[-1]) / "grpo"}
    write_report(args, suites, models, stages)


if __name__ == "__main__" and "--report-only" in sys.argv:
    sys.argv.remove("--report-only")
    report_only()
elif __name__ == "__main__":
    main()
