"""`repo-agent sft-extract`, `pairs-extract`, `prefs` and `data check`: traces in, validated JSONL out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape

from .. import options as O
from .common import fail

data_app = typer.Typer(help="Check training data files before they are uploaded or trained on.", no_args_is_help=True)
console = Console(stderr=True, soft_wrap=True)  # error lines stay whole

TraceDirOpt = Annotated[Path, typer.Option("--trace-dir", help="Folder of traces (searched recursively: traces/*.json, *.trace.json).", exists=True, file_okay=False)]
OutputOpt = Annotated[Path, typer.Option("--output", "--out", "-o", help="JSONL file to write (replaced atomically, only after it passes `data check`).", dir_okay=False)]
FormatOpt = Annotated[str, typer.Option("--format", help="json: Together chat rows, assistant content is the JSON tool call | native: Together rows with OpenAI tool_calls, tool role and a tools field | trl: TRL prompt/completion (SFT) or prompt/chosen/rejected (pairs), JSON protocol.")]
SplitSuiteOpt = Annotated[Optional[Path], typer.Option("--split-suite", help="Held-out (test) suite: refuse, exit 3, if any trace comes from one of its tasks (on top of the split rule).", exists=True, dir_okay=False)]
AllowHeldOutOpt = Annotated[bool, typer.Option("--allow-held-out", help="Do not refuse traces of tasks the project's split rule puts on the test side (md5 of the task id, 80% train; a trace's recorded split wins). Only for tasks you will never evaluate on.")]
SourcesOpt = Annotated[str, typer.Option("--sources", help="Comma-separated pair sources: divergence, validity, loops.")]
AllowSuspiciousOpt = Annotated[bool, typer.Option("--allow-suspicious", help="Keep rollouts that tampered with their verdict (a protected write, an integrity problem) or whose change holds a suspicious construct (new comparison dunders, imports of pytest or gc, frame access, ...: `suspicious` in the trace). By default none of their steps is trained on, and none wins a pair.")]
MinGapOpt = Annotated[str, typer.Option("--min-outcome-gap", help="The weakest difference a pair's two sides may have: step (an outcome of that step differs: tests after it pass/fail, parse error, refused write, tool error, loop) | rollout (also: only the two rollouts' final verdicts differ) | none (also: both rollouts ended alike and one was shorter). Dropped pairs are counted as no_outcome_gap.")]




def _check_format(fmt: str) -> None:
    from ..data.export import FORMATS

    if fmt not in FORMATS:
        raise typer.BadParameter(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")


def _held_out(split_suite: Path | None, allow_held_out: bool):
    from ..data.sft import HeldOutGuard
    from ..suites.task import SuiteError, load_suite

    explicit: frozenset[str] = frozenset()
    if split_suite is not None:
        try:
            explicit = frozenset(load_suite(split_suite).task_ids)
        except SuiteError as exc:
            raise typer.BadParameter(str(exc)) from None
    return HeldOutGuard(explicit=explicit, by_rule=not allow_held_out)


def _parse_sources(text: str) -> tuple[str, ...]:
    from ..data.pairs import SOURCES

    chosen = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in chosen if s not in SOURCES]
    if unknown or not chosen:
        raise typer.BadParameter(f"--sources takes a comma-separated subset of {', '.join(SOURCES)}, got {text!r}")
    return chosen


class _TraceProgress:
    """A rich progress bar over the trace files of a folder (transient: the stats table replaces it)."""

    def __init__(self, trace_dir: Path, label: str):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        total = sum(1 for p in Path(trace_dir).rglob("*.json")
                    if not p.name.startswith(".") and (p.parent.name == "traces" or p.name.endswith(".trace.json")))
        self.progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 console=console, transient=True)
        self.task = self.progress.add_task(label, total=total or None)

    def __enter__(self) -> Callable[[], None]:
        self.progress.start()
        return lambda: self.progress.advance(self.task)

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()


def _finish(stats, writers, kind: str, stats_file: Path, empty_ok: bool = False) -> None:
    """Validate the temp file, then commit every writer (data first) or discard them all. With
    `empty_ok`, nothing to write is a warning (the stats file still says why), not a failure."""
    from ..data.check import check_file

    data = writers[0]
    if data.count == 0:
        for w in writers:
            w.discard()
        data.path.unlink(missing_ok=True)  # an older file must not pass for this run's output
        console.print(stats.table())
        if empty_ok:
            stats.write(stats_file)
            console.print(f"[yellow]warning:[/yellow] no pairs: nothing written to {data.path} (see {stats_file}); "
                          "pairs need two rollouts of a task that reach one state and then differ in an outcome")
            return
        fail("no examples survived the filters: nothing written (see the removed rows above)", 1)
    data.close()
    # Our rules are a superset of the SDK's local check (JSON-object lines, size), which `data check`
    # and `finetune together` still run; skipping it here saves a third pass over the file.
    report = check_file(data.tmp, kind, use_sdk=False)
    stats.check = {**report.to_dict(), "errors": report.errors[:10]}
    if not report.ok:
        for w in writers:
            w.discard()
        for error in report.errors[:20]:
            console.print(f"  {error}")
        fail(f"the output failed `data check` ({report.error_count} problems; sdk: {report.sdk}); nothing written", 1)
    for w in writers:
        w.commit()
    stats.write(stats_file)
    Console().print(stats.table())
    console.print(f"wrote {data.path} ({stats.examples} rows) and {stats_file}")


def sft_extract(
    trace_dir: TraceDirOpt,
    output: OutputOpt,
    fmt: FormatOpt = "json",
    require_success: Annotated[bool, typer.Option("--require-success/--no-require-success", help="Keep only rollouts whose final verdict passed.")] = True,
    require_valid_tool_ok: Annotated[bool, typer.Option("--require-valid-tool-ok/--no-require-valid-tool-ok", help="Keep only steps whose tool ran without error (unparseable steps are never targets either way).")] = True,
    skip_loops: Annotated[bool, typer.Option("--skip-loops/--keep-loops", help="Drop steps the loop detector flagged (repeating an action with the same result).")] = True,
    split_suite: SplitSuiteOpt = None,
    allow_held_out: AllowHeldOutOpt = False,
    max_per_task: Annotated[Optional[int], typer.Option("--max-per-task", min=1, help="At most this many examples per task (first in trace order).")] = None,
    max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", min=1, help="Drop (never truncate) examples longer than this many tokens of --tokenizer.")] = None,
    tokenizer: Annotated[Optional[str], typer.Option("--tokenizer", help="Tokenizer for --max-tokens and token percentiles: a model folder, a cached Hub id, or 'smollm2'.")] = None,
    mask_audit: Annotated[bool, typer.Option("--mask-audit/--no-mask-audit", help="After writing, audit every row's loss mask as TRL's SFTTrainer builds it with --tokenizer's chat template (`repo-agent mask-audit --dataset`): exit 1 on a mismatch, an HTML report beside OUTPUT.")] = False,
    allow_suspicious: AllowSuspiciousOpt = False,
    rows: Annotated[str, typer.Option("--rows", help="step: one row per trained step (the conversation before it, then its action) | episode: every trained step of a rollout in one row, each assistant turn weighted 1 (trained) or 0 (context), the same loss per turn at a fraction of the tokens (needs --format json or native and a prefix-preserving chat template).")] = "step",
) -> None:
    """One training example per agent step: the exact conversation the model saw, then its action.

    Writes OUTPUT, OUTPUT's .meta.jsonl sidecar (task, rollout, step and trace of each row, line by line)
    and .stats.json (what was read, kept and removed, and why).

    Example: repo-agent sft-extract --trace-dir runs/teacher --output runs/sft.jsonl --no-require-success
    """
    from ..data.export import file_kind
    from ..data.sft import SftOptions, SplitLeakError, extract_sft, token_counter_for
    from ..data.stats import meta_path, stats_path

    _check_format(fmt)
    if max_tokens is not None and not tokenizer:
        raise typer.BadParameter("--max-tokens needs --tokenizer (the length limit is in that tokenizer's tokens)")
    if mask_audit and not tokenizer:
        raise typer.BadParameter("--mask-audit needs --tokenizer (the mask depends on that model's chat template)")
    if rows not in ("step", "episode"):
        raise typer.BadParameter(f"--rows must be step or episode, got {rows!r}")
    if rows == "episode" and fmt == "trl":
        raise typer.BadParameter("--rows episode needs per-message weights: --format json or native")
    options = SftOptions(fmt=fmt, require_success=require_success, require_valid_tool_ok=require_valid_tool_ok,
                         skip_loops=skip_loops, max_per_task=max_per_task, max_tokens=max_tokens,
                         held_out=_held_out(split_suite, allow_held_out), allow_suspicious=allow_suspicious, rows=rows)
    counter = None
    if tokenizer:
        try:
            counter = token_counter_for(tokenizer)
        except (ValueError, OSError) as exc:
            fail(f"cannot load tokenizer {tokenizer!r}: {exc}")
    try:
        with _TraceProgress(trace_dir, "sft-extract") as advance:
            stats, data, meta = extract_sft(trace_dir, output, meta_path(output), options, token_counter=counter,
                                            on_trace=advance)
    except SplitLeakError as exc:
        fail(str(exc), 3)
    if rows == "episode" and tokenizer:
        _refuse_non_prefix_template(data, meta, tokenizer)
    _finish(stats, [data, meta], file_kind(fmt, pairs=False), stats_path(output))
    if mask_audit and tokenizer:
        _audit_masks(output, tokenizer, max_tokens)


def _refuse_non_prefix_template(data: Any, meta: Any, tokenizer_name: str) -> None:
    """Episode rows are the step rows' equivalent only under a prefix-preserving chat template: check every
    written row with the labels training will build; refuse (writing nothing) otherwise."""
    from ..data.sft import tokenizer_named
    from ..train.common import read_jsonl
    from ..train.episode_tokens import weighted_sequence

    data.close()
    tokenizer = tokenizer_named(tokenizer_name)
    for number, row in enumerate(read_jsonl(data.tmp), 1):
        problems = weighted_sequence(tokenizer, row["messages"], row.get("tools")).problems
        if problems:
            data.discard()
            meta.discard()
            fail(f"refused: {tokenizer_name}'s chat template is not prefix-preserving, so an episode row would not train "
                 f"each turn as its step row does (row {number}: {problems[0]}); use --rows step", 1)


def _audit_masks(output: Path, tokenizer_name: str, max_tokens: int | None) -> None:
    from ..hf_loading import load_tokenizer
    from ..train.mask_audit import audit_sft_file, write_html

    report = audit_sft_file(load_tokenizer(tokenizer_name), output, max_tokens)
    page = write_html(report, output.with_suffix(".mask_audit.html"), title=f"mask audit of {output.name} ({tokenizer_name})")
    console.print(f"{report.summary_line()} ({page})", soft_wrap=True, highlight=False)
    if not report.ok:
        fail(["the loss masks of the written rows differ from the format:", *report.failures()], code=1)


def _check_gap(min_gap: str) -> None:
    from ..data.pairs import GAP_LEVELS

    if min_gap not in GAP_LEVELS:
        raise typer.BadParameter(f"--min-outcome-gap must be one of {', '.join(GAP_LEVELS)}, got {min_gap!r}")


def _mine(trace_dir: Path, output: Path, fmt: str, sources: tuple[str, ...], held_out: Any,
          min_gap: str = "step", empty_ok: bool = False, allow_suspicious: bool = False) -> None:
    from ..data.export import file_kind
    from ..data.pairs import extract_pairs
    from ..data.sft import SplitLeakError
    from ..data.stats import meta_path, stats_path

    try:
        with _TraceProgress(trace_dir, "pairs") as advance:
            stats, data, meta = extract_pairs(trace_dir, output, meta_path(output), fmt, sources,
                                              held_out=held_out, on_trace=advance, min_gap=min_gap,
                                              allow_suspicious=allow_suspicious)
    except SplitLeakError as exc:
        fail(str(exc), 3)
    _finish(stats, [data, meta], file_kind(fmt, pairs=True), stats_path(output), empty_ok=empty_ok)


def pairs_extract(
    trace_dir: TraceDirOpt,
    output: OutputOpt,
    fmt: FormatOpt = "json",
    sources: SourcesOpt = "divergence,validity,loops",
    split_suite: SplitSuiteOpt = None,
    allow_held_out: AllowHeldOutOpt = False,
    min_gap: MinGapOpt = "step",
    allow_suspicious: AllowSuspiciousOpt = False,
) -> None:
    """Mine step-level preference pairs from traces on disk (two next actions from the same state).

    Writes OUT (Together preference rows, or TRL prompt/chosen/rejected with --format trl), OUT's
    .meta.jsonl sidecar (provenance, why one side won and the outcome that differs, line by line) and
    .stats.json.

    Example: repo-agent pairs-extract --trace-dir runs/teacher --out runs/prefs.jsonl --sources validity,loops
    """
    _check_format(fmt)
    _check_gap(min_gap)
    _mine(trace_dir, output, fmt, _parse_sources(sources), _held_out(split_suite, allow_held_out), min_gap,
          allow_suspicious=allow_suspicious)


@O.with_agent_flags
def prefs(
    suite: O.SuiteOpt,
    trace_dir: Annotated[Path, typer.Option("--trace-dir", help="Run directory for the rollouts; re-running the same command resumes it.")],
    output: OutputOpt,
    rollouts: Annotated[int, typer.Option("--rollouts", min=1, help="Episodes per task (pairs need two or more; with one, the rollouts are made and no pair is mined).")] = 4,
    num_workers: Annotated[int, typer.Option("--num-workers", min=1, help="Rollouts in parallel.")] = 4,
    redo: Annotated[bool, typer.Option("--redo", help="Delete this run's traces and start over.")] = False,
    fmt: FormatOpt = "json",
    sources: SourcesOpt = "divergence,validity,loops",
    split_suite: SplitSuiteOpt = None,
    allow_held_out: AllowHeldOutOpt = False,
    min_gap: MinGapOpt = "step",
    allow_suspicious: AllowSuspiciousOpt = False,
    shard: O.ShardOpt = None,
    *,
    flags: O.AgentFlags,
) -> None:
    """Run ROLLOUTS episodes per task (resumable), then mine preference pairs from them.

    Pairs need two rollouts that reach the same state and then do things with different outcomes: with
    the oracle teacher use --test-policy on_write --branch-pairs (and --oracle-mistake-rate for
    recoveries in the SFT data).

    Example: repo-agent prefs --suite eval/suites/bundled_train_suite.json --rollouts 4 --trace-dir runs/prefs_run
    --out runs/prefs.jsonl --test-policy on_write --oracle-mistake-rate 0.3 --branch-pairs
    """
    _check_format(fmt)
    _check_gap(min_gap)
    chosen_sources = _parse_sources(sources)
    held_out = _held_out(split_suite, allow_held_out)
    agent, provider, seed = flags.agent, flags.provider, flags.seed
    try:
        from ..rollouts import run_rollouts
    except ImportError:
        fail("the rollout engine (repo_agent.rollouts) is not installed in this checkout yet; run the rollouts "
              "another way and use `repo-agent pairs-extract --trace-dir ...`")
    from ..suites.task import SuiteError, load_suite

    try:
        loaded = load_suite(suite)
    except SuiteError as exc:
        raise typer.BadParameter(str(exc)) from None
    from ..suites.split import suite_side_of

    leaked = sorted(t for t in loaded.task_ids
                    if held_out.reason(t, "test" if held_out.by_rule and suite_side_of(loaded, t) == "test" else "train"))
    if leaked:
        fail(f"{len(leaked)} task(s) of --suite are held out (e.g. {leaked[0]}): teacher rollouts on them would become "
              "training data; use the train side of the split (or --allow-held-out)", 3)
    if provider.provider == "oracle":
        whole = [t.task_id for t in loaded.tasks if not loaded.teacher_fix(t)[1]]
        if whole:
            console.print(f"[yellow]note:[/yellow] {len(whole)} task(s) have no minimal fix (e.g. {whole[0]}): the oracle "
                          "writes their whole reference file there (`suite validate --record-minimal` says why)")
    from .evaluate import apply_shard

    extra: dict = {}
    loaded = apply_shard(loaded, shard, extra)
    try:
        result = run_rollouts(loaded, provider, agent, trace_dir, rollouts=rollouts, num_workers=num_workers, seed=seed,
                              redo=redo, extra_config=extra or None)
    except ValueError as exc:  # a config mismatch on resume, or a provider that cannot be built
        fail(str(exc))
    for problem in result.problems:  # what resuming had to repair (torn lines, a rebuilt config.json)
        console.print(f"[yellow]repaired:[/yellow] {escape(problem)}")
    console.print(f"{result.ran} rollouts run, {result.skipped_existing} already finished"
                  + (f", {result.repaired} repaired" if result.repaired else "") + f" in {result.wall_time_s:.1f}s")
    if rollouts < 2:
        console.print("[yellow]note:[/yellow] one rollout per task: no two rollouts can share a state, so no pairs are mined")
    _mine(trace_dir, output, fmt, chosen_sources, held_out, min_gap, empty_ok=True, allow_suspicious=allow_suspicious)


@data_app.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="SFT or preference JSONL file.", exists=True, dir_okay=False)],
    kind: Annotated[str, typer.Option("--kind", help="auto | sft | sft-trl | pref | pref-trl.")] = "auto",
    sdk: Annotated[bool, typer.Option("--sdk/--no-sdk", help="Also run the together SDK's own file check when it is installed.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Validate a data file against Together's rules and ours; exit 1 if anything is wrong.

    Checks: the shape (jsonschema), roles start with system or user and alternate, the last message is
    the assistant's, weights are 0/1 with 1 only on assistant turns, one assistant message per preference
    side, and every trained assistant message is one valid tool call of our protocol.

    Example: repo-agent data check runs/sft.jsonl
    """
    from ..data.check import KINDS, check_file

    if kind != "auto" and kind not in KINDS:
        raise typer.BadParameter(f"--kind must be auto or one of {', '.join(KINDS)}")
    report = check_file(file, kind, use_sdk=sdk)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=1))
    else:
        from rich.table import Table

        table = Table(title=f"data check {file}", show_header=False)
        table.add_row("verdict", "[green]OK[/green]" if report.ok else "[red]FAILED[/red]")
        table.add_row("kind", report.kind)
        table.add_row("rows", str(report.count))
        table.add_row("problems", str(report.error_count))
        table.add_row("together SDK", "not installed" if report.sdk is None else f"{'passed' if report.sdk['is_check_passed'] else 'FAILED'}: {report.sdk['message']}")
        Console().print(table)
        for error in report.errors:
            Console().print(f"  {error}", markup=False)
    raise typer.Exit(0 if report.ok else 1)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("sft-extract")(sft_extract)
    app.command("pairs-extract")(pairs_extract)
    app.command("prefs")(prefs)
    app.add_typer(data_app, name="data")
