"""Rules on reply PREFIXES of the JSON protocol, beside the parser (protocol.py): when to stop generating.

`parse_action` accepts a reply iff, after `str.strip()`, `json.loads` reads ONE JSON object that is a
valid tool_call or final. Two rules follow from that and decide when generation of a reply can stop:

- One action per reply (`JsonObjectScanner`): the reply is finished once its first JSON object has
  closed; whatever would follow is not part of the action.
- Early stop (`ActionPrefix`): the reply is dead at the first character after which NO continuation
  could make `parse_action` accept it. Only certain reasons count:
  - the first non-whitespace character is not `{` (prose, code fences, a list, ...);
  - the JSON breaks: a character Python's json reader cannot accept at that point;
  - anything but whitespace after the closed top-level object;
  - a top-level key no action has, or keys of both envelopes (`name`/`args` with `summary`): keys
    may repeat but are never removed, so the final object would keep them.
  Values are deliberately not judged: JSON lets a repeated key replace an earlier value, so a bad
  `"type"` or `"args"` can still be overwritten later. The rule is sound (it never kills a prefix that
  some continuation makes valid; property-tested against `parse_action`), not complete.

`ReplyStop` combines both for a provider that generates or streams a reply piece by piece.
"""

from __future__ import annotations

from .envelope import ENVELOPE_KEYS

_JSON_WHITESPACE = " \t\n\r"
_DIGITS = "0123456789"
_HEX = "0123456789abcdefABCDEF"
_SIMPLE_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_LITERALS = {"t": "true", "f": "false", "n": "null", "N": "NaN", "I": "Infinity"}  # Python's json reads NaN/Infinity
_COMPLETE_NUMBERS = {"zero", "int", "frac", "exp_digits"}
_TOP_LEVEL_KEYS = tuple(sorted({key for keys in ENVELOPE_KEYS.values() for key in keys}))
_KEY_SETS = tuple(frozenset(keys) for keys in ENVELOPE_KEYS.values())


class ActionPrefix:
    """Follows a reply character by character; `dead_at` is the index of the first character after
    which it can no longer become a valid action (None while it still can). `complete` once the
    top-level object has closed (only whitespace may follow)."""

    def __init__(self) -> None:
        self.length = 0  # characters consumed (consumption stops at the dead character)
        self.dead_at: int | None = None
        self.reason: str | None = None
        self.complete = False
        self._stack: list[str] = []  # open containers: "{" or "["
        self._expect = "start"  # start | key_or_close | key | colon | value | value_or_close | after_value | end
        self._string: str | None = None  # "key" or "value" while inside a string
        self._escape: str | None = None  # "" right after a backslash, "u" + hex digits inside \\uXXXX
        self._key: list[str] = []  # decoded characters of the top-level key being read
        self._keys: set[str] = set()
        self._literal: str | None = None  # characters a literal still needs
        self._number: str | None = None  # state of the number being read

    @property
    def dead(self) -> bool:
        return self.dead_at is not None

    def feed(self, text: str) -> bool:
        """Consume `text`; False once the reply is dead."""
        for char in text:
            if self.dead_at is not None:
                break
            self._step(char)
            if self.dead_at is None:
                self.length += 1
        return self.dead_at is None

    # -- the JSON reader -------------------------------------------------------------------------------

    def _die(self, reason: str) -> None:
        self.dead_at, self.reason = self.length, reason

    def _step(self, char: str) -> None:
        if self._string is not None:
            self._string_char(char)
            return
        if self._literal is not None:
            if char != self._literal[0]:
                self._die("broken JSON literal")
                return
            self._literal = self._literal[1:] or None
            if self._literal is None:
                self._expect = "after_value"
            return
        if self._number is not None:
            if self._number_char(char):
                return
            if self._number not in _COMPLETE_NUMBERS:
                self._die("broken JSON number")
                return
            self._number, self._expect = None, "after_value"  # and `char` is read as what follows it
        expect = self._expect
        if expect == "end":
            if not char.isspace():
                self._die("text after the JSON object")
            return
        if expect == "start":
            if char == "{":
                self._open("{")
            elif not char.isspace():  # str.strip() removes any Unicode whitespace around the object
                self._die("the reply does not start with '{'")
            return
        if char in _JSON_WHITESPACE:
            return
        if expect in ("key_or_close", "key"):
            if char == '"':
                self._string, self._key = "key", []
            elif char == "}" and expect == "key_or_close":
                self._close()
            else:
                self._die("expected a quoted key")
        elif expect == "colon":
            if char == ":":
                self._expect = "value"
            else:
                self._die("expected ':' after a key")
        elif expect in ("value", "value_or_close"):
            if char == "]" and expect == "value_or_close":
                self._close()
            else:
                self._start_value(char)
        else:  # after_value
            container = self._stack[-1]
            if char == ",":
                self._expect = "key" if container == "{" else "value"
            elif char == ("}" if container == "{" else "]"):
                self._close()
            else:
                self._die("expected ',' or the end of the container")

    def _open(self, container: str) -> None:
        self._stack.append(container)
        self._expect = "key_or_close" if container == "{" else "value_or_close"

    def _close(self) -> None:
        self._stack.pop()
        if self._stack:
            self._expect = "after_value"
        else:
            self._expect, self.complete = "end", True

    def _start_value(self, char: str) -> None:
        if char in "{[":
            self._open(char)
        elif char == '"':
            self._string = "value"
        elif char == "-":
            self._number = "minus"
        elif char == "0":
            self._number = "zero"
        elif char in _DIGITS:
            self._number = "int"
        elif char in _LITERALS:
            self._literal = _LITERALS[char][1:]
        else:
            self._die("expected a JSON value")

    def _number_char(self, char: str) -> bool:
        """Advance the number; False when `char` is not part of it."""
        state, digit = self._number, char in _DIGITS
        if state == "minus":
            if char == "I":  # -Infinity
                self._number, self._literal = None, "nfinity"
                return True
            nxt = ("zero" if char == "0" else "int") if digit else None
        elif state == "zero":
            nxt = "dot" if char == "." else "exp" if char in "eE" else None
        elif state == "int":
            nxt = "int" if digit else "dot" if char == "." else "exp" if char in "eE" else None
        elif state in ("dot", "frac"):
            nxt = "frac" if digit else ("exp" if char in "eE" and state == "frac" else None)
        elif state == "exp":
            nxt = "exp_digits" if digit else "exp_sign" if char in "+-" else None
        else:  # exp_sign, exp_digits
            nxt = "exp_digits" if digit else None
        if nxt is None:
            return False
        self._number = nxt
        return True

    def _string_char(self, char: str) -> None:
        if self._escape is not None:
            if self._escape == "":
                if char == "u":
                    self._escape = "u"
                elif char in _SIMPLE_ESCAPES:
                    self._escape = None
                    self._string_text(_SIMPLE_ESCAPES[char])
                else:
                    self._die("invalid escape in a string")
            elif char in _HEX:
                self._escape += char
                if len(self._escape) == 5:
                    code, self._escape = int(self._escape[1:], 16), None
                    self._string_text(chr(code))
            else:
                self._die("invalid \\u escape in a string")
        elif char == "\\":
            self._escape = ""
        elif char == '"':
            self._end_string()
        elif ord(char) < 0x20:
            self._die("control character in a string")
        else:
            self._string_text(char)

    def _string_text(self, char: str) -> None:
        if self._string != "key" or len(self._stack) != 1:
            return
        self._key.append(char)
        key = "".join(self._key)
        if not any(name.startswith(key) for name in _TOP_LEVEL_KEYS):
            self._die(f"top-level key {key!r} is not one of {', '.join(_TOP_LEVEL_KEYS)}")

    def _end_string(self) -> None:
        kind, self._string = self._string, None
        if kind == "value":
            self._expect = "after_value"
            return
        self._expect = "colon"
        if len(self._stack) != 1:
            return
        key = "".join(self._key)
        if key not in _TOP_LEVEL_KEYS:
            self._die(f"top-level key {key!r} is not one of {', '.join(_TOP_LEVEL_KEYS)}")
            return
        self._keys.add(key)
        if not any(self._keys <= allowed for allowed in _KEY_SETS):
            self._die(f"keys {', '.join(sorted(self._keys))} belong to no single action")


def dead_point(text: str) -> tuple[int, str] | None:
    """(index of the first character after which `text` cannot become a valid action, why), or None."""
    prefix = ActionPrefix()
    prefix.feed(text)
    return None if prefix.dead_at is None else (prefix.dead_at, prefix.reason or "")


class JsonObjectScanner:
    """Follows generated text character by character; `complete` once the first top-level JSON object
    closes. Quotes only count inside the object, so prose like "don't" before it cannot confuse it."""

    def __init__(self) -> None:
        self.depth = 0
        self.in_string = False
        self.escaped = False
        self.complete = False

    def feed(self, text: str) -> bool:
        for char in text:
            if self.complete:
                break
            if self.depth == 0:
                if char == "{":
                    self.depth = 1
            elif self.in_string:
                if self.escaped:
                    self.escaped = False
                elif char == "\\":
                    self.escaped = True
                elif char == '"':
                    self.in_string = False
            elif char == '"':
                self.in_string = True
            elif char == "{":
                self.depth += 1
            elif char == "}":
                self.depth -= 1
                self.complete = self.depth == 0
        return self.complete


STOP_COMPLETE = "complete"  # the first JSON object closed: one action per reply
STOP_DEAD = "dead"  # the reply can no longer become a valid action


class ReplyStop:
    """When generation of one JSON-protocol reply stops, fed piece by piece (tokens, stream chunks):
    at the end of its first complete JSON object, always; with `early_stop`, also as soon as it is dead.
    A piece that both completes the object and kills the reply (`}` followed by prose) counts as dead:
    the reply is a parse error either way."""

    def __init__(self, early_stop: bool):
        self.scanner = JsonObjectScanner()
        self.prefix = ActionPrefix() if early_stop else None
        self.reason: str | None = None

    def feed(self, text: str) -> str | None:
        """None while generation should go on, else STOP_COMPLETE or STOP_DEAD."""
        if self.reason is None:
            if self.prefix is not None and not self.prefix.feed(text):
                self.reason = STOP_DEAD
            elif self.scanner.feed(text):
                self.reason = STOP_COMPLETE
        return self.reason
