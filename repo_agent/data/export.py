"""Small pure export functions, one per target shape, plus the atomic JSONL writer every command uses.

Internal records (`StepExample`, `PreferencePair`) know nothing about Together or TRL; these functions
turn one record into one JSON-ready dict. Keeping them pure and tiny is what makes golden files cheap.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable

from .rows import PreferencePair, StepExample

FORMATS = ("json", "native", "trl")  # json/native = Together (protocol of the turns); trl = TRL shapes (json protocol)


def dumps_line(record: dict[str, Any]) -> str:
    """One JSONL line: compact, key order kept, UTF-8 as-is (byte-stable for golden files)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def _weighted(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Together switches train_on_inputs on as soon as ANY message has a weight, and an unweighted message
    # then defaults to weight 1. So every message gets an explicit weight: 1 on the target only.
    last = len(messages) - 1
    return [{**m, "weight": 1 if i == last else 0} for i, m in enumerate(messages)]


def sft_together(example: StepExample) -> dict[str, Any]:
    """Together conversational row; `tools` only for the native protocol."""
    row: dict[str, Any] = {"messages": _weighted(example.messages)}
    if example.tools:
        row["tools"] = example.tools
    return row


def sft_trl(example: StepExample) -> dict[str, Any]:
    """TRL conversational prompt/completion: TRL then computes the loss on the completion only."""
    row: dict[str, Any] = {"prompt": example.prompt, "completion": [example.target]}
    if example.tools:
        row["tools"] = example.tools
    return row


def pair_together(pair: PreferencePair) -> dict[str, Any]:
    """Together preference row: exactly one assistant message per side; tools nest inside `input`."""
    inp: dict[str, Any] = {"messages": pair.prompt}
    if pair.tools:
        inp["tools"] = pair.tools
    return {"input": inp, "preferred_output": [pair.chosen], "non_preferred_output": [pair.rejected]}


def pair_trl(pair: PreferencePair) -> dict[str, Any]:
    """TRL conversational preference row (DPOTrainer): prompt / chosen / rejected."""
    row: dict[str, Any] = {"prompt": pair.prompt, "chosen": [pair.chosen], "rejected": [pair.rejected]}
    if pair.tools:
        row["tools"] = pair.tools
    return row


def sft_exporter(fmt: str) -> Callable[[StepExample], dict[str, Any]]:
    return sft_trl if fmt == "trl" else sft_together


class SftLineEncoder:
    """`dumps_line(sft_exporter(fmt)(example))`, byte for byte, without re-encoding the shared prefix.

    The examples of one trace share their earlier messages (the prompt of step k is a prefix of the
    prompt of step k+1), so encoding whole rows costs O(steps^2) JSON work per trace. This encodes each
    message once and joins the pieces: a compact JSON array is exactly "[" + ",".join(items) + "]".
    Call `new_trace()` between traces (the cache is keyed by message identity within one trace).
    """

    def __init__(self, fmt: str):
        self.trl = fmt == "trl"
        self._cache: dict[int, str] = {}
        self._keep: list[Any] = []  # holds the cached messages alive so their ids stay unique

    def new_trace(self) -> None:
        self._cache.clear()
        self._keep.clear()

    def _context(self, message: dict[str, Any]) -> str:
        key = id(message)
        text = self._cache.get(key)
        if text is None:
            text = dumps_line(message if self.trl else {**message, "weight": 0})
            self._cache[key] = text
            self._keep.append(message)
        return text

    def encode(self, example: StepExample) -> str:
        context = ",".join(self._context(m) for m in example.prompt)
        target = example.target
        if self.trl:
            line = '{"prompt":[' + context + '],"completion":[' + dumps_line(target) + "]"
        else:
            target_text = dumps_line({**target, "weight": 1})
            line = '{"messages":[' + context + ("," if context else "") + target_text + "]"
        if example.tools:
            line += ',"tools":' + dumps_line(example.tools)
        return line + "}"


def pair_exporter(fmt: str) -> Callable[[PreferencePair], dict[str, Any]]:
    return pair_trl if fmt == "trl" else pair_together


def file_kind(fmt: str, pairs: bool) -> str:
    """The `data check` kind of a file written in `fmt`."""
    if pairs:
        return "pref-trl" if fmt == "trl" else "pref"
    return "sft-trl" if fmt == "trl" else "sft"


class AtomicJsonl:
    """Stream lines into a hidden temp file beside `path`; `commit()` renames it into place.

    A crash or a failed validation leaves any earlier file at `path` untouched. The temp name keeps the
    final suffix so checkers that look at extensions (the together SDK) accept it.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.tmp{self.path.suffix}")
        self._handle = open(self.tmp, "w", encoding="utf-8", newline="\n")
        self.count = 0
        self.committed = False

    def write(self, record: dict[str, Any]) -> None:
        self.write_line(dumps_line(record))

    def write_line(self, line: str) -> None:
        self._handle.write(line)
        self._handle.write("\n")
        self.count += 1

    def write_all(self, records: Iterable[dict[str, Any]]) -> None:
        for record in records:
            self.write(record)

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()

    def commit(self) -> Path:
        self.close()
        os.replace(self.tmp, self.path)
        self.committed = True
        return self.path

    def discard(self) -> None:
        self.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "AtomicJsonl":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.committed:  # failed or refused: never leave a half-written temp file behind
            self.discard()
