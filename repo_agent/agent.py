"""The agent loop: one episode of one model on one task, recorded step by step in a trace.

The loop knows the protocol (parse a reply, answer with a [tool_result]), the limits and the test
policy; everything about the task (its workspace, tools, sandbox and the sealed verdict) belongs to the
environment, which the loop only asks to execute parsed actions and to judge the result.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from . import protocol as P
from .environments import Environment, open_environment
from .loops import LoopDetector
from .models.base import Model, ModelReply
from .prompts import goal_message
from .suites.rules import REFUSED_PROTECTED
from .suites.task import Suite, TaskSpec
from .suspicious import suspicious_constructs
from .verdict import verdict_outcome
from .toolsets import toolset_named
from .traces import TraceWriter, new_trace

TEST_POLICIES = ("never", "on_write", "final")
LOOP_POLICIES = ("warn", "stop", "off")
LOOP_WARNING = "[loop_warning] You repeated an earlier action and got the same result. Do something different."


@dataclass(frozen=True)
class AgentConfig:
    max_iters: int = 20
    tool_protocol: str = "json"  # json | native
    test_policy: str = "never"  # never | on_write | final
    loop_policy: str = "warn"  # warn | stop | off
    loop_window: int = 6
    verdict_fail_fast: bool = True  # the final verdict may stop at the first failing test
    sandbox: str = "auto"  # auto | bwrap | none: how test runs (and bash commands) are contained
    toolset: str = "files"  # files | edit | bash (toolsets.py)


def run_episode(suite: Suite, task: TaskSpec, llm: Model, config: AgentConfig, trace_path: Path, *,
                open_env: Callable[..., Environment] = open_environment, **meta: Any) -> dict[str, Any]:
    """Run one rollout; never raises for model or tool failures. Returns the finished trace.
    `open_env(suite, task, toolset, sandbox)` makes the environment (another implementation, or a
    wrapper that measures one, plugs in here)."""
    native = config.tool_protocol == "native"
    toolset = toolset_named(config.toolset)
    tools = toolset.openai_tools() if native else None
    prompt = [{"role": "system", "content": toolset.system_prompt(config.tool_protocol)},
              {"role": "user", "content": goal_message(task.goal)}]
    writer = TraceWriter(trace_path, new_trace(
        task_id=task.task_id, suite_id=suite.suite_id, split=task.split, **({"split_key": task.split_key} if task.split_key else {}),
        toolset=toolset.name,
        prompt_version=toolset.prompt_version, agent_config=asdict(config), tools=tools, prompt_messages=prompt,
        started_at=time.time(), **meta))
    started = time.monotonic()
    messages = [dict(m) for m in prompt]
    loops = LoopDetector(config.loop_window)
    stop_reason, error, report, env = "max_iters", None, None, None
    refused: list[dict[str, Any]] = []
    final_diff, ignored, suspicious = "", [], []
    try:
        env = open_env(suite, task, toolset.name, config.sandbox)
        dirty = True  # the workspace changed since `report` was measured
        for index in range(config.max_iters):
            reply = llm.complete(messages, tools)
            if reply.error:
                stop_reason, error = reply.stop_reason or "model_error", reply.error
                break
            action = toolset.parse(reply.content, reply.tool_calls, native=native, stopped_early=reply.stopped_early)
            step = _new_step(index, reply, action, native)
            if isinstance(action, P.ParseError):
                body = toolset.parse_error_feedback(action, native)
            elif toolset.ends_episode(action):
                if config.test_policy != "final":
                    stop_reason = "final"
                    writer.add_step(step)
                    break
                report, dirty = env.run_tests(), False
                step["test_snippet"] = report.snippet()
                if report.ok:
                    stop_reason = "final"
                    writer.add_step(step)
                    break
                body = step["test_snippet"]
            else:
                outcome = env.execute(action)
                step["tool_ok"], body = outcome.ok, outcome.text
                if outcome.refused:
                    step["refused"] = outcome.refused
                    refused += [{"step": index, "rel_path": path, "reason": outcome.refused} for path in outcome.refused_paths]
                if outcome.changed:
                    step["changed_files"] = list(outcome.changed)
                    dirty = True
                    if config.test_policy == "on_write":
                        report, dirty = env.run_tests(), False
                        step["test_snippet"] = report.snippet()
                        body = f"{body}\n{step['test_snippet']}"
            step["tool_output"] = body
            step["loop"] = loops.observe(_loop_key(action, reply), body)
            if step["loop"] and config.loop_policy == "warn":
                body = f"{body}\n{LOOP_WARNING}"
            step["result_message"] = _result_message(body, step["assistant_message"], native)
            writer.add_step(step)
            messages += [step["assistant_message"], step["result_message"]]
            if step["loop"] and config.loop_policy == "stop":
                stop_reason = "loop"
                break
        if report is None or dirty:
            report = env.run_tests(fail_fast=config.verdict_fail_fast)
        final_diff, ignored = env.final_diff(), env.ignored_changes()
        suspicious = suspicious_constructs(env.changed_texts(), _reference_texts(suite, task))
    except Exception:
        stop_reason, error = "harness_error", traceback.format_exc(limit=8)
    finally:
        if env is not None:
            env.close()
    verdict = report.to_dict() if report else None
    tampered = any(r["reason"] == REFUSED_PROTECTED for r in refused) or bool((verdict or {}).get("tampered"))
    writer.finish(stop_reason=stop_reason, error=error, verdict=verdict, final_diff=final_diff,
                  refused_writes=refused, tampered=tampered, suspicious=suspicious,
                  ignored_changes=ignored, finished_at=time.time(),
                  metrics=episode_metrics(writer.trace["steps"], verdict, time.monotonic() - started, suspicious))
    return writer.trace


def _reference_texts(suite: Suite, task: TaskSpec) -> dict[str, str]:
    """The reference fix's files (what `suspicious` may add without blame); {} when unreadable."""
    try:
        return suite.reference_text(task)
    except (OSError, UnicodeDecodeError):
        return {}


def _loop_key(action: P.Action | P.ParseError, reply: ModelReply) -> str:
    """What counts as "the same action": the parsed action (never a tool-call id), else the raw reply."""
    if not isinstance(action, P.ParseError):
        return P.render_action(action)
    calls = [(c.get("function") or {}) for c in (reply.tool_calls or []) if isinstance(c, dict)]
    return reply.content + repr([(f.get("name"), f.get("arguments")) for f in calls])


def _new_step(index: int, reply: ModelReply, action: P.Action | P.ParseError, native: bool) -> dict[str, Any]:
    assistant: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if native and reply.tool_calls:
        assistant["tool_calls"] = reply.tool_calls[:1]  # one call per turn; extras are answered as an error
    parse_error = {"kind": action.kind, "detail": action.detail} if isinstance(action, P.ParseError) else None
    step = {
        "index": index,
        "raw_output": reply.content,
        "raw_tool_calls": reply.tool_calls,
        "assistant_message": assistant,
        "action": None if parse_error else P.action_to_dict(action),
        "parse_error": parse_error,
        "tool_ok": None,
        "refused": None,
        "tool_output": None,
        "test_snippet": None,
        "loop": None,
        "result_message": None,
        "latency_s": round(reply.latency_s, 4),
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "stopped_early": reply.stopped_early,
    }
    if reply.mistake:  # a teacher's deliberate wrong fix (oracle --oracle-mistake-rate): never a training target
        step["mistake"] = True
    return step


def _result_message(body: str, assistant: dict[str, Any], native: bool) -> dict[str, Any]:
    content = P.tool_result_message(body)
    if native and assistant.get("tool_calls"):
        return {"role": "tool", "tool_call_id": assistant["tool_calls"][0].get("id", "call_0"), "content": content}
    return {"role": "user", "content": content}


def episode_metrics(steps: list[dict[str, Any]], verdict: dict[str, Any] | None, wall_time_s: float,
                    suspicious: list[str] | None = None) -> dict[str, Any]:
    parse_errors = [s["parse_error"]["kind"] for s in steps if s.get("parse_error")]
    tool_names = [s["action"]["name"] for s in steps if s.get("action") and s["action"]["type"] == "tool_call"]
    kinds: dict[str, int] = {}
    for kind in parse_errors:
        kinds[kind] = kinds.get(kind, 0) + 1
    outcome = verdict_outcome(verdict)
    refused = [s["refused"] for s in steps if s.get("refused")]
    return {
        "passed": outcome == "passed",
        "outcome": outcome,
        "steps": len(steps),
        "parse_errors": len(parse_errors),
        "parse_error_rate": round(len(parse_errors) / len(steps), 4) if steps else 0.0,
        "parse_error_kinds": kinds,
        "tool_calls": {name: tool_names.count(name) for name in sorted(set(tool_names))},
        "tool_errors": sum(1 for s in steps if s.get("tool_ok") is False),
        "refused_writes": len(refused),
        "tampered": REFUSED_PROTECTED in refused or bool((verdict or {}).get("tampered")),
        "suspicious": bool(suspicious),
        "wrote_file": "write_file" in tool_names,
        "modified_files": any(s.get("changed_files") for s in steps),
        "loop_detections": sum(1 for s in steps if s.get("loop")),
        "tokens_in": sum(s.get("prompt_tokens") or 0 for s in steps),
        "tokens_out": sum(s.get("completion_tokens") or 0 for s in steps),
        "model_time_s": round(sum(s.get("latency_s") or 0 for s in steps), 3),
        "wall_time_s": round(wall_time_s, 3),
    }

