"""The action envelope of the JSON protocol: the top-level keys of each action, in canonical order.

Both the parser (protocol.py) and the rule on reply prefixes (protocol_prefix.py) are written against
it; it sits below both so that neither has to import the other's module to learn it."""

from __future__ import annotations

ENVELOPE_KEYS: dict[str, tuple[str, ...]] = {"tool_call": ("type", "name", "args"), "final": ("type", "summary")}
