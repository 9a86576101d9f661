"""Many tasks x rollouts in parallel threads, in a resumable run directory.

    trace_dir/config.json       the resolved config (suite id/path/sha256, provider without secrets,
                                agent config, rollouts, seed, repo-agent version, extra_config)
    trace_dir/traces/<task>__r<k>.json   one trace per rollout (written by agent.run_episode)
    trace_dir/results.jsonl     one line per finished rollout, appended in completion order

A rollout is done when its trace says "finished" AND results.jsonl has its row. Re-running resumes:
done rollouts are skipped, a finished trace without its row gets the row (a kill between the two
writes), a torn last line of results.jsonl (kill -9 during the append) is cut off, anything else is
rerun from scratch. A config.json that differs in what decides the results is refused unless redo;
a missing or unreadable one is rebuilt when every trace matches the command (run_repair.py).

Threads, not processes: model calls are I/O-bound, and workspace.run_tests already caps concurrent
(CPU-bound) test runs at the core count, so W workers keep up to W requests in flight.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .agent import AgentConfig, run_episode
from .models.base import ProviderConfig, trace_meta
from .digest import file_sha256
from .suites.task import Suite, TaskSpec, task_to_dict
from .atomic import atomic_write_json
from .verdict import verdict_outcome
from .traces import TraceReadError, read_trace

RUN_SCHEMA = "repo-agent/run"
RUN_SCHEMA_VERSION = 1
CONFIG_FILE = "config.json"
RESULTS_FILE = "results.jsonl"
TRACES_DIR = "traces"
# Provider fields that do not change what a model answers: a resume may change them freely.
_PROVIDER_FIELDS_IGNORED = {"timeout_s", "max_retries", "api_key_env"}


class RunConfigMismatch(ValueError):
    """The run directory holds a different run; the message names the differing fields."""


@dataclass(frozen=True)
class RolloutJob:
    task: TaskSpec
    index: int
    seed: int
    pair_seed: int | None = None  # odd rollouts: the seed of rollout index-1, which a branch_pairs teacher forks from

    @property
    def rollout_id(self) -> str:
        return f"{self.task.task_id.replace('/', '__')}__r{self.index}"

    @property
    def trace_relpath(self) -> str:
        return f"{TRACES_DIR}/{self.rollout_id}.json"


@dataclass
class RunResult:
    trace_dir: Path
    completed: list[dict[str, Any]]  # one results.jsonl row per finished rollout of this run, in job order
    skipped_existing: int  # rollouts already finished before this call
    ran: int  # rollouts run by this call
    repaired: int  # finished traces that only lacked their results row
    wall_time_s: float
    problems: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.completed)


def rollout_seed(run_seed: int, task_id: str, index: int) -> int:
    """A stable 31-bit seed for rollout `index` of `task_id` (fits every provider's seed field)."""
    digest = hashlib.sha256(f"{run_seed}\x00{task_id}\x00{index}".encode("utf-8")).hexdigest()
    return int(digest[:8], 16) & 0x7FFFFFFF


def plan_jobs(suite: Suite, rollouts: int, seed: int) -> list[RolloutJob]:
    return [RolloutJob(task, k, rollout_seed(seed, task.task_id, k), rollout_seed(seed, task.task_id, k - 1) if k % 2 else None)
            for task in suite.tasks for k in range(rollouts)]


def repo_agent_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("repo-agent")
    except PackageNotFoundError:
        return "unknown"


def tasks_sha256(suite: Suite) -> str:
    """Hash of the task records themselves: moving or re-saving the suite file does not change it."""
    canonical = json.dumps([task_to_dict(t) for t in suite.tasks], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def run_config(suite: Suite, provider: ProviderConfig, agent: AgentConfig, rollouts: int, seed: int,
               extra_config: dict | None) -> dict[str, Any]:
    """The resolved config written to config.json. ProviderConfig holds no secret (keys come from env)."""
    return {
        "schema": RUN_SCHEMA,
        "schema_version": RUN_SCHEMA_VERSION,
        "repo_agent_version": repo_agent_version(),
        "suite": {
            "suite_id": suite.suite_id,
            "path": str(suite.path) if suite.path else None,
            "sha256": file_sha256(suite.path) if suite.path and Path(suite.path).is_file() else None,
            "tasks_sha256": tasks_sha256(suite),
            "task_ids": suite.task_ids,
        },
        "provider": asdict(provider),
        "agent": asdict(agent),
        "rollouts": rollouts,
        "seed": seed,
        "extra_config": extra_config or {},
    }


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Fields that decide results and differ. More rollouts than before is fine (the run grows)."""
    diffs = []
    if (old.get("suite") or {}).get("suite_id") != new["suite"]["suite_id"]:
        diffs.append("suite.suite_id")
    if (old.get("suite") or {}).get("tasks_sha256") != new["suite"]["tasks_sha256"]:
        diffs.append("suite tasks (tasks_sha256)")
    old_provider = {k: v for k, v in (old.get("provider") or {}).items() if k not in _PROVIDER_FIELDS_IGNORED}
    new_provider = {k: v for k, v in new["provider"].items() if k not in _PROVIDER_FIELDS_IGNORED}
    for key in sorted(set(old_provider) | set(new_provider)):
        if old_provider.get(key) != new_provider.get(key):
            diffs.append(f"provider.{key}: {old_provider.get(key)!r} -> {new_provider.get(key)!r}")
    for key in sorted(set(old.get("agent") or {}) | set(new["agent"])):
        if (old.get("agent") or {}).get(key) != new["agent"].get(key):
            diffs.append(f"agent.{key}: {(old.get('agent') or {}).get(key)!r} -> {new['agent'].get(key)!r}")
    if old.get("seed") != new["seed"]:
        diffs.append(f"seed: {old.get('seed')!r} -> {new['seed']!r}")
    if (old.get("rollouts") or 0) > new["rollouts"]:
        diffs.append(f"rollouts: {old.get('rollouts')} -> {new['rollouts']} (fewer rollouts than recorded)")
    if (old.get("extra_config") or {}) != new["extra_config"]:
        diffs.append("extra_config")
    return diffs


def prepare_run_dir(trace_dir: Path, config: dict[str, Any], redo: bool) -> list[str]:
    """Create or check trace_dir and write config.json. redo removes this module's files only.
    Returns what had to be repaired (one line each). config.json is written before anything else, so
    a run killed at any moment leaves either no run or a run with its config."""
    trace_dir.mkdir(parents=True, exist_ok=True)
    config_path = trace_dir / CONFIG_FILE
    notes: list[str] = []
    if redo:
        shutil.rmtree(trace_dir / TRACES_DIR, ignore_errors=True)
        for name in (RESULTS_FILE, CONFIG_FILE, "report.json", "report.md"):
            (trace_dir / name).unlink(missing_ok=True)
    else:
        old, unreadable = _read_config(config_path)
        if old is not None:
            diffs = config_differences(old, config)
            if diffs:
                raise RunConfigMismatch(
                    f"{trace_dir} holds a different run; differing: {'; '.join(diffs)}. "
                    "Use another --trace-dir, or --redo to delete its traces and start over.")
        elif _has_rollouts(trace_dir):
            notes.append(_config_from_traces(trace_dir, config, unreadable or f"{config_path} is missing"))
    atomic_write_json(config_path, config)
    (trace_dir / TRACES_DIR).mkdir(exist_ok=True)
    for stale in [*trace_dir.glob(".*.tmp"), *(trace_dir / TRACES_DIR).glob(".*.tmp")]:
        stale.unlink(missing_ok=True)  # half-written temp files of a killed run (the real files are intact)
    return notes


def _read_config(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    if not path.exists():
        return None, None
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, f"{path} is unreadable ({exc})"
    return (old, None) if isinstance(old, dict) else (None, f"{path} is not a JSON object")


def _has_rollouts(trace_dir: Path) -> bool:
    results = trace_dir / RESULTS_FILE
    return (results.exists() and results.stat().st_size > 0) or any((trace_dir / TRACES_DIR).glob("*.json"))


def _config_from_traces(trace_dir: Path, config: dict[str, Any], why: str) -> str:
    """No readable config.json beside existing rollouts: keep them only if every trace was made by this command."""
    from .run_repair import check_traces

    checked, foreign = check_traces(trace_dir / TRACES_DIR, config,
                                    lambda task_id, index: rollout_seed(config["seed"], task_id, index))
    if foreign:
        listed = "; ".join(foreign[:3]) + (f"; ... {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise RunConfigMismatch(f"{why}, and {len(foreign)} of its {checked} traces come from a different run ({listed}). "
                                "Use another --trace-dir, or --redo to delete its traces and start over.")
    return f"{why}; all {checked} readable traces match this command, so {CONFIG_FILE} was written again"


def read_results(path: Path, problems: list[str]) -> dict[str, dict[str, Any]]:
    """Rows by rollout_id. A torn last line (no newline: killed mid-append) is cut off in place;
    any other unreadable line is reported and dropped when the file is rewritten."""
    if not path.exists():
        return {}
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        problems.append(f"{path}: cut a torn last line ({len(data) - keep} bytes) left by an interrupted write")
        with open(path, "r+b") as handle:
            handle.truncate(keep)
        data = data[:keep]
    rows: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rows.setdefault(row["rollout_id"], row)
        except (ValueError, KeyError, TypeError):
            problems.append(f"{path}:{number}: unreadable results row dropped")
    return rows


def result_row(job: RolloutJob, trace: dict[str, Any]) -> dict[str, Any]:
    metrics = dict(trace.get("metrics") or {})
    outcome = verdict_outcome(trace.get("verdict"))
    return {
        "rollout_id": job.rollout_id,
        "task_id": job.task.task_id,
        "rollout_index": job.index,
        "seed": job.seed,
        "passed": outcome == "passed",
        "outcome": outcome,
        "metrics": metrics,
        "stop_reason": trace.get("stop_reason"),
        "trace": job.trace_relpath,
    }


class ResultsLog:
    """Appends rows to results.jsonl, one write per line under a lock, so lines never interleave."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()

    def rewrite(self, rows: list[dict[str, Any]]) -> None:
        from .atomic import atomic_write_text

        atomic_write_text(self.path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))

    def append(self, row: dict[str, Any]) -> None:
        line = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            with open(self.path, "ab") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())


def _finished_trace(trace_dir: Path, job: RolloutJob) -> dict[str, Any] | None:
    path = trace_dir / job.trace_relpath
    if not path.exists():
        return None
    try:
        trace = read_trace(path)
    except TraceReadError:
        return None
    return trace if trace.get("status") == "finished" else None


def run_one(suite: Suite, provider: ProviderConfig, agent: AgentConfig, trace_dir: Path, job: RolloutJob) -> dict[str, Any]:
    """One rollout with its own model instance; returns its results row."""
    from .models import episode_model

    branching = bool(provider.teacher and provider.teacher.branch_pairs)
    fork_of = job.pair_seed if branching else None
    llm = episode_model(provider, suite, job.task, seed=job.seed, toolset=agent.toolset, fork_of=fork_of)
    branch = None if not branching else (
        {"role": "follower", "leader_rollout_id": f"{job.rollout_id.rsplit('__r', 1)[0]}__r{job.index - 1}"}
        if fork_of is not None else {"role": "leader"})
    trace = run_episode(
        suite, job.task, llm, agent, trace_dir / job.trace_relpath, **({"branch": branch} if branch else {}),
        rollout_id=job.rollout_id, rollout_index=job.index, seed=job.seed,
        **trace_meta(provider, agent.tool_protocol, agent.test_policy))
    return result_row(job, trace)


def run_rollouts(suite: Suite, provider: ProviderConfig, agent: AgentConfig, trace_dir: Path, *,
                 rollouts: int = 1, num_workers: int = 4, seed: int = 0, redo: bool = False,
                 show_progress: bool | None = None, extra_config: dict | None = None) -> RunResult:
    """Run (or resume) every rollout of `suite` into `trace_dir`. Raises RunConfigMismatch, or
    ValueError when the provider cannot be built (e.g. no API key); rollout failures are data."""
    if rollouts < 1 or num_workers < 1:
        raise ValueError(f"rollouts and num_workers must be >= 1, got {rollouts} and {num_workers}")
    started = time.monotonic()
    trace_dir = Path(trace_dir)
    problems = prepare_run_dir(trace_dir, run_config(suite, provider, agent, rollouts, seed, extra_config), redo)
    log = ResultsLog(trace_dir / RESULTS_FILE)
    jobs = plan_jobs(suite, rollouts, seed)
    known = {job.rollout_id for job in jobs}
    rows = read_results(log.path, problems)
    done: dict[str, dict[str, Any]] = {}
    pending: list[RolloutJob] = []
    repaired = 0
    for job in jobs:
        trace = _finished_trace(trace_dir, job)
        if trace is None:
            pending.append(job)
        elif job.rollout_id in rows:
            done[job.rollout_id] = rows[job.rollout_id]
        else:
            done[job.rollout_id] = result_row(job, trace)
            repaired += 1
    kept = [row for rid, row in rows.items() if rid in done or rid not in known]
    if len(kept) != len(rows) or repaired or problems:
        # rows whose trace is gone or unfinished are dropped (the rollout reruns); repaired rows added
        extra = [done[j.rollout_id] for j in jobs if j.rollout_id in done and j.rollout_id not in rows]
        log.rewrite(kept + extra)
    skipped = len(done) - repaired
    if pending:
        from .models import episode_model

        episode_model(provider, suite, pending[0].task, seed=pending[0].seed, toolset=agent.toolset)  # fail fast on config errors
        _run_pending(suite, provider, agent, trace_dir, pending, num_workers, log, done, len(jobs), show_progress)
    completed = [done[j.rollout_id] for j in jobs if j.rollout_id in done]
    return RunResult(
        trace_dir=trace_dir, completed=completed, skipped_existing=skipped, ran=len(pending), repaired=repaired,
        wall_time_s=time.monotonic() - started,
        problems=problems)


def _run_pending(suite: Suite, provider: ProviderConfig, agent: AgentConfig, trace_dir: Path,
                 pending: list[RolloutJob], num_workers: int, log: ResultsLog, done: dict[str, dict[str, Any]],
                 total: int, show_progress: bool | None) -> None:
    progress = RolloutProgress(total=total, already=list(done.values()),
                               rich=sys.stderr.isatty() if show_progress is None else show_progress)
    with progress, ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="rollout") as pool:
        futures: dict[Future, RolloutJob] = {pool.submit(run_one, suite, provider, agent, trace_dir, job): job for job in pending}
        try:
            remaining = set(futures)
            while remaining:
                finished, remaining = wait(remaining, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in finished:
                    row = future.result()  # run_episode never raises for model/tool failures
                    log.append(row)
                    done[row["rollout_id"]] = row
                    progress.advance(row)
        except BaseException:
            for future in futures:
                future.cancel()
            raise


class RolloutProgress:
    """Rich progress on a terminal; otherwise one JSON line per finished rollout on stderr."""

    def __init__(self, total: int, already: list[dict[str, Any]], rich: bool):
        self.total, self.rich = total, rich
        self.done = len(already)
        self.passes = sum(1 for r in already if r.get("passed"))
        self.parse_errors = sum(_int((r.get("metrics") or {}).get("parse_errors")) for r in already)
        self.tokens = sum(_int((r.get("metrics") or {}).get("tokens_in")) + _int((r.get("metrics") or {}).get("tokens_out"))
                          for r in already)
        self._progress: Any = None

    def _stats(self) -> str:
        rate = f"{self.passes / self.done:.0%}" if self.done else "-"
        return f"pass {rate}  parse errors {self.parse_errors}  tokens {self.tokens:,}"

    def __enter__(self) -> "RolloutProgress":
        if self.rich:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("rollouts"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True))
            self._progress.start()
            self._task = self._progress.add_task("rollouts", total=self.total, completed=self.done, stats=self._stats())
        return self

    def advance(self, row: dict[str, Any]) -> None:
        metrics = row.get("metrics") or {}
        self.done += 1
        self.passes += bool(row.get("passed"))
        self.parse_errors += _int(metrics.get("parse_errors"))
        self.tokens += _int(metrics.get("tokens_in")) + _int(metrics.get("tokens_out"))
        if self._progress is not None:
            self._progress.update(self._task, advance=1, stats=self._stats())
        else:
            line = {"event": "rollout_finished", "done": self.done, "total": self.total, "rollout_id": row["rollout_id"],
                    "passed": row.get("passed"), "stop_reason": row.get("stop_reason"),
                    "pass_rate_so_far": round(self.passes / self.done, 4), "parse_errors_so_far": self.parse_errors,
                    "tokens_so_far": self.tokens}
            print(json.dumps(line), file=sys.stderr, flush=True)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0
