"""`repo-agent finetune together` and `repo-agent finetune status`: hosted LoRA fine-tuning on Together AI.

Thin wiring over repo_agent/train/together.py plus the rich display. The API key is read from the
environment by the SDK client and is never printed, logged or written to the run folder.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from .. import options as O
from .common import fail

console = Console(stderr=True)

DatasetOpt = Annotated[Path, typer.Option("--dataset", help="Training file: SFT chat JSONL (sft-extract) or preference pairs JSONL (pairs-extract) for --training-method dpo.", exists=True, dir_okay=False)]
TogetherModelOpt = Annotated[Optional[str], typer.Option("--model", help="Base model on Together to fine-tune, e.g. meta-llama/Meta-Llama-3.1-8B-Instruct-Reference.")]
SuffixOpt = Annotated[Optional[str], typer.Option("--suffix", help="Up to 40 characters added to the fine-tuned model's name.")]
EpochsOpt = Annotated[int, typer.Option("--epochs", min=1, help="Passes over the dataset.")]
BatchSizeOpt = Annotated[str, typer.Option("--batch-size", help="'max' (largest the model allows) or a number.")]
LearningRateOpt = Annotated[float, typer.Option("--learning-rate", min=0.0, help="Peak learning rate.")]
LoraOpt = Annotated[bool, typer.Option("--lora/--no-lora", help="LoRA adapter (default) or full fine-tuning.")]
LoraROpt = Annotated[Optional[int], typer.Option("--lora-r", min=1, help="LoRA rank (default: the model's default rank on Together).")]
LoraAlphaOpt = Annotated[Optional[float], typer.Option("--lora-alpha", min=0.0, help="LoRA alpha (default: twice the rank).")]
MethodOpt = Annotated[str, typer.Option("--training-method", help="sft (chat rows) or dpo (preference pairs).")]
DpoBetaOpt = Annotated[Optional[float], typer.Option("--dpo-beta", min=0.0, help="DPO beta (dpo only; Together's default when unset).")]
CheckpointOpt = Annotated[Optional[str], typer.Option("--from-checkpoint", help="Continue from a previous job: JOB_ID or OUTPUT_MODEL, optionally ':STEP'. Replaces --model.")]
WatchOpt = Annotated[bool, typer.Option("--watch/--no-watch", help="Follow status and events until the job ends; exit non-zero if it fails or is cancelled.")]
PollOpt = Annotated[float, typer.Option("--poll-interval", min=0.01, help="Seconds between status polls while watching.")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", help="Run folder for the job record (together_job.json). Re-running with the same folder resumes instead of starting a second job. Default runs/finetune_together_<time>.")]


def together_command(
    dataset: DatasetOpt,
    model: TogetherModelOpt = None,
    suffix: SuffixOpt = None,
    epochs: EpochsOpt = 1,
    batch_size: BatchSizeOpt = "max",
    learning_rate: LearningRateOpt = 1e-5,
    lora: LoraOpt = True,
    lora_r: LoraROpt = None,
    lora_alpha: LoraAlphaOpt = None,
    training_method: MethodOpt = "sft",
    dpo_beta: DpoBetaOpt = None,
    from_checkpoint: CheckpointOpt = None,
    watch: WatchOpt = False,
    poll_interval: PollOpt = 10.0,
    out: OutOpt = None,
    base_url: O.BaseUrlOpt = None,
    api_key_env: O.ApiKeyEnvOpt = None,
    max_retries: O.RetriesOpt = 4,
    request_timeout: O.TimeoutOpt = 120.0,
    estimate_tokenizer: Annotated[str, typer.Option("--estimate-tokenizer", help="Tokenizer (a folder, a cached Hub id, or 'smollm2', the embedded one) that counts the file's tokens for the billed-token estimate printed before the upload; Together counts with the base model's own tokenizer, so the figure is an estimate. 'none' skips it.")] = "smollm2",
) -> None:
    """Check a dataset, upload it, start a LoRA fine-tuning job on Together and record it in a run folder.

    The file must pass repo-agent's own format check and the together SDK's checker before anything is uploaded. The key comes from TOGETHER_API_KEY (or the variable named by --api-key-env). Example:

        repo-agent finetune together --dataset data/sft.jsonl --model meta-llama/Meta-Llama-3.1-8B-Instruct-Reference --suffix repo-agent --watch
    """
    from ..digest import file_sha256
    from ..train import together as T

    try:
        request = T.TogetherJobRequest(
            dataset=str(dataset), model=model, suffix=suffix, epochs=epochs, batch_size=T.parse_batch_size(batch_size),
            learning_rate=learning_rate, lora=lora, lora_r=lora_r, lora_alpha=lora_alpha,
            training_method=training_method, dpo_beta=dpo_beta, from_checkpoint=from_checkpoint)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if request.problems():
        fail(request.problems(), code=2)
    run_dir = out or Path("runs") / time.strftime("finetune_together_%Y%m%d_%H%M%S")
    sha = file_sha256(dataset)
    record = _load_record(run_dir)
    if record and record.job_id:
        _refuse_if_different(record, request, sha, run_dir)
        if record.status in T.TERMINAL:  # a finished run is a no-op: report it, start nothing
            _print_summary(record, run_dir)
            if record.status in T.FAILED:
                console.print("this job ended without a model; pick another --out to start a new one")
            raise typer.Exit(0 if record.status in T.SUCCEEDED else 1)
        console.print(f"{run_dir} already holds job [bold]{record.job_id}[/bold]: resuming it, nothing is uploaded again")
        client = _client(base_url or record.base_url, api_key_env, max_retries, request_timeout, model)
    else:
        check = T.check_dataset(dataset, training_method)
        if not check.ok:
            fail([f"{dataset} was refused, nothing was uploaded ({', '.join(check.checkers)}):", *check.reasons], code=2)
        console.print(f"{dataset}: checks passed ({', '.join(check.checkers)})" + (f", {check.count} {check.kind} rows" if check.count else ""))
        if estimate_tokenizer != "none":
            _print_billed_estimate(dataset, estimate_tokenizer, epochs)
        client = _client(base_url, api_key_env, max_retries, request_timeout, model)
        if record is None or record.dataset_sha256 != sha or record.file_status in T.REJECTED_FILE_STATES:
            record = T.JobRecord(request=asdict(request), dataset_sha256=sha, base_url=base_url)
        record.request = asdict(request)
        record.trained_tasks_file = _write_trained_tasks(dataset, run_dir)
        record = _start_job(client, request, record, run_dir, dataset, api_key_env)
    if not watch:
        _print_summary(record, run_dir)
        console.print(f"follow it with: repo-agent finetune status {run_dir} --watch")
        raise typer.Exit(0 if record.status not in T.FAILED else 1)
    raise typer.Exit(_watch(client, record, run_dir, poll_interval, api_key_env))


def _print_billed_estimate(dataset: Path, tokenizer_name: str, epochs: int) -> None:
    """What Together bills (every token of every row, each epoch), counted before anything is uploaded:
    episode rows cost a fraction of the step rows that carry the same trained turns."""
    from ..train import together as T

    try:
        estimate = T.billed_token_estimate(dataset, tokenizer_name)
    except (OSError, ValueError) as exc:
        console.print(f"[yellow]note:[/yellow] no billed-token estimate ({exc})")
        return
    console.print(f"billed-token estimate: ~{estimate['tokens']:,} tokens per epoch x {epochs} epoch(s) = "
                  f"~{estimate['tokens'] * epochs:,} tokens ({estimate['rows']} rows, {estimate['trained_turns']} trained turns; "
                  f"counted with {tokenizer_name}'s chat template: Together counts with the base model's tokenizer)")


def status_command(
    job: Annotated[str, typer.Argument(help="A job id (ft-...) or a run folder written by `finetune together` (its record is updated).")],
    watch: WatchOpt = False,
    poll_interval: PollOpt = 10.0,
    last: Annotated[int, typer.Option("--last", min=0, help="How many of the latest events to show.")] = 30,
    base_url: O.BaseUrlOpt = None,
    api_key_env: O.ApiKeyEnvOpt = None,
    max_retries: O.RetriesOpt = 4,
    request_timeout: O.TimeoutOpt = 120.0,
) -> None:
    """Print a Together fine-tuning job's status and events (with --watch: follow it until it ends).

        repo-agent finetune status ft-1234abcd
        repo-agent finetune status runs/finetune_together_20260101_120000 --watch
    """
    import together

    from ..digest import file_sha256
    from ..train import together as T

    run_dir = Path(job) if Path(job).is_dir() else None
    record = _load_record(run_dir) if run_dir else None
    if run_dir and (record is None or not record.job_id):
        fail([f"{run_dir} holds no Together job record ({T.RECORD_NAME} with a job id)"], code=2)
    job_id = record.job_id if record else job
    client = _client(base_url or (record.base_url if record else None), api_key_env, max_retries, request_timeout, None)
    if watch:
        record = record or T.JobRecord(request={}, dataset_sha256="")
        record.job_id = job_id
        raise typer.Exit(_watch(client, record, run_dir, poll_interval, api_key_env))
    try:
        current, events = T.fetch_job(client, job_id)
    except together.TogetherError as exc:
        fail([_redacted(exc, api_key_env)], code=1)
    shown = record or T.JobRecord(request={}, dataset_sha256="")
    shown.absorb(current, events)
    if run_dir:
        T.save_record(run_dir, shown)
    _print_summary(shown, run_dir)
    _print_events(events, last)


def register(finetune_app: typer.Typer) -> None:
    finetune_app.command("together")(together_command)
    finetune_app.command("status")(status_command)


# -- steps ---------------------------------------------------------------------------------------------

def _start_job(client: Any, request: Any, record: Any, run_dir: Path, dataset: Path, api_key_env: str | None) -> Any:
    """Upload (unless this exact file is already uploaded for this run), then create the job.

    The record is saved after each step, so a crash between them never pays for a second upload/job."""
    import together

    from ..digest import file_sha256
    from ..train import together as T

    try:
        if not record.file_id:
            with console.status(f"uploading {dataset.name} ..."):
                uploaded = T.upload_dataset(client, dataset)
            record.file_id, record.file_status = uploaded["id"], uploaded.get("processing_status")
            T.save_record(run_dir, record)
            console.print(f"uploaded as [bold]{record.file_id}[/bold] (processing: {record.file_status or 'unknown'})")
            if record.file_status in T.REJECTED_FILE_STATES:
                report = uploaded.get("validation_report") or {}
                fail([f"Together refused {dataset.name} after upload: {report.get('error') or record.file_status}"], code=2)
        with console.status("creating the fine-tuning job (model limits, price estimate, create) ..."):
            job = T.create_job(client, request, record.file_id)
    except together.TogetherError as exc:
        T.save_record(run_dir, record)
        fail([_redacted(exc, api_key_env), f"re-run with the same --out {run_dir} to resume; a finished upload is reused"], code=1)
    except ValueError as exc:  # the SDK's own parameter checks (batch size, LoRA rank, ...)
        fail([f"Together refused the job parameters: {exc}"], code=2)
    record.absorb(job)
    path = T.save_record(run_dir, record)
    console.print(f"created job [bold]{record.job_id}[/bold] -> model [bold]{record.output_model}[/bold]; record: {path}")
    return record


def _write_trained_tasks(dataset: Path, run_dir: Path) -> str | None:
    from ..data.stats import meta_path
    from ..provenance import trained_task_ids
    from ..train import together as T

    try:
        task_ids = trained_task_ids(dataset)[0]
    except (ValueError, OSError):
        task_ids = None
    if task_ids is None:
        console.print(f"note: no matching provenance sidecar ({meta_path(dataset).name}), so the trained task ids are unknown and eval cannot flag leakage")
        return None
    path = T.save_trained_tasks(run_dir, task_ids, meta_path(dataset))
    console.print(f"trained on {len(task_ids)} tasks: {path} (give it to eval as --trained-tasks)")
    return str(path)


def _watch(client: Any, record: Any, run_dir: Path | None, poll_interval: float, api_key_env: str | None) -> int:
    """Follow the job with a progress display; record every change; 0 only if it completed."""
    import together
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from ..digest import file_sha256
    from ..train import together as T

    shown = 0
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as progress:
        bar = progress.add_task(f"{record.job_id}: {record.status or 'submitted'}", total=None)

        def on_update(job: dict[str, Any], events: list[dict[str, Any]]) -> None:
            nonlocal shown
            for event in events[shown:]:
                progress.console.print(_event_line(event))
            shown = len(events)
            steps = [e for e in events if e.get("total_steps")]
            if steps:
                progress.update(bar, total=steps[-1]["total_steps"], completed=steps[-1].get("step") or 0)
            if job.get("status") == "completed" and progress.tasks[0].total:
                progress.update(bar, completed=progress.tasks[0].total)
            progress.update(bar, description=f"{record.job_id}: {job.get('status')}")
            before = (record.status, len(record.events))
            record.absorb(job, events)
            if run_dir and before != (record.status, len(record.events)):
                T.save_record(run_dir, record)

        try:
            T.follow_job(client, record.job_id, on_update, poll_interval)
        except KeyboardInterrupt:
            progress.stop()
            console.print(f"stopped watching; the job keeps running on Together. Resume: repo-agent finetune status {run_dir or record.job_id} --watch")
            return 130
        except together.TogetherError as exc:
            progress.stop()
            _print_error(_redacted(exc, api_key_env))
            console.print(f"the job itself may still be running; resume watching: repo-agent finetune status {run_dir or record.job_id} --watch")
            return 1
    if run_dir:
        T.save_record(run_dir, record)
    _print_summary(record, run_dir)
    if record.status in T.SUCCEEDED and record.output_model:
        leakage = f" --trained-tasks {record.trained_tasks_file}" if record.trained_tasks_file else ""
        console.print(f"evaluate it: repo-agent eval --suite SUITE --trace-dir DIR --llm-provider together --model {record.output_model}{leakage}")
    return 0 if record.status in T.SUCCEEDED else 1


# -- display -------------------------------------------------------------------------------------------

def _print_summary(record: Any, run_dir: Path | None) -> None:
    from rich.table import Table
    from rich.text import Text

    from ..digest import file_sha256
    from ..train import together as T

    colour = "green" if record.status in T.SUCCEEDED else "red" if record.status in T.FAILED else "yellow"
    table = Table(title=f"Together job {record.job_id}", show_header=False)
    table.add_row("status", f"[{colour}]{record.status}[/{colour}]")
    table.add_row("base model", str(record.base_model or "-"))
    table.add_row("output model", str(record.output_model or "-"))
    table.add_row("adapter", str(record.adapter_model or "-"))
    if record.file_id:
        table.add_row("training file", record.file_id)
    if record.token_count:
        table.add_row("tokens", str(record.token_count))
    if record.failure:
        table.add_row("failure", Text(record.failure, style="red"))
    if run_dir:
        table.add_row("record", str(T.record_path(run_dir)))
    Console().print(table)


def _print_events(events: list[dict[str, Any]], last: int) -> None:
    from rich.table import Table
    from rich.text import Text

    if not events:
        Console().print("no events yet")
        return
    table = Table(title=f"events ({len(events)}, showing the last {min(last, len(events))})")
    for column in ("time", "type", "message"):
        table.add_column(column)
    for event in events[-last:] if last else []:
        table.add_row(Text(str(event.get("created_at", ""))), Text(str(event.get("type", ""))), Text(str(event.get("message", ""))))
    Console().print(table)


def _event_line(event: dict[str, Any]) -> str:
    from rich.markup import escape

    style = "red" if event.get("level") == "error" or event.get("type") == "job_error" else "dim"
    return f"[{style}]{event.get('created_at', '')}[/{style}] {event.get('type', '')}: {escape(str(event.get('message', '')))}"


# -- small helpers -------------------------------------------------------------------------------------

def _client(base_url: str | None, api_key_env: str | None, max_retries: int, timeout: float, model: str | None) -> Any:
    from ..models.base import ProviderConfig
    from ..models.together_api import make_client

    config = ProviderConfig(provider="together", model=model or "", base_url=base_url, api_key_env=api_key_env,
                            max_retries=max_retries, timeout_s=timeout)
    try:
        return make_client(config)
    except ValueError as exc:
        fail([str(exc)], code=2)


def _load_record(run_dir: Path | None) -> Any:
    from ..digest import file_sha256
    from ..train import together as T

    try:
        return T.load_record(run_dir) if run_dir else None
    except ValueError as exc:
        fail([str(exc)], code=2)


def _refuse_if_different(record: Any, request: Any, sha: str, run_dir: Path) -> None:
    """Resuming is only safe for the same dataset and the same settings; anything else needs a new folder."""
    asked = {k: v for k, v in asdict(request).items() if k != "dataset"}
    recorded = {k: v for k, v in record.request.items() if k != "dataset"}
    if record.dataset_sha256 != sha or asked != recorded:
        changed = sorted(k for k in asked if asked[k] != recorded.get(k)) + (["dataset content"] if record.dataset_sha256 != sha else [])
        fail([f"{run_dir} already holds job {record.job_id} started with other settings ({', '.join(changed)}); "
               "pick another --out for a new job"], code=2)


def _redacted(exc: Exception, api_key_env: str | None) -> str:
    from ..models.base import ProviderConfig
    from ..models.together_api import scrub

    text = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:500]
    return scrub(text, ProviderConfig(provider="together", model="", api_key_env=api_key_env))


def _print_error(message: str) -> None:
    from rich.markup import escape

    console.print(f"[red]error:[/red] {escape(message)}")

