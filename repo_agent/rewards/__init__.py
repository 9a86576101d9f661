"""Rewards: plain functions with TRL's reward signature (`prompts, completions, **kwargs -> list`).

Episode rewards (episode.py) score a finished agent episode from its trace and sealed verdict; the code
reward (code.py) scores a single-turn completion by running tests in the sandbox. `parse_weights`
reads the command line's `name=weight,...`; `composite` is the weighted sum TRL computes from
`reward_weights` (rewards that are None count as 0, as TRL's nansum does).
"""

from __future__ import annotations

import math
from typing import Any, Callable

from .code import code_tests
from .episode import format_reward, loop, patch_similarity, refused_write, test_fraction, test_pass

RewardFunction = Callable[..., list]
EPISODE_REWARDS: dict[str, RewardFunction] = {
    "test_pass": test_pass, "test_fraction": test_fraction, "format": format_reward,
    "patch_similarity": patch_similarity, "refused_write": refused_write, "loop": loop,
}
CODE_REWARDS: dict[str, RewardFunction] = {"code_tests": code_tests}
DEFAULT_EPISODE_WEIGHTS = "test_pass=1,test_fraction=0.3,patch_similarity=0.2,format=0.1,refused_write=0.2,loop=0.1"


def parse_weights(text: str, known: dict[str, RewardFunction]) -> dict[str, float]:
    """'test_pass=1,format=0.1' -> {"test_pass": 1.0, "format": 0.1}; a bare name weighs 1."""
    weights: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in known:
            raise ValueError(f"unknown reward {name!r}; choose from {', '.join(known)}")
        try:
            weight = float(value) if value.strip() else 1.0
        except ValueError:
            raise ValueError(f"reward weight of {name!r} is not a number: {value!r}") from None
        if not math.isfinite(weight):
            raise ValueError(f"reward weight of {name!r} must be finite")
        weights[name] = weight
    if not weights:
        raise ValueError("no reward given (e.g. --reward test_pass=1,patch_similarity=0.2,format=0.1)")
    return weights


def composite(columns: dict[str, list[Any]], weights: dict[str, float]) -> list[float]:
    """Weighted sum per row over the reward columns (None counts 0)."""
    rows = len(next(iter(columns.values()))) if columns else 0
    return [sum(weights[name] * (columns[name][i] or 0.0) for name in weights) for i in range(rows)]


def needs_full_verdict(weights: dict[str, float]) -> bool:
    """test_fraction counts every test: the end-of-episode verdict must not stop at the first failure."""
    return bool(weights.get("test_fraction"))
