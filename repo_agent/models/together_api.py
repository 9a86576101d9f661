"""Together AI chat completions through the `together` SDK (3.x): `--llm-provider together`.

Retries of 429/5xx/timeouts are the SDK's own (exponential backoff with jitter, honouring
`retry-after`), bounded by `--max-retries`; a final failure becomes `ModelReply.error`, never an
exception. The key comes from TOGETHER_API_KEY (or the variable named by `--api-key-env`) and is
handed to the SDK only: it never reaches a trace, a log line or an error message.
"""

from __future__ import annotations

from typing import Any

from .base import ModelReply, ProviderConfig
from .openai_compat import chat_reply, resolve_api_key

DEFAULT_KEY_ENV = "TOGETHER_API_KEY"


def sdk_base_url(base_url: str | None) -> str | None:
    """The SDK's paths already start with /v1, so its base URL must not end with it.

    Users often paste an OpenAI-style URL (`.../v1`), and the shared `--base-url` help shows one, so
    both spellings are accepted.
    """
    if not base_url:
        return None
    trimmed = base_url.rstrip("/")
    return trimmed[: -len("/v1")] if trimmed.endswith("/v1") else trimmed


def make_client(config: ProviderConfig) -> Any:
    """A `together.Together` client for this provider config (raises ValueError without a key)."""
    from together import Together

    return Together(
        api_key=resolve_api_key(config, DEFAULT_KEY_ENV),
        base_url=sdk_base_url(config.base_url),
        max_retries=config.max_retries,
        timeout=config.timeout_s,
    )


def scrub(text: str, config: ProviderConfig) -> str:
    """Belt and braces: whatever an error message contains, the key itself never leaves."""
    from ..secrets import known_secret_values, redact

    return redact(text, known_secret_values([config.api_key_env or DEFAULT_KEY_ENV]))


class TogetherModel:
    def __init__(self, config: ProviderConfig, seed: int):
        self.config = config
        self.seed = seed
        self.client = make_client(config)

    def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> ModelReply:
        import together

        return chat_reply(self.client, self.config, self.seed, messages, tools, together.APIError,
                          scrub=lambda text: scrub(text, self.config))
