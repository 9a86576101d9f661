"""Hosted LoRA fine-tuning on Together AI: check a dataset, upload it, create a job, follow it, and keep
a record of all of it in a run folder (`together_job.json`).

Everything here talks to the API through the `together` SDK (3.x); the command line and the progress
display live in repo_agent/commands/finetune_together.py. The run folder makes the command safe to
re-run: an upload or a job that already exists is reused, never paid for twice.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..atomic import atomic_write_text

RECORD_NAME = "together_job.json"
SUCCEEDED = frozenset({"completed"})
FAILED = frozenset({"error", "user_error", "cancelled", "failed"})
TERMINAL = SUCCEEDED | FAILED
TRAINING_METHODS = ("sft", "dpo")
# What the file-processing pipeline reports for a file it refused.
REJECTED_FILE_STATES = frozenset({"FAILED", "INVALID_FORMAT"})


@dataclass(frozen=True)
class TogetherJobRequest:
    """The user's choices for one job, exactly as the flags gave them (recorded in the run folder)."""

    dataset: str
    model: str | None
    suffix: str | None = None
    epochs: int = 1
    batch_size: int | str = "max"
    learning_rate: float = 1e-5
    lora: bool = True
    lora_r: int | None = None
    lora_alpha: float | None = None
    training_method: str = "sft"
    dpo_beta: float | None = None
    from_checkpoint: str | None = None

    def problems(self) -> list[str]:
        """Flag combinations the API would refuse, caught before anything is uploaded."""
        found = []
        if self.training_method not in TRAINING_METHODS:
            found.append(f"--training-method must be one of {', '.join(TRAINING_METHODS)}, got {self.training_method!r}")
        if self.dpo_beta is not None and self.training_method != "dpo":
            found.append("--dpo-beta only applies with --training-method dpo")
        if not self.model and not self.from_checkpoint:
            found.append("give --model (a base model) or --from-checkpoint (a previous job's checkpoint)")
        if self.suffix and len(self.suffix) > 40:
            found.append(f"--suffix may have at most 40 characters, got {len(self.suffix)}")
        return found

    def create_kwargs(self, training_file: str) -> dict[str, Any]:
        """Arguments of `client.fine_tuning.create`. A checkpoint already names its base model, and the
        SDK refuses both at once, so `model` is left out when continuing from a checkpoint."""
        kwargs: dict[str, Any] = dict(
            training_file=training_file,
            model=None if self.from_checkpoint else self.model,
            n_epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            lora=self.lora,
            lora_r=self.lora_r,
            lora_alpha=self.lora_alpha,
            suffix=self.suffix,
            training_method=self.training_method,
            from_checkpoint=self.from_checkpoint,
        )
        if self.training_method == "sft":
            # Our SFT rows carry per-message weights; "auto" masks inputs and honours them.
            kwargs["train_on_inputs"] = "auto"
        else:
            kwargs["dpo_beta"] = self.dpo_beta
        return kwargs


def parse_batch_size(text: str) -> int | str:
    """`max` (the largest the model allows) or a positive integer."""
    if text.strip().lower() == "max":
        return "max"
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"--batch-size must be 'max' or a positive integer, got {text!r}") from None
    if value < 1:
        raise ValueError(f"--batch-size must be 'max' or a positive integer, got {text!r}")
    return value


# -- dataset checks ------------------------------------------------------------------------------------

@dataclass
class DatasetCheck:
    ok: bool
    reasons: list[str] = field(default_factory=list)
    kind: str | None = None
    count: int | None = None
    checkers: list[str] = field(default_factory=list)  # which checks actually ran


# The row kinds repo_agent.data.check reports that Together accepts, per training method (TRL-shaped
# rows, "sft-trl" and "pref-trl", are for local training only).
TOGETHER_KINDS = {"sft": "sft", "dpo": "pref"}


def check_dataset(path: Path, training_method: str) -> DatasetCheck:
    """Our own format check (repo_agent.data.check) and the SDK's file checker; all reasons are kept."""
    result = DatasetCheck(ok=True)
    try:
        from ..data.check import check_file as project_check
    except ImportError:  # the data module is optional for this path; the SDK check still runs
        project_check = None
    if project_check is not None:
        report = project_check(path, "auto", use_sdk=False)  # the SDK check runs once, below
        result.checkers.append("repo_agent.data.check")
        result.kind, result.count = report.kind, report.count
        result.reasons.extend(str(e) for e in report.errors)
        hidden = getattr(report, "error_count", len(report.errors)) - len(report.errors)
        if hidden > 0:
            result.reasons.append(f"... and {hidden} more problems (run `repo-agent data check {path}`)")
        wanted = TOGETHER_KINDS.get(training_method)
        if not report.errors and wanted and report.kind != wanted:
            result.reasons.append(f"--training-method {training_method} needs {wanted!r} rows in Together's format; the file holds {report.kind!r} rows")

    from together.lib import check_file as sdk_check

    sdk_report = sdk_check(path, purpose="fine-tune")
    result.checkers.append("together.lib.check_file")
    if not sdk_report.get("is_check_passed"):
        line = f" (line {sdk_report['line_number']})" if sdk_report.get("line_number") else ""
        result.reasons.append(f"together SDK check: {sdk_report.get('message', 'failed')}{line}")
    result.ok = not result.reasons
    return result




# -- the run folder record ----------------------------------------------------------------------------

@dataclass
class JobRecord:
    """RUN_DIR/together_job.json: what was asked, what was uploaded, what the job became."""

    request: dict[str, Any]
    dataset_sha256: str
    base_url: str | None = None
    trained_tasks_file: str | None = None  # trained_tasks.json beside the record, for eval's leakage check
    file_id: str | None = None
    file_status: str | None = None
    job_id: str | None = None
    base_model: str | None = None
    output_model: str | None = None  # the id to pass as `--llm-provider together --model`
    adapter_model: str | None = None
    status: str | None = None
    failure: str | None = None
    token_count: int | None = None
    total_price: float | None = None
    created_at: str | None = None
    updated_at: str | None = None
    status_history: list[dict[str, str]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def absorb(self, job: dict[str, Any], events: list[dict[str, Any]] | None = None) -> None:
        """Fold a job (and its events) as the API returned them into the record."""
        self.job_id = job.get("id") or self.job_id
        self.base_model = job.get("model") or self.base_model
        self.output_model = job.get("model_output_name") or self.output_model
        self.adapter_model = job.get("adapter_output_name") or self.adapter_model
        self.token_count = job.get("token_count") or self.token_count
        self.total_price = job.get("total_price") or self.total_price
        self.created_at = _text(job.get("created_at")) or self.created_at
        self.updated_at = _text(job.get("updated_at")) or self.updated_at
        status = job.get("status")
        if status and status != self.status:
            self.status = status
            self.status_history.append({"status": status, "seen_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        if events is not None:
            self.events = events
        self.failure = failure_reason(self.status, self.events) if self.status in FAILED else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def record_path(run_dir: Path) -> Path:
    return run_dir / RECORD_NAME


def load_record(run_dir: Path) -> JobRecord | None:
    path = record_path(run_dir)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return JobRecord(**data)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path} is not a readable job record ({exc}); move it away or pick another --out") from None


def save_trained_tasks(run_dir: Path, task_ids: list[str], source: Path) -> Path:
    """RUN_DIR/trained_tasks.json = {"task_ids": [...]}: the shape `eval --trained-tasks` reads."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "trained_tasks.json"
    atomic_write_text(path, json.dumps({"task_ids": task_ids, "source": str(source)}, indent=2) + "\n")
    return path


def save_record(run_dir: Path, record: JobRecord) -> Path:
    """Atomic write, so a crash mid-write never leaves a half record behind."""
    path = record_path(run_dir)
    atomic_write_text(path, json.dumps(asdict(record), indent=2, sort_keys=False) + "\n")
    if record.output_model and record.trained_tasks_file and Path(record.trained_tasks_file).is_file():
        from ..provenance import read_task_ids, register_model

        # `eval --model <this id>` then knows what the fine-tune was trained on, wherever it runs from
        register_model(record.output_model, read_task_ids(Path(record.trained_tasks_file)), str(path))
    return path


# -- API calls ------------------------------------------------------------------------------------------

def _plain(model: Any) -> dict[str, Any]:
    """An SDK response as a JSON-ready dict with the wire names (model_output_name, not x_model_...)."""
    return model.model_dump(by_alias=True, mode="json", warnings=False)


def upload_dataset(client: Any, path: Path) -> dict[str, Any]:
    """Redirect + PUT + preprocess, done by the SDK. We ran both checkers already, hence check=False.

    The SDK's upload drops the server's validation report; for a refused file we fetch it, since it is
    the only place that says why."""
    uploaded = _plain(client.files.upload(path, purpose="fine-tune", check=False))
    if uploaded.get("processing_status") in REJECTED_FILE_STATES:
        uploaded = {**uploaded, **_plain(client.files.retrieve(uploaded["id"]))}
    return uploaded


def create_job(client: Any, request: TogetherJobRequest, file_id: str) -> dict[str, Any]:
    """The SDK first asks the model-limits and price-estimate endpoints, then creates the job."""
    return _plain(client.fine_tuning.create(**request.create_kwargs(file_id)))


def fetch_job(client: Any, job_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    job = _plain(client.fine_tuning.retrieve(job_id))
    events = [_plain(e) for e in client.fine_tuning.list_events(job_id).data]
    return job, events


def failure_reason(status: str | None, events: list[dict[str, Any]]) -> str:
    """The last error event says why a job failed; the status alone is the fallback."""
    for event in reversed(events):
        if event.get("type") == "job_error" or event.get("level") == "error":
            return str(event.get("message") or event.get("type"))
    return f"job ended with status {status}"


def follow_job(
    client: Any,
    job_id: str,
    on_update: Callable[[dict[str, Any], list[dict[str, Any]]], None],
    poll_interval_s: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll until the job reaches a terminal status; `on_update` sees every poll. Returns the last job."""
    while True:
        job, events = fetch_job(client, job_id)
        on_update(job, events)
        if job.get("status") in TERMINAL:
            return job
        sleep(poll_interval_s)


def billed_token_estimate(dataset: Path | str, tokenizer_name: str) -> dict[str, int]:
    """Tokens of every row of a chat or preference file as a chat template renders them (what a hosted
    fine-tune bills per epoch), with the rows and the trained turns they carry."""
    from ..data.sft import tokenizer_named
    from .episode_tokens import trained_turns

    tokenizer = tokenizer_named(tokenizer_name)
    tokens = rows = turns = 0
    with open(dataset, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            row = json.loads(line)
            rows += 1
            if "messages" in row:
                conversations = [row["messages"]]
                turns += len(trained_turns(row["messages"]))
            elif "input" in row:  # a preference pair: the prompt with each side
                prompt = row["input"]["messages"]
                conversations = [prompt + row["preferred_output"], prompt + row["non_preferred_output"]]
                turns += 1
            else:
                conversations = [row.get("prompt", []) + row.get("completion", [])]
                turns += 1
            for messages in conversations:
                clean = [{k: v for k, v in m.items() if k in ("role", "content", "tool_calls", "tool_call_id", "name")} for m in messages]
                text = tokenizer.apply_chat_template(clean, tools=row.get("tools") or None, tokenize=False)
                tokens += len(tokenizer(text, add_special_tokens=False)["input_ids"])
    return {"tokens": tokens, "rows": rows, "trained_turns": turns}
