"""Loop detection: the same action with the same result again, right away or within a short window."""

from __future__ import annotations

import hashlib
from collections import deque


class LoopDetector:
    def __init__(self, window: int = 6):
        self.recent: deque[str] = deque(maxlen=max(1, window))

    def observe(self, action_text: str, result_text: str) -> str | None:
        """Record one step; return "repeat" (same as the previous step), "cycle" (same as one within the
        window) or None."""
        key = hashlib.sha1(f"{action_text}\x00{result_text}".encode("utf-8", "replace")).hexdigest()
        kind = None
        if self.recent and self.recent[-1] == key:
            kind = "repeat"
        elif key in self.recent:
            kind = "cycle"
        self.recent.append(key)
        return kind
