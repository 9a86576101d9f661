"""What counts as a secret, in one place: names (environment variables, record fields) and value shapes.

API keys are only ever read from the environment. Test runs and sandboxed commands get an environment
without the variables `is_secret_name` flags; traces, logs and error messages pass through `redact`,
which blanks fields with secret names, strings shaped like keys, and the exact values of the keys the
process was given.
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterable

# A name that holds a secret: FOO_API_KEY, HF_TOKEN, AWS_SESSION_TOKEN, *_SECRET*, passwords, cookies,
# auth data, netrc. Anchored so that counters like `max_tokens` or `tokens_in` are not secrets.
SECRET_NAME = re.compile(r"(api[_-]?key|(^|[_-])key$|secret|passw|credential|cookie|netrc|auth|session|(^|[_-])token$)", re.I)
# A value shaped like a key, wherever it appears in text.
SECRET_VALUE = re.compile(r"\b(sk-[A-Za-z0-9_\-]{8,}|tgp_v1_[A-Za-z0-9_\-]{8,}|hf_[A-Za-z0-9]{16,}|gh[pousr]_[A-Za-z0-9]{16,}"
                          r"|Bearer\s+[A-Za-z0-9._\-]{8,})")
REDACTED = "[redacted]"
# Record fields whose names look like secrets and are not: a task's split key names its source program,
# and reports, guards and the cluster bootstrap read it back from traces.
NOT_SECRET_NAMES = frozenset({"split_key"})


def is_secret_name(name: str) -> bool:
    return name not in NOT_SECRET_NAMES and bool(SECRET_NAME.search(name))


def known_secret_values(env_names: Iterable[str] = ()) -> list[str]:
    """The values of the named environment variables and of every secret-named one (4+ characters)."""
    names = set(env_names) | {k for k in os.environ if is_secret_name(k)}
    return sorted({os.environ[n] for n in names if len(os.environ.get(n) or "") >= 4}, key=len, reverse=True)


def redact(value: Any, known: Iterable[str] = ()) -> Any:
    """`value` (text, or JSON-like data) without secrets: fields with secret names are blanked, key-shaped
    strings and the `known` secret values are replaced by [redacted]."""
    known = tuple(known)
    if isinstance(value, dict):
        return {k: (REDACTED if is_secret_name(str(k)) and v else redact(v, known)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, known) for v in value]
    if isinstance(value, str):
        for secret in known:
            value = value.replace(secret, REDACTED)
        return SECRET_VALUE.sub(REDACTED, value)
    return value


def scrubbed_environ(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without anything secret-named (for the processes we start)."""
    env = {k: v for k, v in os.environ.items() if not is_secret_name(k)}
    env.update(extra or {})
    return env
