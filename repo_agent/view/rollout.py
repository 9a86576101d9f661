"""One trace turned into what its page and its table cell show.

Traces come in several ages: fields added later (verdict outcomes, diffs, refused writes, rewards, tool
sets, decoding settings) are shown when present, and an older trace shows what it has. Keys this module
does not know are never dropped: they land in an "other fields" list, so a field added tomorrow is
visible today.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from .load import Rollout

# The top-level keys, step keys and verdict keys this module lays out itself.
TRACE_KEYS = {
    "schema", "schema_version", "status", "task_id", "suite_id", "split", "split_key", "prompt_version", "agent_config", "tools",
    "prompt_messages", "started_at", "finished_at", "rollout_id", "rollout_index", "seed", "provider", "model",
    "base_url", "adapter", "tool_protocol", "test_policy", "sampling", "steps", "stop_reason", "error", "verdict",
    "metrics", "toolset", "final_diff", "refused_writes", "tampered", "suspicious", "rewards", "decoding",
}
STEP_KEYS = {
    "index", "raw_output", "raw_tool_calls", "assistant_message", "action", "parse_error", "tool_ok", "tool_output",
    "test_snippet", "loop", "result_message", "latency_s", "prompt_tokens", "completion_tokens", "refused",
    "stopped_early", "mistake",
}
VERDICT_KEYS = {
    "passed_verdict", "passed", "failed", "errors", "skipped", "timeouts", "run_timed_out", "exit_code", "duration_s",
    "summary", "outcome", "sealed", "expected_tests", "tests",
}
# What a finished trace of schema version 1 always had, and what every step had.
FINISHED_FIELDS = ("stop_reason", "verdict", "metrics", "finished_at")
STEP_FIELDS = ("raw_output", "assistant_message", "action", "parse_error", "tool_output", "result_message",
               "latency_s", "prompt_tokens", "completion_tokens")


def number(value: Any) -> int | float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def as_text(value: Any) -> str:
    """Any field as text to show: strings as they are, everything else as indented JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=repr)


def timestamp(value: Any) -> str | None:
    seconds = number(value)
    if seconds is None:
        return None
    try:
        return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return str(value)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def steps_of(trace: dict[str, Any]) -> list[Any]:
    return _list(trace.get("steps"))


def action_summary(step: dict[str, Any]) -> str:
    """A short line for a step: the tool and its main argument, `final`, or the parse-error kind."""
    error = step.get("parse_error")
    if isinstance(error, dict):
        return f"parse error: {error.get('kind', '?')}"
    action = step.get("action")
    if not isinstance(action, dict):
        return "no action recorded"
    if action.get("type") == "final":
        return "final"
    name = str(action.get("name", action.get("type", "?")))
    args = _dict(action.get("args"))
    for key in ("rel_path", "path", "pattern", "command", "rel_dir"):
        if isinstance(args.get(key), str):
            value = args[key]
            return f"{name} {value[:80]}{'...' if len(value) > 80 else ''}"
    return name


def cell_summary(rollout: Rollout) -> dict[str, Any]:
    """What the task table needs from one rollout (also used by the side-by-side pages)."""
    trace = rollout.trace or {}
    steps = [s for s in steps_of(trace) if isinstance(s, dict)]
    refused = _list(trace.get("refused_writes"))
    return {
        "key": rollout.key,
        "index": rollout.index,
        "state": rollout.state,
        "css": css_token(rollout.state),
        "stop_reason": str(trace.get("stop_reason") or "-"),
        "steps": len(steps),
        "parse_errors": sum(1 for s in steps if s.get("parse_error")),
        "loops": sum(1 for s in steps if s.get("loop")),
        "refused": len(refused) or sum(1 for s in steps if s.get("refused")),
        "tampered": trace.get("tampered") is True,
        "suspicious": len(_list(trace.get("suspicious"))),
        "linked": rollout.path is not None,
        "problem": rollout.problem,
    }


def css_token(state: str) -> str:
    """A class-name-safe token for an outcome (outcomes are data; class names must stay inert)."""
    return "".join(c if c.isalnum() else "_" for c in state.lower())[:40] or "unknown"


def missing_fields(trace: dict[str, Any]) -> list[str]:
    """Plain sentences saying what an unfinished or damaged-looking trace lacks."""
    notes = []
    if trace.get("status") != "finished":
        notes.append(f"unfinished (status {trace.get('status')!r}): the rollout stopped or is still running; "
                     f"{len(steps_of(trace))} step(s) recorded, no stop reason, verdict or metrics yet")
    else:
        absent = [name for name in FINISHED_FIELDS if name not in trace]
        if absent:
            notes.append("finished, but missing: " + ", ".join(absent))
    if "steps" in trace and not isinstance(trace.get("steps"), list):
        notes.append("`steps` is not a list; no step can be shown")
    return notes


def _verdict(trace: dict[str, Any]) -> dict[str, Any] | None:
    verdict = trace.get("verdict")
    if not isinstance(verdict, dict):
        return None
    tests = verdict.get("tests")
    rows = [{"id": str(k), "status": as_text(v), "css": css_token(str(v))} for k, v in tests.items()] \
        if isinstance(tests, dict) else []
    disagree = isinstance(verdict.get("outcome"), str) and "passed_verdict" in verdict and \
        (verdict["outcome"] == "passed") != (verdict["passed_verdict"] is True)
    counts = [(k, verdict[k]) for k in ("passed", "failed", "errors", "skipped", "timeouts") if k in verdict]
    return {
        "outcome": verdict.get("outcome"),
        "passed_verdict": verdict.get("passed_verdict"),
        "summary": verdict.get("summary"),
        "counts": counts,
        "sealed": verdict.get("sealed"),
        "expected_tests": verdict.get("expected_tests"),
        "has_expected_tests": "expected_tests" in verdict,
        "tests": sorted(rows, key=lambda r: r["id"]),
        "tests_raw": None if rows or "tests" not in verdict else verdict.get("tests"),
        "details": [(k, verdict[k]) for k in ("run_timed_out", "exit_code", "duration_s") if k in verdict],
        "disagree": disagree,
        "other": sorted((k, v) for k, v in verdict.items() if k not in VERDICT_KEYS),
    }


def split_diff(text: str) -> list[tuple[str, str]]:
    lines = []
    for line in text.splitlines():
        if line.startswith(("+++", "---", "diff ", "index ")):
            kind = "meta"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "ctx"
        lines.append((kind, line))
    return lines


def _step(position: int, step: Any) -> dict[str, Any]:
    if not isinstance(step, dict):
        return {**_step(position, {}), "broken": "null" if step is None else as_text(step), "missing": [], "other": []}
    error = step.get("parse_error")
    if error is not None:
        error = {"kind": as_text(error.get("kind", "?")), "detail": as_text(error.get("detail"))} if isinstance(error, dict) \
            else {"kind": "?", "detail": as_text(error)}
    result = step.get("result_message")
    index = step.get("index") if isinstance(step.get("index"), int) else position
    return {
        "position": position,
        "index": index,
        "anchor": f"step-{position}",
        "broken": None,
        "summary": action_summary(step),
        "raw_output": step.get("raw_output"),
        "raw_tool_calls": step.get("raw_tool_calls"),
        "action": step.get("action") if isinstance(step.get("action"), dict) else None,
        "parse_error": error,
        "tool_ok": step.get("tool_ok"),
        "tool_output": step.get("tool_output"),
        "test_snippet": step.get("test_snippet"),
        "loop": step.get("loop"),
        "result_message": result.get("content") if isinstance(result, dict) else result,
        "result_role": result.get("role") if isinstance(result, dict) else None,
        "latency_s": number(step.get("latency_s")),
        "prompt_tokens": number(step.get("prompt_tokens")),
        "completion_tokens": number(step.get("completion_tokens")),
        "refused": step.get("refused") is True,
        "stopped_early": step.get("stopped_early") is True,
        "mistake": step.get("mistake") is True,
        "missing": [name for name in STEP_FIELDS if name not in step],
        "other": sorted((k, v) for k, v in step.items() if k not in STEP_KEYS),
    }


def rollout_view(rollout: Rollout) -> dict[str, Any]:
    """Everything the rollout page shows, with missing fields as None (the template says "not recorded")."""
    trace = rollout.trace or {}
    steps = [_step(i, s) for i, s in enumerate(steps_of(trace))]
    prompt = [{"role": as_text(m.get("role")) or "?", "content": m.get("content")} if isinstance(m, dict)
              else {"role": "?", "content": m} for m in _list(trace.get("prompt_messages"))]
    refused = []
    for entry in _list(trace.get("refused_writes")):
        entry = _dict(entry)
        step = entry.get("step")
        linkable = isinstance(step, int) and not isinstance(step, bool) and 0 <= step < len(steps)
        refused.append({"step": step, "anchor": f"step-{step}" if linkable else None,
                        "rel_path": entry.get("rel_path"), "reason": entry.get("reason"),
                        "other": sorted((k, v) for k, v in entry.items() if k not in {"step", "rel_path", "reason"})})
    rewards = trace.get("rewards")
    diff = trace.get("final_diff")
    metrics = _dict(trace.get("metrics"))
    readable = [s for s in steps if s["broken"] is None]
    tokens_in = sum(s["prompt_tokens"] or 0 for s in readable)
    tokens_out = sum(s["completion_tokens"] or 0 for s in readable)
    return {
        "task_id": rollout.task_id,
        "index": rollout.index,
        "key": rollout.key,
        "state": rollout.state,
        "css": css_token(rollout.state),
        "path": str(rollout.path) if rollout.path else None,
        "problem": rollout.problem,
        "missing": missing_fields(trace) if rollout.trace else [],
        "status": trace.get("status"),
        "stop_reason": trace.get("stop_reason"),
        "error": trace.get("error"),
        "tampered": trace.get("tampered"),
        "suspicious": [str(s) for s in _list(trace.get("suspicious"))],
        "facts": [(name, trace.get(name)) for name in (
            "rollout_id", "suite_id", "split", "provider", "model", "base_url", "adapter", "toolset", "tool_protocol",
            "test_policy", "seed", "prompt_version", "schema_version") if name in trace],
        "settings": [(name, trace.get(name)) for name in ("sampling", "decoding", "agent_config") if name in trace],
        "started": timestamp(trace.get("started_at")),
        "finished": timestamp(trace.get("finished_at")),
        "totals": {"steps": len(steps), "tokens_in": tokens_in, "tokens_out": tokens_out,
                   "model_time_s": round(sum(s["latency_s"] or 0 for s in readable), 3),
                   "wall_time_s": number(metrics.get("wall_time_s"))},
        "verdict": _verdict(trace),
        "has_verdict_key": "verdict" in trace,
        "rewards": sorted((str(k), v) for k, v in rewards.items()) if isinstance(rewards, dict) else None,
        "rewards_raw": rewards if rewards is not None and not isinstance(rewards, dict) else None,
        "refused_writes": refused,
        "has_refused_writes": "refused_writes" in trace,
        "final_diff": diff if isinstance(diff, str) else (None if diff is None else as_text(diff)),
        "has_final_diff": "final_diff" in trace,
        "metrics": sorted(metrics.items()),
        "prompt": prompt,
        "tools": trace.get("tools"),
        "steps": steps,
        "other": sorted((k, v) for k, v in trace.items() if k not in TRACE_KEYS),
    }

