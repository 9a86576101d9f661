"""The provider interface: messages in, one reply out; failures become data, never exceptions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ..suites.task import Suite, TaskSpec


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
    finish_reason: str | None = None
    stopped_early: bool = False  # generation stopped because the reply could no longer become a valid action


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
    early_stop: bool = True  # stop a JSON-protocol reply once it cannot parse (protocol_prefix.py)
    constrained: str | None = None  # None, or "json": decode under the JSON schema of the action union


PROVIDERS = ("scripted", "oracle", "openai", "together", "local")
CONSTRAINED_MODES = ("json",)
# Who can stop a reply early (local generation, streamed OpenAI-compatible replies, replayed scripts;
# the oracle only writes valid actions, so the flag holds for it trivially; Together's replies are not
# streamed) and who can constrain decoding (a grammar locally, `response_format` for a server).
EARLY_STOP_PROVIDERS = ("local", "openai", "scripted", "oracle")
CONSTRAINED_PROVIDERS = ("local", "openai")


def decoding_record(config: ProviderConfig, tool_protocol: str) -> dict[str, Any]:
    """What a trace records as its `decoding`: whether replies could be stopped early and under which
    constraint they were decoded. Both apply to the JSON protocol only, and only where the provider
    can do them (Together replies are never stopped early)."""
    json_protocol = tool_protocol == "json"
    return {"early_stop": bool(config.early_stop and json_protocol and config.provider in EARLY_STOP_PROVIDERS),
            "constrained": config.constrained if json_protocol else None}


def build_model(config: ProviderConfig, *, suite: Suite, task: TaskSpec, seed: int) -> Model:
    """One model instance per rollout (cheap; remote clients and local weights are shared inside)."""
    if config.provider == "scripted":
        from .scripted import ScriptedModel

        return ScriptedModel.from_name(config.script or config.model, early_stop=config.early_stop)
    if config.provider == "oracle":
        from .oracle import OracleModel

        return OracleModel(suite=suite, task=task, seed=seed)
    if config.provider == "openai":
        from .openai_compat import OpenAIModel

        return OpenAIModel(config, seed=seed)
    if config.provider == "together":
        from .together_api import TogetherModel

        return TogetherModel(config, seed=seed)
    if config.provider == "local":
        from .local_hf import LocalModel

        return LocalModel(config, seed=seed)
    raise ValueError(f"unknown provider {config.provider!r}; choose one of {', '.join(PROVIDERS)}")
