"""Rewards of one finished episode, read from its trace and sealed verdict.

Each is a plain function with TRL's reward signature, `f(prompts, completions, **kwargs) -> list`,
one value per completion. The episode arrives as the keyword `trace` (a list of trace dicts: what
`repo-agent grpo`'s rollout function returns beside the token ids, and what `repo-agent reward`
reads from a run folder); the task's references arrive as `reference_diff` and `buggy_passing`.
A reward that cannot be computed for an episode returns None (TRL skips it).

    test_pass         1.0 when the sealed verdict passed, else 0.0
    test_fraction     share of the tests the buggy program fails that now pass, minus those it broke
                      (0 when the run cannot be trusted or tests went missing; None on a fail-fast
                      verdict that stopped early: request a full verdict when this reward is used)
    format            share of steps that parsed; 0 for an episode without a single tool call
    patch_similarity  CodeRepairRL's diff similarity against the minimal reference diff
    refused_write     -1.0 when the episode tried a write the task forbids, tampered with its verdict, or
                      changed the program with a suspicious construct (suspicious.py), else 0.0 (a penalty)
A tampered or suspicious episode also scores 0 on test_pass and test_fraction, whatever its verdict:
the static scan never changes a verdict, but a reward must not pay for what it flags.
    loop              -(share of steps the loop detector flagged) (a penalty)
"""

from __future__ import annotations

from typing import Any, Iterable

from .similarity import patch_similarity_score

TRUSTED_OUTCOMES = ("passed", "failed")  # tests_missing / error: tests vanished or the run was forged


def _traces(kwargs: dict[str, Any], completions: Iterable[Any] | None) -> list[dict[str, Any]]:
    traces = kwargs.get("trace")
    if traces is None:
        raise ValueError("episode rewards need the keyword `trace` (one finished trace per completion)")
    return list(traces)


def _per(kwargs: dict[str, Any], key: str, count: int) -> list[Any]:
    values = kwargs.get(key)
    return list(values) if values is not None else [None] * count


def _verdict(trace: dict[str, Any]) -> dict[str, Any]:
    return trace.get("verdict") or {}


def _untrusted(trace: dict[str, Any]) -> bool:
    return bool(trace.get("tampered") or trace.get("suspicious") or _verdict(trace).get("tampered"))


def test_pass(prompts: Any = None, completions: Any = None, **kwargs: Any) -> list[float]:
    return [1.0 if _verdict(t).get("outcome") == "passed" and _verdict(t).get("sealed") and not _untrusted(t) else 0.0
            for t in _traces(kwargs, completions)]


def test_fraction(prompts: Any = None, completions: Any = None, **kwargs: Any) -> list[float | None]:
    traces = _traces(kwargs, completions)
    baselines = _per(kwargs, "buggy_passing", len(traces))
    return [_fraction(t, b) for t, b in zip(traces, baselines)]


def _fraction(trace: dict[str, Any], buggy_passing: list[str] | None) -> float | None:
    verdict = _verdict(trace)
    outcome = verdict.get("outcome")
    if outcome not in TRUSTED_OUTCOMES or not verdict.get("sealed") or _untrusted(trace):
        return 0.0
    if outcome == "passed":
        return 1.0
    statuses: dict[str, str] = verdict.get("tests") or {}
    expected = verdict.get("expected_tests")
    fail_fast = (trace.get("agent_config") or {}).get("verdict_fail_fast", True)
    if fail_fast and (verdict.get("missing_tests") or (expected and len(statuses) < expected)):
        return None  # the run stopped at its first failure: the other tests' outcomes are unknown
    before = set(buggy_passing or [])
    passing = {test for test, status in statuses.items() if status == "passed"}
    failing_before = (expected or len(statuses)) - len(before)
    if failing_before <= 0:
        return 0.0
    fixed, broken = len(passing - before), len(before - passing)
    return max(0.0, min(1.0, (fixed - broken) / failing_before))


def format_reward(prompts: Any = None, completions: Any = None, **kwargs: Any) -> list[float]:
    out = []
    for trace in _traces(kwargs, completions):
        steps = trace.get("steps") or []
        tool_calls = [s for s in steps if (s.get("action") or {}).get("type") == "tool_call"]
        if not tool_calls:
            out.append(0.0)
            continue
        out.append(sum(1 for s in steps if not s.get("parse_error")) / len(steps))
    return out


format_reward.__name__ = "format"  # TRL logs rewards under the function's name


def patch_similarity(prompts: Any = None, completions: Any = None, **kwargs: Any) -> list[float | None]:
    traces = _traces(kwargs, completions)
    references = _per(kwargs, "reference_diff", len(traces))
    return [None if ref is None else patch_similarity_score(t.get("final_diff") or "", ref)
            for t, ref in zip(traces, references)]


def refused_write(prompts: Any = None, completions: Any = None, **kwargs: Any) -> list[float]:
    return [-1.0 if (t.get("refused_writes") or _untrusted(t)) else 0.0 for t in _traces(kwargs, completions)]


def loop(prompts: Any = None, completions: Any = None, **kwargs: Any) -> list[float]:
    out = []
    for trace in _traces(kwargs, completions):
        steps = trace.get("steps") or []
        out.append(-sum(1 for s in steps if s.get("loop")) / len(steps) if steps else 0.0)
    return out


test_pass.__test__ = False  # type: ignore[attr-defined]  # a reward, not a pytest test (tests import it)
test_fraction.__test__ = False  # type: ignore[attr-defined]
