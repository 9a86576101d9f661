"""`repo-agent pipeline`: the whole loop in one command, offline, on the embedded model.

(suite synth of training and held-out tasks -> suite sample ->) teacher rollouts (and preference pairs)
on the train side -> sft-extract -> finetune local sft (-> finetune local dpo) -> eval base and
fine-tuned on the held-out suite(s) -> report compare. Every stage is the same command a user can run
alone, with the same artefacts; the pipeline prints each command before running it, and every stage
resumes, so re-running the pipeline after an interruption continues where it stopped.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.rule import Rule

console = Console(stderr=True)
REPO_SUITES = Path("eval/suites")


class StageRecord:
    """pipeline.json, rewritten atomically after every stage (a failed one too), so a kill at any moment
    leaves the record of every stage that ended, never half a file."""

    def __init__(self, path: Path):
        self.path = path
        self.stages: list[dict] = []

    def add(self, stage: dict) -> None:
        self.stages.append(stage)
        self.save(finished=False)

    def note(self, what: str, details: object = None) -> None:
        self.add({"stage": what, "note": details})

    def save(self, finished: bool) -> None:
        from ..atomic import atomic_write_json

        atomic_write_json(self.path, {"stages": self.stages, "finished": finished})


def _stage(title: str, args: list[str], record: StageRecord) -> None:
    from . import build_app

    app = build_app()

    console.print(Rule(f"[bold]{title}"))
    console.print(f"$ repo-agent {shlex.join(args)}", style="cyan", soft_wrap=True)
    started = time.monotonic()
    entry = {"stage": title, "command": ["repo-agent", *args]}
    try:
        code = app(args, standalone_mode=False, prog_name="repo-agent")
    except BaseException as exc:  # a usage error, a crash or Ctrl-C inside the stage: record it, then let it propagate
        record.add({**entry, "seconds": round(time.monotonic() - started, 1),
                    "exit_code": getattr(exc, "exit_code", None), "error": f"{type(exc).__name__}: {exc}"})
        raise
    elapsed = time.monotonic() - started
    record.add({**entry, "seconds": round(elapsed, 1), "exit_code": code or 0})
    if code:
        console.print(f"[red]stage '{title}' failed with exit code {code}; fix it and re-run: finished stages are kept.")
        raise typer.Exit(code)
    console.print(f"[dim]{title}: {elapsed:.0f}s")


def pipeline(
    out: Annotated[Path, typer.Option("--out", help="Run folder for every artefact of the pipeline.")] = Path("runs/pipeline"),
    model: Annotated[str, typer.Option("--model", help="Student model: 'smollm2' (embedded), an HF folder or a GGUF path.")] = "smollm2",
    train_suite: Annotated[Path, typer.Option("--train-suite", help="Tasks the teacher solves (training side of the split).")] = REPO_SUITES / "bundled_train_suite.json",
    test_suite: Annotated[Path, typer.Option("--test-suite", help="Held-out tasks for evaluation (never trained on).")] = REPO_SUITES / "bundled_test_suite.json",
    synth_from: Annotated[Optional[list[str]], typer.Option("--synth-from", help="Synthesize the tasks instead (`suite synth`): training tasks from these sources' train-side programs, held-out tasks from their test-side programs; replaces --train-suite and --test-suite. A QuixBugs-layout suite file or `humaneval`; repeatable.")] = None,
    synth_per_program: Annotated[int, typer.Option("--synth-per-program", min=1, help="With --synth-from: training tasks per train-side program at most.")] = 2,
    synth_heldout_per_program: Annotated[int, typer.Option("--synth-heldout-per-program", min=1, help="With --synth-from: held-out tasks per test-side program at most.")] = 2,
    train_tasks: Annotated[int, typer.Option("--train-tasks", min=0, help="Train on this many tasks of the training suite (`suite sample`, seeded; tasks leaking a held-out program are left out first); 0: all.")] = 0,
    also_test: Annotated[Optional[list[Path]], typer.Option("--also-test", help="Another held-out suite to evaluate base and students on, compared on its own (e.g. the bundled test side). Repeatable.", exists=True, dir_okay=False)] = None,
    teacher_provider: Annotated[str, typer.Option("--teacher-provider", help="oracle (offline, knows the reference fix), openai, together, local.")] = "oracle",
    teacher_model: Annotated[str, typer.Option("--teacher-model", help="Teacher model id (not used by the oracle).")] = "",
    teacher_base_url: Annotated[str, typer.Option("--teacher-base-url", help="OpenAI-compatible endpoint of the teacher.")] = "",
    teacher_temperature: Annotated[float, typer.Option("--teacher-temperature", min=0.0, help="Sampling temperature of an LLM teacher (rollouts of a task must differ to make pairs; the oracle varies by seed).")] = 0.7,
    mistake_rate: Annotated[float, typer.Option("--teacher-mistake-rate", min=0.0, max=1.0, help="oracle teacher: share of rollouts that first write a proven-wrong fix, then recover (recoveries in the SFT data).")] = 0.3,
    branch_pairs: Annotated[bool, typer.Option("--branch-pairs/--no-branch-pairs", help="Teacher rollouts in pairs that fork at the first write, so preference pairs have an outcome gap.")] = True,
    toolset: Annotated[str, typer.Option("--toolset", help="files | edit | bash: the tools of the teacher's rollouts and of the student's evaluation.")] = "files",
    test_policy: Annotated[str, typer.Option("--test-policy", help="never | on_write | final, for the teacher AND the student's evaluation (a student trained on [TESTS ...] lines must see them).")] = "on_write",
    rollouts: Annotated[int, typer.Option("--rollouts", min=1, help="Teacher rollouts per training task (1: no preference pairs).")] = 2,
    sft_rows: Annotated[str, typer.Option("--sft-rows", help="episode: every trained step of a rollout in one row (the same loss per turn as step rows at a fraction of the tokens) | step: one row per trained step.")] = "episode",
    sft_epochs: Annotated[float, typer.Option("--sft-epochs", min=0.0, help="SFT budget in epochs over the trained turns (the same supervision whichever --sft-rows carries them).")] = 1.0,
    max_steps: Annotated[int, typer.Option("--max-steps", help="LoRA optimizer steps of SFT; -1 (default): --sft-epochs decides.")] = -1,
    learning_rate: Annotated[float, typer.Option("--learning-rate")] = 5e-4,
    lora_r: Annotated[int, typer.Option("--lora-r")] = 16,
    max_seq_len: Annotated[int, typer.Option("--max-seq-len", help="Longer SFT examples are dropped (counted), never truncated.")] = 2048,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Examples per optimizer micro-step; the effective batch is this x --grad-accum. 1 keeps a 2k-token CPU step under ~8 GB.")] = 1,
    grad_accum: Annotated[int, typer.Option("--grad-accum", min=1)] = 2,
    dpo: Annotated[bool, typer.Option("--dpo", help="After SFT, train DPO on the teacher's preference pairs from the SFT adapter, and evaluate it too.")] = False,
    dpo_max_steps: Annotated[int, typer.Option("--dpo-max-steps", help="DPO optimizer steps (-1: one full epoch).")] = 20,
    dpo_learning_rate: Annotated[float, typer.Option("--dpo-learning-rate")] = 5e-5,
    eval_rollouts: Annotated[int, typer.Option("--eval-rollouts", min=1, help="Evaluation episodes per held-out task.")] = 1,
    eval_max_iters: Annotated[str, typer.Option("--eval-max-iters", help="Step budget of evaluation episodes; auto = the longest passing teacher rollout + 2 (at least 5).")] = "auto",
    eval_max_tokens: Annotated[str, typer.Option("--eval-max-tokens", help="Max new tokens per student reply; auto = enough for the largest whole-file write of the held-out tasks in the student's tokens, capped by its context.")] = "auto",
    eval_temperature: Annotated[float, typer.Option("--eval-temperature", min=0.0, help="0 = greedy (deterministic); use > 0 with --eval-rollouts > 1.")] = 0.0,
    num_workers: Annotated[int, typer.Option("--num-workers", min=1)] = 4,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Teacher rollouts -> step SFT data (and pairs) -> LoRA SFT of the student (-> DPO) -> eval base vs
    fine-tuned on the held-out side -> comparisons. Every stage is an ordinary command and resumes."""
    from ..agent import TEST_POLICIES

    if test_policy not in TEST_POLICIES:
        raise typer.BadParameter(f"--test-policy must be one of {', '.join(TEST_POLICIES)}")
    if teacher_provider != "oracle" and not teacher_model:
        raise typer.BadParameter(f"--teacher-provider {teacher_provider} needs --teacher-model")
    out.mkdir(parents=True, exist_ok=True)
    log = StageRecord(out / "pipeline.json")
    extra_tests = list(also_test or [])
    if synth_from:
        train_suite, test_suite = _synthesize(out, synth_from, synth_per_program, synth_heldout_per_program, num_workers, seed, log)
    if train_tasks or synth_from:
        sample = out / "synth" / f"train_{train_tasks or 'all'}_suite.json"
        _stage("training sample without leaks", [
            "suite", "sample", "--suite", str(train_suite), "--count", str(train_tasks), "--seed", str(seed),
            *[arg for s in [test_suite, *extra_tests] for arg in ("--against", str(s))], "--out", str(sample)], log)
        train_suite = sample
    teacher = ["--llm-provider", teacher_provider, "--temperature", str(teacher_temperature), "--test-policy", test_policy,
               "--toolset", toolset]
    teacher += ["--model", teacher_model] if teacher_model else []
    teacher += ["--base-url", teacher_base_url] if teacher_base_url else []
    if teacher_provider == "oracle":
        teacher += ["--oracle-mistake-rate", str(mistake_rate)]
    teacher += ["--branch-pairs" if branch_pairs and rollouts >= 2 else "--no-branch-pairs"]
    pairs_file = out / "teacher" / "_prefs.jsonl"
    sft_file = out / "sft" / "train_sft.jsonl"
    adapter, adapter_dpo = out / "adapter", out / "adapter_dpo"
    _stage("teacher rollouts + preference pairs", [
        "prefs", "--suite", str(train_suite), "--rollouts", str(rollouts), "--trace-dir", str(out / "teacher"),
        "--out", str(pairs_file), *teacher, "--split-suite", str(test_suite), "--num-workers", str(num_workers),
        "--seed", str(seed)], log)
    if sft_rows not in ("episode", "step"):
        raise typer.BadParameter(f"--sft-rows must be episode or step, got {sft_rows!r}")
    _stage(f"SFT data ({sft_rows} rows)", [
        "sft-extract", "--trace-dir", str(out / "teacher"), "--output", str(sft_file), "--rows", sft_rows,
        "--split-suite", str(test_suite), "--max-tokens", str(max_seq_len), "--tokenizer", model], log)
    log.note("SFT budget", {"rows": sft_rows, "epochs": sft_epochs, "max_steps": max_steps,
                            "unit": "epochs over the trained turns" if max_steps < 0 else "optimizer steps (given)"})
    _stage("LoRA SFT of the student", [
        "finetune", "local", "sft", "--dataset", str(sft_file), "--model", model, "--output", str(adapter),
        "--epochs", str(sft_epochs), "--max-steps", str(max_steps), "--learning-rate", str(learning_rate), "--lora-r", str(lora_r),
        "--max-seq-len", str(max_seq_len), "--batch-size", str(batch_size), "--grad-accum", str(grad_accum),
        "--seed", str(seed)], log)
    students = {"base": None, "sft": adapter}
    if dpo and pairs_file.is_file():
        _stage("DPO of the SFT student on the teacher's pairs", [
            "finetune", "local", "dpo", "--dataset", str(pairs_file), "--model", model, "--from-adapter", str(adapter),
            "--output", str(adapter_dpo), "--max-steps", str(dpo_max_steps), "--learning-rate", str(dpo_learning_rate),
            "--max-seq-len", str(max_seq_len), "--batch-size", "1", "--grad-accum", str(batch_size * grad_accum),
            "--gradient-checkpointing", "--seed", str(seed)], log)
        students["sft_dpo"] = adapter_dpo
    elif dpo:
        console.print(f"[yellow]warning:[/yellow] --dpo: the teacher made no preference pairs ({pairs_file} absent), "
                      "so there is no DPO stage (more --rollouts, --branch-pairs, or a teacher temperature > 0 make pairs)")
        log.note("DPO skipped: no preference pairs")
    iters, tokens = _eval_budgets(out, test_suite, model, eval_max_iters, eval_max_tokens, log, toolset)
    student = ["--llm-provider", "local", "--model", model, "--max-iters", str(iters), "--max-tokens", str(tokens),
               "--rollouts", str(eval_rollouts), "--temperature", str(eval_temperature), "--test-policy", test_policy,
               "--toolset", toolset,
               "--num-workers", str(num_workers), "--seed", str(seed)]
    # every held-out suite gets its own runs and comparisons: "" for --test-suite, "_<name>" for each --also-test
    held_out = {"": test_suite, **{f"_{_suite_name(s)}": s for s in extra_tests}}
    for name, folder in students.items():
        for tag, suite in held_out.items():
            _stage(f"eval: {name} student{' on ' + tag[1:] if tag else ''}", [
                "eval", "--suite", str(suite), "--trace-dir", str(out / f"eval_{name}{tag}"), *student,
                *(["--adapter", str(folder)] if folder else [])], log)
    pairs = [("base", "sft", "compare")] + ([("sft", "sft_dpo", "compare_dpo"), ("base", "sft_dpo", "compare_base_dpo")]
                                            if "sft_dpo" in students else [])
    comparisons = [(before + tag, after + tag, folder + tag) for tag in held_out for before, after, folder in pairs]
    for before, after, folder in comparisons:
        _stage(f"compare {before} vs {after}", ["report", "compare", str(out / f"eval_{before}"), str(out / f"eval_{after}"),
                                                "--out", str(out / folder)], log)
    log.save(finished=True)
    total = sum(s.get("seconds") or 0 for s in log.stages)
    console.print(Rule("[bold]done"))
    for _, _, folder in comparisons:
        table = out / folder / "comparison.md"
        if table.is_file():
            console.print(Rule(f"[bold]{folder}"))
            console.print(table.read_text(encoding="utf-8").split("\n## Per task")[0].rstrip(), markup=False, soft_wrap=True)
    console.print(f"pipeline finished in {total / 60:.1f} min; reports and plots (comparison.md, metrics.png, outcomes.png): "
                  + ", ".join(str(out / folder) for _, _, folder in comparisons))


def _suite_name(path: Path) -> str:
    return path.stem.removesuffix("_suite")


def _synthesize(out: Path, sources: list[str], per_program: int, heldout_per_program: int, num_workers: int, seed: int,
                log: StageRecord) -> tuple[Path, Path]:
    """Training tasks from the sources' train-side programs, held-out tasks from their test-side programs."""
    froms = [arg for source in sources for arg in ("--from", source)]
    common = ["--seed", str(seed), "--num-workers", str(min(num_workers, 2))]
    train, held = out / "synth" / "train_suite.json", out / "synth" / "heldout_suite.json"
    _stage("synthesized training tasks", ["suite", "synth", *froms, "--out", str(train), "--per-program", str(per_program),
                                          *common], log)
    _stage("synthesized held-out tasks", ["suite", "synth", *froms, "--held-out", "--out", str(held), "--per-program",
                                          str(heldout_per_program), *common], log)
    return train, held


def _eval_budgets(out: Path, test_suite: Path, model: str, iters_opt: str, tokens_opt: str, log: StageRecord,
                  toolset: str = "files") -> tuple[int, int]:
    """Resolve `auto` budgets (and check explicit ones), say how, and record them in pipeline.json."""
    from ..evaluate.budget import reply_budget, step_budget, tokenizer_counter
    from ..suites.task import SuiteError, load_suite

    notes: dict[str, object] = {}
    if iters_opt == "auto":
        iters, why = step_budget(out / "teacher" / "results.jsonl")
    else:
        iters, why = _positive(iters_opt, "--eval-max-iters"), "given"
    notes["max_iters"] = {"value": iters, "why": why}
    try:
        suite = load_suite(test_suite)
    except SuiteError as exc:
        raise typer.BadParameter(str(exc)) from None
    count, context = tokenizer_counter(model)
    budget = reply_budget(suite, count, context, toolset)
    fix = "replace_in_file of a minimal fix" if toolset == "edit" else "whole-file write"
    if tokens_opt == "auto":
        tokens, why = budget.max_tokens, (f"the largest {fix} ({budget.largest_task}) takes {budget.needed} "
                                          f"tokens of {model}" + (f", capped at half its context {context}" if budget.needed > budget.max_tokens else ""))
    else:
        tokens, why = _positive(tokens_opt, "--eval-max-tokens"), "given"
        if tokens < budget.needed:
            console.print(f"[yellow]warning:[/yellow] --eval-max-tokens {tokens} cannot hold the {fix} of "
                          f"{budget.largest_task} ({budget.needed} tokens): a student is cut off mid-write there")
    if budget.too_large:
        console.print(f"[yellow]warning:[/yellow] {len(budget.too_large)} held-out task(s) have files too large to rewrite "
                      f"whole within {model}'s context: {', '.join(budget.too_large[:5])}")
    notes["max_tokens"] = {"value": tokens, "why": why, "too_large": budget.too_large}
    console.print(f"evaluation budget: {iters} steps ({notes['max_iters']['why']}), {tokens} new tokens per reply ({why})")
    log.note("evaluation budget", notes)
    return iters, tokens


def _positive(text: str, flag: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise typer.BadParameter(f"{flag} takes a positive number or auto, got {text!r}") from None
    if value < 1:
        raise typer.BadParameter(f"{flag} takes a positive number or auto, got {text!r}")
    return value


def register(app: typer.Typer) -> None:
    app.command("pipeline")(pipeline)
