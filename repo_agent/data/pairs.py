"""Step-level preference pairs: two next actions taken from the SAME conversation state.

Two rollouts of one task are at the same state at step k when everything the model saw before step k
is identical (same prompt, tools, earlier replies and tool results). Each rollout is summarised in one
pass as a chain of hashes: h0 = hash(tools, prompt), h(k+1) = hash(h(k), reply k, result k). Rollouts
with equal h(k) shared the state; where their step-k outputs differ a pair may be mined:

- validity: one side's output was a parse error or a tool call that failed (a refused write among
  them), the other a valid call; the valid one wins.
- loops: both valid, one repeated itself (the loop detector fired), the other did not; progress wins.
- divergence: both valid, neither looping: the tests the driver ran after the step passed on one side
  and failed on the other (test policy on_write: after a write; final: after final); the passing side
  wins. Failing that, the better rollout's action wins (passed beats failed, then fewer remaining
  steps), but only when `min_gap` allows it.
A winner is always a valid, non-looping action that is not a teacher's deliberate mistake; two bad
outputs never make a pair.

Every pair names its outcome gap, the recorded outcome that differs between its two sides: `tests`,
`parse_error`, `refused`, `tool_error`, `loop` (outcomes of that very step), `rollout` (only the final
verdicts of the two rollouts differ) or `remaining_steps` (both rollouts ended alike; one was shorter).
`min_gap` keeps `step` gaps only (the default), also `rollout` gaps, or everything (`none`): pairs
whose sides differ only in exploration arguments or remaining steps teach nothing about fixing, so by
default they are dropped and counted as `no_outcome_gap`.

Several rollouts may take the same action at a state: the action is represented by the best rollout
that took it (passed first, then fewest remaining steps), so each distinct (chosen, rejected) appears
once per state. Pass 1 keeps only hashes; pass 2 re-reads the few traces a pair needs (small LRU cache),
so memory does not grow with the size of the traces.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from .. import protocol as P
from ..traces import read_trace
from .export import AtomicJsonl, dumps_line, pair_exporter
from .rows import PreferencePair
from .sft import (HeldOutGuard, emitted_message, iter_states, read_traces, rollout_passed, rollout_untrusted, step_action,
                  step_target, tools_for)
from .stats import DataStats

SOURCES = ("divergence", "validity", "loops")
GAP_LEVELS = ("step", "rollout", "none")  # --min-outcome-gap: the weakest outcome gap a pair may have
STEP_GAPS = ("tests", "parse_error", "refused", "tool_error", "loop")


@dataclass(frozen=True)
class StepInfo:
    prefix: bytes  # hash of the conversation before this step
    output: bytes  # hash of what the model did: its canonical action, or its raw reply if unparseable
    kind: str  # valid | parse_error | tool_error
    detail: str  # the tool name, or the parse-error kind
    loop: str | None  # repeat | cycle | None
    tests: str | None = None  # pass | fail: the driver's tests right after this step (None: none ran)
    refused: str | None = None  # protected | new_file: the task refused this write
    mistake: bool = False  # a teacher's deliberate wrong fix (never a winner)


@dataclass(frozen=True)
class RolloutInfo:
    path: str  # relative to the trace dir
    task_id: str
    rollout_id: str
    passed: bool
    steps: tuple[StepInfo, ...]
    decoding: dict[str, Any] | None = None  # the trace's decoding label (early stop, constraint), if recorded
    untrusted: bool = False  # tampered or suspicious (sft.rollout_untrusted): its steps never win

    def remaining(self, k: int) -> int:
        return len(self.steps) - k


def _hash(*parts: str | bytes) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part if isinstance(part, bytes) else part.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.digest()


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def summarize(trace: dict[str, Any], rel_path: str) -> RolloutInfo:
    """Pass 1: the per-step hashes and outcomes of one rollout (no message text is kept)."""
    prefix = _hash(_canon(trace.get("tools")), _canon(trace["prompt_messages"]))
    infos: list[StepInfo] = []
    for step in trace["steps"]:
        action = step_action(step)
        if action is None:
            kind = "parse_error"
            detail = (step.get("parse_error") or {}).get("kind") or "invalid"
            output = _hash("E", _canon(step.get("assistant_message")))
        else:
            kind = "tool_error" if step.get("tool_ok") is False else "valid"
            detail = action.name if isinstance(action, P.ToolCall) else "final"
            output = _hash("A", P.render_action(action))
        infos.append(StepInfo(prefix, output, kind, detail, step.get("loop") or None, step_tests(step),
                              step.get("refused") or None, bool(step.get("mistake"))))
        if step.get("result_message") is None:
            break
        prefix = _hash(prefix, _canon(step.get("assistant_message")), _canon(step.get("result_message")))
    return RolloutInfo(rel_path, trace["task_id"], str(trace.get("rollout_id") or Path(rel_path).stem),
                       rollout_passed(trace), tuple(infos), trace.get("decoding"), rollout_untrusted(trace))


def step_tests(step: dict[str, Any]) -> str | None:
    """pass / fail from the [TESTS PASS] / [TESTS FAIL] snippet the driver recorded for the step."""
    snippet = step.get("test_snippet") or ""
    if snippet.startswith("[TESTS PASS]"):
        return "pass"
    if snippet.startswith("[TESTS FAIL]"):
        return "fail"
    return None


@dataclass(frozen=True)
class Side:
    rollout: RolloutInfo
    step: StepInfo
    sharing: int  # how many rollouts at this state produced this same output

    def outcome_key(self, k: int) -> tuple:
        return (not self.rollout.passed, self.rollout.remaining(k), self.rollout.path)

    def describe(self, k: int) -> dict[str, Any]:
        described = {"rollout_id": self.rollout.rollout_id, "trace": self.rollout.path, "passed": self.rollout.passed,
                     "remaining_steps": self.rollout.remaining(k), "kind": self.step.kind, "detail": self.step.detail,
                     "loop": self.step.loop, "rollouts_with_this_output": self.sharing, "tests": self.step.tests,
                     "refused": self.step.refused, "mistake": self.step.mistake}
        if self.rollout.decoding is not None:
            described["decoding"] = self.rollout.decoding
        return described


@dataclass(frozen=True)
class PairPlan:
    task_id: str
    step_index: int
    source: str
    reason: str
    chosen: Side
    rejected: Side
    state_rollouts: int
    gap: str  # the outcome that differs between the two sides (see the module docstring)


def judge(a: Side, b: Side, k: int, min_gap: str = "step", allow_untrusted: bool = False) -> tuple[str, Side, Side, str, str] | str:
    """(source, winner, loser, reason, outcome gap), or the reason no pair is made. A winner is always a
    valid call that did not loop and is no deliberate mistake: a repeated action never wins, not even
    against a parse error; nor does a step of a tampered or suspicious rollout (unless allowed)."""
    verdict = _judge(a, b, k, min_gap)
    if not isinstance(verdict, str) and verdict[1].step.mistake:
        return "mistake_never_wins"
    if not isinstance(verdict, str) and verdict[1].rollout.untrusted and not allow_untrusted:
        return "untrusted_never_wins"
    return verdict


def _judge(a: Side, b: Side, k: int, min_gap: str) -> tuple[str, Side, Side, str, str] | str:
    a_ok, b_ok = a.step.kind == "valid", b.step.kind == "valid"
    if not a_ok and not b_ok:
        return "both_invalid"
    if a_ok != b_ok:
        win, lose = (a, b) if a_ok else (b, a)
        if win.step.loop:
            return "both_bad"
        gap = "parse_error" if lose.step.kind == "parse_error" else ("refused" if lose.step.refused else "tool_error")
        what = f"a refused write ({lose.step.refused})" if gap == "refused" else f"a {lose.step.kind} ({lose.step.detail})"
        return "validity", win, lose, f"a valid {win.step.detail} call beats {what}", gap
    if a.step.loop and b.step.loop:
        return "both_bad"
    if bool(a.step.loop) != bool(b.step.loop):
        win, lose = (b, a) if a.step.loop else (a, b)
        return "loops", win, lose, f"{win.step.detail} made progress where the other side repeated itself ({lose.step.loop})", "loop"
    if a.step.tests and b.step.tests and a.step.tests != b.step.tests:
        win, lose = (a, b) if a.step.tests == "pass" else (b, a)
        return ("divergence", win, lose, f"the tests passed after this {win.step.detail}; after the other "
                f"{lose.step.detail} they failed", "tests")
    ka, kb = a.outcome_key(k)[:2], b.outcome_key(k)[:2]
    if ka == kb:
        return "tie"
    win, lose = (a, b) if ka < kb else (b, a)
    if win.rollout.passed != lose.rollout.passed:
        if min_gap == "step":
            return "no_outcome_gap"
        return "divergence", win, lose, "its rollout passed, the other failed", "rollout"
    if min_gap != "none":
        return "no_outcome_gap"
    return "divergence", win, lose, (f"both {'passed' if win.rollout.passed else 'failed'}; it needed "
                                     f"{lose.rollout.remaining(k) - win.rollout.remaining(k)} fewer remaining steps"), "remaining_steps"


def plan_pairs(rollouts: list[RolloutInfo], sources: tuple[str, ...], stats: DataStats, min_gap: str = "step",
               allow_untrusted: bool = False) -> list[PairPlan]:
    """Compare every state shared by two or more rollouts of one task."""
    states: dict[tuple[str, bytes], list[tuple[RolloutInfo, int]]] = {}
    for rollout in rollouts:
        for k, step in enumerate(rollout.steps):
            states.setdefault((rollout.task_id, step.prefix), []).append((rollout, k))
    plans: list[PairPlan] = []
    for (task_id, _), members in states.items():
        if len(members) < 2:
            continue
        stats.states_compared += 1
        by_output: dict[bytes, list[tuple[RolloutInfo, int]]] = {}
        for rollout, k in members:
            by_output.setdefault(rollout.steps[k].output, []).append((rollout, k))
        if len(by_output) < 2:
            continue
        k = members[0][1]  # equal prefix hashes imply equal step indices
        sides = []
        for group in by_output.values():
            best = min(group, key=lambda rk: (rk[0].untrusted and not allow_untrusted, not rk[0].passed,
                                              rk[0].remaining(rk[1]), rk[0].path))
            sides.append(Side(best[0], best[0].steps[best[1]], len(group)))
        sides.sort(key=lambda s: s.outcome_key(k))
        for i, a in enumerate(sides):
            for b in sides[i + 1:]:
                verdict = judge(a, b, k, min_gap, allow_untrusted)
                if isinstance(verdict, str):
                    stats.remove(verdict)
                    continue
                source, win, lose, reason, gap = verdict
                if source not in sources:
                    stats.remove(f"source_not_selected:{source}")
                    continue
                plans.append(PairPlan(task_id, k, source, reason, win, lose, len(members), gap))
    return plans


class TraceCache:
    """A few recently read traces (pairs of one task sit next to each other, so this is enough)."""

    def __init__(self, trace_dir: Path, size: int = 16):
        self.trace_dir, self.size = Path(trace_dir), size
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def get(self, rel_path: str) -> dict[str, Any]:
        if rel_path in self._items:
            self._items.move_to_end(rel_path)
            return self._items[rel_path]
        trace = read_trace(self.trace_dir / rel_path)
        self._items[rel_path] = trace
        if len(self._items) > self.size:
            self._items.popitem(last=False)
        return trace


def _conversation_before(trace: dict[str, Any], k: int, fmt: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    for index, step, messages in iter_states(trace, fmt):
        if index == k:
            return list(messages), step
    raise ValueError(f"trace has no step {k}")


def render_pair(plan: PairPlan, cache: TraceCache, fmt: str) -> PreferencePair:
    """Pass 2: the prompt (from the winner's trace) and both outputs, rendered in `fmt`."""
    k = plan.step_index
    win_trace = cache.get(plan.chosen.rollout.path)
    prompt, win_step = _conversation_before(win_trace, k, fmt)
    lose_trace = cache.get(plan.rejected.rollout.path)
    lose_step = lose_trace["steps"][k]
    chosen = step_target(win_step, win_trace, fmt)
    rejected = step_target(lose_step, lose_trace, fmt) or emitted_message(lose_step, lose_trace, fmt)
    assert chosen is not None  # the winner is always a valid action
    meta = {"task_id": plan.task_id, "step_index": k, "source": plan.source, "reason": plan.reason,
            "outcome_gap": plan.gap, "state_rollouts": plan.state_rollouts, "chosen": plan.chosen.describe(k),
            "rejected": plan.rejected.describe(k)}
    return PreferencePair(prompt, chosen, rejected, tools_for(win_trace, fmt), meta)


def extract_pairs(trace_dir: Path, output: Path, meta_output: Path, fmt: str, sources: tuple[str, ...], *,
                  held_out: HeldOutGuard = HeldOutGuard(), on_trace: Callable[[], None] | None = None,
                  min_gap: str = "step", allow_suspicious: bool = False) -> tuple[DataStats, AtomicJsonl, AtomicJsonl]:
    """Mine pairs into uncommitted writers (data, sidecar); the caller validates and commits both."""
    if min_gap not in GAP_LEVELS:
        raise ValueError(f"min_gap must be one of {', '.join(GAP_LEVELS)}, got {min_gap!r}")
    stats = DataStats(kind="pairs", output=str(output), fmt=fmt, min_outcome_gap=min_gap)
    rollouts: list[RolloutInfo] = []
    for rel_path, trace in read_traces(Path(trace_dir), stats, held_out):
        rollouts.append(summarize(trace, rel_path))
        stats.steps_seen += len(trace["steps"])
        if on_trace:
            on_trace()
    plans = plan_pairs(rollouts, sources, stats, min_gap, allow_suspicious)
    export = pair_exporter(fmt)
    cache = TraceCache(trace_dir)
    seen: set[bytes] = set()
    data, meta = AtomicJsonl(output), AtomicJsonl(meta_output)
    try:
        for pair in _rendered(plans, cache, fmt):
            line = dumps_line(export(pair))
            digest = hashlib.blake2b(line.encode("utf-8"), digest_size=16).digest()
            if digest in seen:
                stats.remove("duplicate")
                continue
            seen.add(digest)
            data.write_line(line)
            meta.write({"pair_index": data.count - 1, **pair.meta})
            stats.keep(pair.meta["task_id"], pair.meta["source"], len(line))
            stats.outcome_gaps[pair.meta["outcome_gap"]] += 1
    except BaseException:
        data.discard()
        meta.discard()
        raise
    return stats, data, meta


def _rendered(plans: list[PairPlan], cache: TraceCache, fmt: str) -> Iterator[PreferencePair]:
    for plan in plans:
        yield render_pair(plan, cache, fmt)
