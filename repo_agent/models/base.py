"""The provider interface: messages in, one reply out; failures become data, never exceptions."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 1024


@dataclass
class ModelReply:
    content: str
    tool_calls: list[dict[str, Any]] | None = None  # OpenAI-shaped, native protocol only
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float = 0.0
    error: str | None = None  # set when the provider gave up: the episode records it and stops
    stop_reason: str | None = None  # with `error`: the episode's stop reason instead of model_error (e.g. token_budget)
    finish_reason: str | None = None
    mistake: bool = False  # a teacher's deliberate wrong fix: the step is marked and never a training target
    stopped_early: bool = False  # generation stopped because the reply could no longer become a valid action


@dataclass(frozen=True)
class TeacherOptions:
    """How a teacher makes data that teaches fixing (recorded with the provider in a run's config).

    mistake_rate: the oracle writes a proven-wrong fix first in this share of rollouts, then recovers.
    branch_pairs: rollouts 2i and 2i+1 of a task share their conversation up to the first write and
    diverge there (the oracle: one writes a mistake, the other the fix; any other provider: the
    follower re-asks its own model, seeded differently, at that step), so the two writes are an exact
    preference pair with a recorded outcome each.
    """

    mistake_rate: float = 0.0
    branch_pairs: bool = False


class Model(Protocol):
    def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> ModelReply: ...


@dataclass(frozen=True)
class ProviderConfig:
    """Everything needed to build a model for one rollout. Never holds a secret: keys come from env."""

    provider: str
    model: str
    sampling: Sampling = field(default_factory=Sampling)
    base_url: str | None = None
    api_key_env: str | None = None  # name of the environment variable holding the key
    timeout_s: float = 120.0
    max_retries: int = 4
    adapter: str | None = None  # local provider: PEFT adapter folder
    script: str | None = None  # scripted provider: JSON/JSONL file of replies
    teacher: TeacherOptions | None = None  # None: no mistakes, no branching (older run configs lack it)
    early_stop: bool = True  # stop a JSON-protocol reply once it cannot parse (protocol_prefix.py)
    constrained: str | None = None  # None, or "json": decode under the JSON schema of the action union


PROVIDERS = ("scripted", "oracle", "openai", "together", "local")
CONSTRAINED_MODES = ("json",)
# Who can stop a reply early (local generation, streamed OpenAI-compatible replies, replayed scripts;
# the oracle only writes valid actions, so the flag holds for it trivially; Together's replies are not
# streamed) and who can constrain decoding (a grammar locally, `response_format` for a server).
EARLY_STOP_PROVIDERS = ("local", "openai", "scripted", "oracle")
CONSTRAINED_PROVIDERS = ("local", "openai")


def trace_meta(config: ProviderConfig, tool_protocol: str, test_policy: str) -> dict[str, Any]:
    """What every trace records about the model that produced it (never a key: keys live in the env)."""
    return {"provider": config.provider, "model": config.model, "base_url": config.base_url, "adapter": config.adapter,
            "tool_protocol": tool_protocol, "test_policy": test_policy, "sampling": asdict(config.sampling),
            "decoding": decoding_record(config, tool_protocol)}


def decoding_record(config: ProviderConfig, tool_protocol: str) -> dict[str, Any]:
    """What a trace records as its `decoding`: whether replies could be stopped early and under which
    constraint they were decoded. Both apply to the JSON protocol only, and only where the provider
    can do them (Together replies are never stopped early)."""
    json_protocol = tool_protocol == "json"
    return {"early_stop": bool(config.early_stop and json_protocol and config.provider in EARLY_STOP_PROVIDERS),
            "constrained": config.constrained if json_protocol else None}
