"""Any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, SGLang, llama.cpp, Ollama,
`transformers serve`) through the `openai` SDK. Retries of 429/5xx/timeouts/dropped connections are the
SDK's own (exponential backoff, bounded by `max_retries`); a final failure becomes `ModelReply.error`.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any, Callable

from .base import ModelReply, ProviderConfig


def resolve_api_key(config: ProviderConfig, default_env: str) -> str:
    env_name = config.api_key_env or default_env
    key = os.environ.get(env_name)
    if key:
        return key
    if config.base_url and ("127.0.0.1" in config.base_url or "localhost" in config.base_url):
        return "not-needed-for-local-servers"
    raise ValueError(f"no API key: set the environment variable {env_name} (keys are never read from flags or files)")


@functools.lru_cache(maxsize=16)
def _shared_client(base_url: str | None, api_key: str, max_retries: int, timeout_s: float) -> Any:
    """One client (and connection pool) per endpoint, shared by all rollouts: building one costs ~50 ms."""
    import openai

    return openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=max_retries, timeout=timeout_s)


class OpenAIModel:
    def __init__(self, config: ProviderConfig, seed: int):
        self.config = config
        self.seed = seed
        self.client = _shared_client(config.base_url, resolve_api_key(config, "OPENAI_API_KEY"),
                                     config.max_retries, config.timeout_s)

    def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> ModelReply:
        import openai

        return chat_reply(self.client, self.config, self.seed, messages, tools, openai.APIError)


def chat_reply(client: Any, config: ProviderConfig, seed: int, messages: list[dict[str, Any]],
               tools: list[dict[str, Any]] | None, api_error: type[Exception],
               scrub: Callable[[str], str] = lambda text: text) -> ModelReply:
    """One chat-completions call with an OpenAI-shaped SDK (openai, together); failures become data."""
    sampling = config.sampling
    kwargs: dict[str, Any] = dict(model=config.model, messages=messages, temperature=sampling.temperature,
                                  top_p=sampling.top_p, max_tokens=sampling.max_tokens, seed=seed)
    if tools:
        kwargs["tools"] = tools
    started = time.monotonic()
    try:
        response = client.chat.completions.create(**kwargs)
    except api_error as exc:
        return ModelReply(content="", latency_s=time.monotonic() - started, error=scrub(describe_api_error(exc)))
    return reply_from_openai(response, time.monotonic() - started)


def describe_api_error(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    text = str(exc).splitlines()[0][:300] if str(exc) else ""
    prefix = f"{type(exc).__name__}: HTTP {status}" if status else type(exc).__name__
    return f"{prefix}: {text}" if text else prefix


def reply_from_openai(response: Any, latency_s: float) -> ModelReply:
    """Works for the openai and together SDKs: both return the OpenAI response shape."""
    if not getattr(response, "choices", None):
        return ModelReply(content="", latency_s=latency_s, error="the server returned no choices")
    choice = response.choices[0]
    message = choice.message
    if message is None:  # Together allows a choice without a message
        return ModelReply(content="", latency_s=latency_s, error="the server returned a choice without a message")
    tool_calls = None
    if getattr(message, "tool_calls", None):
        tool_calls = [
            {"id": c.id, "type": "function", "function": {"name": c.function.name, "arguments": c.function.arguments}}
            for c in message.tool_calls
        ]
    usage = getattr(response, "usage", None)
    return ModelReply(
        content=message.content or "",
        tool_calls=tool_calls,
        prompt_tokens=getattr(usage, "prompt_tokens", None),
        completion_tokens=getattr(usage, "completion_tokens", None),
        latency_s=latency_s,
        finish_reason=getattr(choice, "finish_reason", None),
    )
