"""Step-level SFT examples: one per agent step, the exact conversation the model saw, then its action.

The prompt of step k is rebuilt from the trace (`prompt_messages`, then each earlier step's
`assistant_message` and `result_message`), so it is byte-identical to what the model received. The
target is NOT the raw reply: it is the canonical render of the parsed action, because a target must
teach the protocol exactly (no stray whitespace, no key-order noise). Earlier assistant turns stay as
the model wrote them, parse errors included, because changing them would change the prompt.

When the requested format's protocol differs from the trace's (a JSON-protocol trace exported as
`native`, or the reverse), the turns are converted: the system prompt becomes that protocol's prompt,
valid actions become tool calls (or JSON content), tool results keep their text. Parse-error turns keep
their raw text. The conversion is documented in docs/data.md; it is the only case where a prompt is not
byte-identical to the trace.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from .. import protocol as P
from ..traces import TraceProblem, iter_traces
from .episodes import episode_rows, turn_provenance
from .export import AtomicJsonl, SftLineEncoder, dumps_line
from .rows import StepExample
from .stats import DataStats
# re-exported: pairs.py, views and tests read the conversation states through this module
from .states import (_call_id, emitted_message, format_protocol, iter_states, render_target,  # noqa: F401
                     step_action, step_target, tools_for, trace_protocol, trace_toolset)

TokenCounter = Callable[[list[dict[str, Any]], "list[dict[str, Any]] | None"], int]


ROW_KINDS = ("step", "episode")


@dataclass(frozen=True)
class SftOptions:
    fmt: str = "json"  # json | native | trl
    require_success: bool = True
    require_valid_tool_ok: bool = True
    skip_loops: bool = True
    max_per_task: int | None = None
    max_tokens: int | None = None
    held_out: "HeldOutGuard" = field(default_factory=lambda: HeldOutGuard())
    allow_suspicious: bool = False  # keep the steps of tampered or suspicious rollouts
    rows: str = "step"  # step: one row per trained step | episode: every trained step of a rollout in one row (episodes.py)


class SplitLeakError(ValueError):
    """A trace comes from a held-out task: its data must never be trained on."""


@dataclass(frozen=True)
class HeldOutGuard:
    """Which traces training data may not come from: the tasks of an explicit held-out suite, and (on by
    default in the commands) every task the project's md5 split rule puts on the test side."""

    explicit: frozenset[str] = frozenset()
    by_rule: bool = False

    def reason(self, task_id: str, split: str | None, split_key: str | None = None) -> str | None:
        if task_id in self.explicit:
            return "it is in the held-out --split-suite"
        if self.by_rule:
            from ..suites.split import trace_is_held_out

            if trace_is_held_out(task_id, split, split_key):
                return ("its recorded split is 'test'" if split == "test" else
                        "the project's split rule puts it (by its split key) on the test side")
        return None


def rollout_passed(trace: dict[str, Any]) -> bool:
    """The sealed verdict passed (traces older than sealed verdicts: their pass flag)."""
    from ..verdict import verdict_outcome

    return verdict_outcome(trace.get("verdict")) == "passed"


def rollout_untrusted(trace: dict[str, Any]) -> bool:
    """The rollout tampered with its verdict (a protected write, an integrity problem) or its change holds
    a suspicious construct (suspicious.py): none of its steps is taught, none of them wins a pair."""
    return bool(trace.get("tampered") or trace.get("suspicious") or (trace.get("verdict") or {}).get("tampered"))


def tool_name(step: dict[str, Any]) -> str:
    action = step.get("action") or {}
    return action.get("name") or action.get("type") or "?"


# ---------------------------------------------------------------------------------------------------
# Extraction


def removal_reason(step: dict[str, Any], action: P.Action | None, passed: bool, options: SftOptions) -> str | None:
    """Why step `step` is not a target (one reason, checked in a fixed order), or None to keep it."""
    if action is None:
        return "parse_error"
    if step.get("refused"):
        return "refused_write"  # never taught, whatever the filters: the task forbade it
    if step.get("mistake"):
        return "mistake"  # a teacher's deliberate wrong fix: the steps after it are the lesson
    if options.require_success and not passed:
        return "rollout_failed"
    if options.require_valid_tool_ok and step.get("tool_ok") is False:
        return "tool_error"
    if options.skip_loops and step.get("loop"):
        return "loop"
    return None


def trace_examples(trace: dict[str, Any], rel_path: str, options: SftOptions, stats: DataStats) -> Iterator[StepExample]:
    """Every kept step of one trace as a StepExample; removed steps are counted in `stats`."""
    passed = rollout_passed(trace)
    tools = tools_for(trace, options.fmt)
    if not options.allow_suspicious and rollout_untrusted(trace):
        for _ in trace.get("steps") or []:
            stats.steps_seen += 1
            stats.remove("tampered_or_suspicious_rollout")
        return
    for index, step, messages in iter_states(trace, options.fmt):
        stats.steps_seen += 1
        action = step_action(step)
        reason = removal_reason(step, action, passed, options)
        if reason:
            stats.remove(reason)
            continue
        assert action is not None  # removal_reason filtered parse errors
        target = render_target(action, format_protocol(options.fmt),
                               _call_id(step, index, trace_protocol(trace) == format_protocol(options.fmt)))
        yield StepExample(
            messages=[*messages, target], target_index=len(messages), tools=tools, task_id=trace["task_id"],
            rollout_id=str(trace.get("rollout_id") or Path(rel_path).stem), step_index=index, trace_path=rel_path,
            tool_name=tool_name(step), decoding=trace.get("decoding"),
        )


def shape_problem(trace: dict[str, Any]) -> str | None:
    """Why a trace that parsed as JSON still cannot be used (damaged steps or messages), or None."""
    if not isinstance(trace["prompt_messages"], list) or not all(isinstance(m, dict) for m in trace["prompt_messages"]):
        return "prompt_messages is not a list of messages"
    if not isinstance(trace["steps"], list):
        return "steps is not a list"
    last = len(trace["steps"]) - 1
    for index, step in enumerate(trace["steps"]):
        if not isinstance(step, dict) or not isinstance(step.get("assistant_message"), dict):
            return f"step {index} has no assistant_message"
        result = step.get("result_message")
        if not isinstance(result, dict) and not (result is None and index == last):
            return f"step {index} has no result_message but is not the last step"
        if isinstance(result, dict) and not isinstance(result.get("content"), str):
            return f"step {index} has a result_message without text"
    return None


def read_traces(trace_dir: Path, stats: DataStats, held_out: HeldOutGuard = HeldOutGuard()) -> Iterator[tuple[str, dict[str, Any]]]:
    """Stream (path relative to trace_dir, trace); counts corrupt/unfinished files; refuses held-out tasks."""
    problems: list[TraceProblem] = []
    seen_problems = 0
    for path, trace in iter_traces(trace_dir, problems=problems):
        damage = shape_problem(trace)
        if damage:
            problems.append(TraceProblem(path, f"{path}: damaged trace ({damage})"))
        seen_problems = stats.absorb_problems(problems, seen_problems)
        if damage:
            continue
        why = held_out.reason(trace["task_id"], trace.get("split"), trace.get("split_key"))
        if why:
            raise SplitLeakError(
                f"{path} comes from task {trace['task_id']!r}, a held-out task ({why}): refusing to build training "
                "data from it (--allow-held-out overrides the split rule when you know the task is not evaluated)")
        stats.rollouts_read += 1
        stats.tasks.add(trace["task_id"])
        stats.test_policies[str(trace.get("test_policy") or (trace.get("agent_config") or {}).get("test_policy") or "unknown")] += 1
        yield path.relative_to(trace_dir).as_posix(), trace
    stats.absorb_problems(problems, seen_problems)


def provenance(example: StepExample) -> dict[str, Any]:
    """The sidecar record of one row: where its example came from, and how the rollout decoded (traces
    written before decoding labels have none)."""
    record = {"task_id": example.task_id, "rollout_id": example.rollout_id, "step_index": example.step_index,
              "trace": example.trace_path, "tool": example.tool_name}
    if example.decoding is not None:
        record["decoding"] = example.decoding
    return record


def extract_sft(trace_dir: Path, output: Path, meta_output: Path, options: SftOptions, *,
                token_counter: TokenCounter | None = None, on_trace: Callable[[], None] | None = None,
                ) -> tuple[DataStats, AtomicJsonl, AtomicJsonl]:
    """Stream traces into uncommitted writers (rows, provenance sidecar); the caller validates and commits."""
    if options.rows not in ROW_KINDS:
        raise ValueError(f"rows must be one of {', '.join(ROW_KINDS)}, got {options.rows!r}")
    if options.rows == "episode" and options.fmt == "trl":
        raise ValueError("episode rows need per-message weights: --format json or native (TRL's prompt/completion "
                         "rows train one completion)")
    stats = DataStats(kind="sft", output=str(output), fmt=options.fmt, rows=options.rows)
    encoder = SftLineEncoder(options.fmt)
    seen_digests: set[bytes] = set()
    per_task: dict[str, int] = {}
    writer, meta = AtomicJsonl(output), AtomicJsonl(meta_output)
    try:
        for rel_path, trace in read_traces(Path(trace_dir), stats, options.held_out):
            encoder.new_trace()
            trained: dict[int, StepExample] = {}
            for example in trace_examples(trace, rel_path, options, stats):
                line = encoder.encode(example)
                digest = hashlib.blake2b(line.encode("utf-8"), digest_size=16).digest()
                if digest in seen_digests:
                    stats.remove("duplicate")
                    continue
                seen_digests.add(digest)
                tokens = token_counter(example.messages, example.tools) if token_counter else None
                if options.max_tokens is not None and tokens is not None and tokens > options.max_tokens:
                    stats.remove("too_long")
                    continue
                if options.max_per_task is not None and per_task.get(example.task_id, 0) >= options.max_per_task:
                    stats.remove("per_task_cap")
                    continue
                per_task[example.task_id] = per_task.get(example.task_id, 0) + 1
                stats.keep(example.task_id, example.tool_name, len(line), tokens)
                if options.rows == "step":
                    writer.write_line(line)
                    meta.write({"row": writer.count - 1, **provenance(example)})
                else:
                    trained[example.step_index] = dict_copy(example)
            if trained:
                _write_episode_rows(trace, trained, options, writer, meta, stats, token_counter)
            if on_trace:
                on_trace()
    except BaseException:
        writer.discard()
        meta.discard()
        raise
    return stats, writer, meta


def dict_copy(example: StepExample) -> StepExample:
    """The example with its own message list (iter_states reuses one list while it walks a trace)."""
    from dataclasses import replace

    return replace(example, messages=list(example.messages))


def _write_episode_rows(trace: dict[str, Any], trained: dict[int, StepExample], options: SftOptions, writer: AtomicJsonl,
                        meta: AtomicJsonl, stats: DataStats, token_counter: TokenCounter | None) -> None:
    for row in episode_rows(trace, trained, options.fmt):
        line = dumps_line(row.to_row())
        writer.write_line(line)
        first = row.turns[0]
        meta.write({"row": writer.count - 1, "task_id": first.task_id, "rollout_id": first.rollout_id,
                    "trace": first.trace_path, "turns": turn_provenance(row),
                    **({"decoding": first.decoding} if first.decoding is not None else {})})
        stats.keep_row(len(line), token_counter(row.messages, row.tools) if token_counter else None)


@functools.lru_cache(maxsize=4)
def tokenizer_named(name: str) -> Any:
    """A tokenizer or model folder (a tokenizer-only folder is enough), a cached Hub id, or 'smollm2'.
    Loaded once per process (callers only read it: counting tokens, rendering chat templates)."""
    folder = Path(name).expanduser()
    if folder.is_dir() and not (folder / "config.json").exists():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(folder)
    from ..hf_loading import load_tokenizer

    return load_tokenizer(name)


def token_counter_for(name: str) -> TokenCounter:
    """Count tokens of a conversation with a named tokenizer: a tokenizer or model folder, a Hub id
    already in the local cache, or 'smollm2' (the embedded model).

    Uses the tokenizer's chat template when it has one (what training will see), else the sum of the
    message contents.
    """
    tokenizer = tokenizer_named(name)

    def count(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> int:
        if getattr(tokenizer, "chat_template", None):
            ids = tokenizer.apply_chat_template(messages, tools=tools, tokenize=True)
            if hasattr(ids, "keys"):
                ids = ids["input_ids"]
            return len(ids)
        return sum(len(tokenizer.encode(m.get("content") or "", add_special_tokens=False)) for m in messages)

    return count
