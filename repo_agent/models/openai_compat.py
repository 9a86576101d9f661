"""Any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, SGLang, llama.cpp, Ollama,
`transformers serve`) through the `openai` SDK. Retries of 429/5xx/timeouts/dropped connections are the
SDK's own (exponential backoff, bounded by `max_retries`); a final failure becomes `ModelReply.error`.

JSON-protocol replies are streamed (`stream=True`) so that the stream can be closed as soon as the
reply is decided (protocol_prefix.ReplyStop): at the end of its first complete JSON object (one action
per reply) or, with early stop, when it can no longer become a valid action. Closing the stream drops
the connection; a server that notices stops generating (`transformers serve` did, tried here). With
`constrained="json"` the request carries `response_format` with the JSON schema of the action union.
Native-protocol replies (function calling) are not streamed.
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
    def __init__(self, config: ProviderConfig, seed: int, tool_schemas: dict[str, Any] | None = None):
        self.config = config
        self.seed = seed
        self.tool_schemas = tool_schemas  # the tool set a constrained reply must fit (default: files)
        self.client = _shared_client(config.base_url, resolve_api_key(config, "OPENAI_API_KEY"),
                                     config.max_retries, config.timeout_s)

    def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> ModelReply:
        import openai

        if tools:
            return chat_reply(self.client, self.config, self.seed, messages, tools, openai.APIError)
        return streamed_reply(self.client, self.config, self.seed, messages, openai.APIError, self.tool_schemas)


def response_format(constrained: str | None, tool_schemas: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The `response_format` of a constrained JSON-protocol request (OpenAI's json_schema shape, which
    vLLM, SGLang and llama.cpp's server accept), or None for free decoding."""
    if constrained != "json":
        return None
    from ..protocol import TOOL_SCHEMAS, action_json_schema

    return {"type": "json_schema",
            "json_schema": {"name": "repo_agent_action", "schema": action_json_schema(tool_schemas or TOOL_SCHEMAS)}}


def streamed_reply(client: Any, config: ProviderConfig, seed: int, messages: list[dict[str, Any]],
                   api_error: type[Exception], tool_schemas: dict[str, Any] | None = None) -> ModelReply:
    """One streamed JSON-protocol reply, closed as soon as ReplyStop decides it.

    Usage comes in the stream's last chunk (`stream_options.include_usage`); a reply closed before it
    has no prompt-token count (None) and counts one completion token per content chunk received,
    which is what token-by-token servers send. A server that ignores `stream` and answers with one
    JSON body is read as a plain completion."""
    from ..protocol_prefix import STOP_DEAD, ReplyStop

    sampling = config.sampling
    kwargs: dict[str, Any] = dict(model=config.model, messages=messages, temperature=sampling.temperature,
                                  top_p=sampling.top_p, max_tokens=sampling.max_tokens, seed=seed, stream=True,
                                  stream_options={"include_usage": True})
    schema_format = response_format(config.constrained, tool_schemas)
    if schema_format:
        kwargs["response_format"] = schema_format
    started = time.monotonic()
    stop = ReplyStop(config.early_stop)
    pieces: list[str] = []
    chunks, usage, finish = 0, None, None
    try:
        stream = client.chat.completions.create(**kwargs)
        try:
            if "text/event-stream" not in stream.response.headers.get("content-type", "text/event-stream"):
                return _unstreamed(stream.response, time.monotonic() - started)
            for chunk in stream:
                usage = getattr(chunk, "usage", None) or usage
                choice = chunk.choices[0] if chunk.choices else None
                text = (choice.delta.content if choice is not None and choice.delta is not None else None) or ""
                if text:
                    if stop.reason is not None:  # the action is complete: what follows is not part of it
                        break
                    pieces.append(text)
                    chunks += 1
                    if stop.feed(text) == STOP_DEAD:
                        finish = "early_stop"
                        break
                if choice is not None and choice.finish_reason:
                    finish = choice.finish_reason
        finally:
            stream.close()
    except api_error as exc:
        return ModelReply(content="", latency_s=time.monotonic() - started, error=describe_api_error(exc))
    if stop.reason is not None and finish is None:
        finish = "stop"
    return ModelReply(content="".join(pieces), prompt_tokens=getattr(usage, "prompt_tokens", None),
                      completion_tokens=getattr(usage, "completion_tokens", None) if usage else chunks,
                      latency_s=time.monotonic() - started, finish_reason=finish, stopped_early=finish == "early_stop")


def _unstreamed(response: Any, latency_s: float) -> ModelReply:
    from openai.types.chat import ChatCompletion

    try:
        response.read()
        completion = ChatCompletion.model_validate(response.json())
    except Exception as exc:  # a body that is neither a stream nor a completion: data, not a crash
        return ModelReply(content="", latency_s=latency_s, error=f"unreadable completion: {type(exc).__name__}: {exc}")
    return reply_from_openai(completion, latency_s)


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
