"""Agent episodes as token sequences: for RL (one episode = prompt + completion, env-masked) and for SFT
rows with per-message weights (`weighted_sequence`: the one place the SFT labels are built, shared by
the local trainer and the mask audit).

One agent episode as ONE token sequence for RL: prompt = system + task, completion = every later turn.

`PolicyModel` is a `Model` (the agent loop's provider interface) that generates with the policy being
trained and keeps the exact tokens: each call renders the conversation with the chat template, checks
that the text seen so far is a prefix of the new rendering, tokenizes only the new part (the tool
result and the template's role headers: mask 0), then generates from the accumulated ids (mask 1).
The model is therefore trained on exactly the token sequence it was sampled from; nothing is
re-tokenized after the fact. The convention for template tokens: tokens the model generated carry
loss (its own end-of-turn token included); every token the template or the environment adds (role
headers, the end-of-turn after a reply the driver stopped, [tool_result] messages) is masked.

An episode has a token budget over its completion (model and environment tokens alike). A reply is
cut at the budget; the next call ends the episode with stop reason `token_budget`, and the completion
is left without an end-of-turn token, which is how TRL recognises a truncated completion.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..models.base import ModelReply, Sampling

TOKEN_BUDGET = "token_budget"
TEMPLATE_BROKEN = "template_not_prefix"


@dataclass
class Segment:
    role: str  # prompt | model | env
    start: int  # index into completion ids (prompt: into prompt ids)
    end: int


@dataclass
class EpisodeTokens:
    prompt_ids: list[int] = field(default_factory=list)
    completion_ids: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)  # per completion token: 1 model-generated, 0 environment
    segments: list[Segment] = field(default_factory=list)
    rendered: str = ""  # the text of prompt + completion so far, as the chat template renders it
    budget_cut: bool = False
    text_at_last_reply: str = ""  # `rendered` right after the last generated token
    problems: list[str] = field(default_factory=list)  # why this episode's tokens cannot be trusted

    def add(self, ids: list[int], trained: bool) -> None:
        if not ids:
            return
        start = len(self.completion_ids)
        self.completion_ids += ids
        self.mask += [1 if trained else 0] * len(ids)
        self.segments.append(Segment("model" if trained else "env", start, len(self.completion_ids)))

    def cut(self, length: int) -> None:
        """Keep the first `length` completion tokens."""
        self.completion_ids, self.mask = self.completion_ids[:length], self.mask[:length]
        kept = []
        for seg in self.segments:
            if seg.start < length:
                kept.append(Segment(seg.role, seg.start, min(seg.end, length)))
        self.segments = kept

    def last_model_end(self) -> int:
        ends = [s.end for s in self.segments if s.role == "model"]
        return ends[-1] if ends else 0


def render(tokenizer: Any, messages: list[dict[str, Any]], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template([{"role": m["role"], "content": m.get("content") or ""} for m in messages],
                                         add_generation_prompt=generation_prompt, tokenize=False)


def encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


class PolicyModel:
    """The policy as the agent loop's model, for one episode. `generate(prompt_ids, max_new, seed)`
    returns (generated ids, text without special tokens, finish reason)."""

    def __init__(self, tokenizer: Any, generate: Any, sampling: Sampling, token_budget: int, seed: int,
                 lock: Any = None):
        self.tokenizer = tokenizer
        self.generate = generate
        self.sampling = sampling
        self.token_budget = token_budget
        self.seed = seed
        self.calls = 0
        self.tokens = EpisodeTokens()
        self.lock = lock  # a fast tokenizer is not thread-safe: shared with the generation engine

    def _encode(self, text: str) -> list[int]:
        if self.lock is None:
            return encode(self.tokenizer, text)
        with self.lock:
            return encode(self.tokenizer, text)

    def _decode(self, ids: list[int]) -> str:
        if self.lock is None:
            return self.tokenizer.decode(ids, skip_special_tokens=False)
        with self.lock:
            return self.tokenizer.decode(ids, skip_special_tokens=False)

    def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> ModelReply:
        started = time.monotonic()
        tokens = self.tokens
        if tools:
            return ModelReply(content="", error="GRPO rollouts speak the JSON protocol (no native tools)")
        text = render(self.tokenizer, messages, generation_prompt=True)
        if self.calls == 0:
            tokens.prompt_ids = self._encode(text)
            tokens.segments.append(Segment("prompt", 0, len(tokens.prompt_ids)))
        elif not text.startswith(tokens.rendered):
            tokens.problems.append(f"turn {self.calls}: the chat template's rendering of the conversation does not "
                                   "start with the text of the previous turns (not prefix-preserving)")
            return ModelReply(content="", error=tokens.problems[-1], stop_reason=TEMPLATE_BROKEN)
        else:
            tokens.add(self._encode(text[len(tokens.rendered):]), trained=False)
        tokens.rendered = text
        remaining = self.token_budget - len(tokens.completion_ids)
        if remaining <= 0:
            tokens.budget_cut = True
            return ModelReply(content="", error=f"the episode's token budget of {self.token_budget} is spent",
                              stop_reason=TOKEN_BUDGET, latency_s=time.monotonic() - started)
        max_new = min(self.sampling.max_tokens, remaining)
        ids, content, finish = self.generate(tokens.prompt_ids + tokens.completion_ids, max_new,
                                             (self.seed * 1_000_003 + self.calls) % (2**63))
        self.calls += 1
        tokens.add(list(ids), trained=True)
        tokens.rendered += self._decode(list(ids))
        tokens.text_at_last_reply = tokens.rendered
        if finish == "length" and max_new == remaining:
            tokens.budget_cut = True
        return ModelReply(content=content, prompt_tokens=len(tokens.prompt_ids) + len(tokens.completion_ids) - len(ids),
                          completion_tokens=len(ids), latency_s=time.monotonic() - started, finish_reason=finish,
                          stopped_early=finish == "early_stop")

    def finish(self, conversation: list[dict[str, Any]], eos_ids: list[int]) -> EpisodeTokens:
        """Close the completion after the episode: drop environment tokens after the last reply (no
        model token follows them) and, when the driver stopped the last reply, add the template's
        end-of-turn (masked). A budget-cut episode keeps its cut (TRL then sees a truncated completion)."""
        tokens = self.tokens
        if tokens.budget_cut:
            tokens.cut(min(len(tokens.completion_ids), self.token_budget))
            return tokens
        last = tokens.last_model_end()
        tokens.cut(last)
        if last and tokens.completion_ids[-1] not in eos_ids and conversation:
            closed = render(self.tokenizer, conversation, generation_prompt=False)
            seen = tokens.text_at_last_reply
            if closed.startswith(seen):
                tail = self._encode(closed[len(seen):])
                ends = [i for i, t in enumerate(tail) if t in eos_ids]
                tokens.add(tail[: ends[0] + 1] if ends else tail, trained=False)
            else:
                tokens.problems.append("the closing end-of-turn: the template's rendering does not start with the episode's text")
        return tokens


def conversation_of(trace: dict[str, Any], last_result: bool = False) -> list[dict[str, Any]]:
    """The episode's messages up to and including its last reply (the tool result after it is never
    seen by the model, so it is not part of the completion), or with that result (`last_result`)."""
    messages = [dict(m) for m in trace.get("prompt_messages") or []]
    steps = trace.get("steps") or []
    for index, step in enumerate(steps):
        messages.append(step["assistant_message"])
        if (last_result or index + 1 < len(steps)) and step.get("result_message"):
            messages.append(step["result_message"])
    return messages


# --------------------------------------------------------------------------------- SFT rows, weighted


@dataclass
class WeightedSequence:
    """One chat row as the model is trained on it: its ids and, per id, 1 where it carries loss."""

    ids: list[int]
    mask: list[int]
    turns: list[tuple[int, int]]  # (start, end) id ranges of the trained turns
    spans: list[tuple[int, int]]  # (start, end) character ranges of the trained turns in `text`
    text: str
    problems: list[str] = field(default_factory=list)  # why the mask cannot be trusted (not prefix-preserving)


def trained_turns(messages: list[dict[str, Any]]) -> list[int]:
    """Indices of the assistant messages that carry loss: those with weight 1 (OpenAI's and Together's
    convention); a row with no weights at all trains its last message, as step rows always did."""
    if any("weight" in m for m in messages):
        return [i for i, m in enumerate(messages) if m.get("role") == "assistant" and m.get("weight") == 1]
    return [len(messages) - 1] if messages and messages[-1].get("role") == "assistant" else []


_TEMPLATE_KEYS = ("role", "content", "tool_calls", "tool_call_id", "name")


def weighted_sequence(tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> WeightedSequence:
    """The labels of an SFT row, built in one place for training and for the mask audit. Each trained
    assistant turn k carries loss on exactly the tokens its step row trains: from the end of the
    rendering of the conversation before it (with the generation prompt) to the end of the rendering up
    to and including it (its content, the end-of-turn token, the template's trailing text). That equals
    the step row's loss only if each of those renderings tokenizes to a prefix of the whole row's ids
    (the prefix property); where it does not, `problems` says so and the row must not be trained."""
    clean = [{k: m[k] for k in _TEMPLATE_KEYS if k in m} for m in messages]
    kwargs = {"tools": tools} if tools else {}

    def text_of(upto: int, generation_prompt: bool) -> str:
        return tokenizer.apply_chat_template(clean[:upto], add_generation_prompt=generation_prompt, tokenize=False, **kwargs)

    text = text_of(len(clean), False)
    ids = encode(tokenizer, text)
    mask = [0] * len(ids)
    turns, spans, problems = [], [], []
    for index in trained_turns(messages):
        before, upto = text_of(index, True), text_of(index + 1, False)
        if not text.startswith(upto) or not upto.startswith(before):
            problems.append(f"message {index}: the chat template renders the conversation before it differently from "
                            "the whole row (not prefix-preserving)")
            continue
        start, end = len(encode(tokenizer, before)), len(encode(tokenizer, upto))
        if ids[:end] != encode(tokenizer, upto) or ids[:start] != encode(tokenizer, before):
            problems.append(f"message {index}: the tokens of the conversation up to it are not a prefix of the row's "
                            "tokens (not prefix-preserving at the token level)")
            continue
        mask[start:end] = [1] * (end - start)
        turns.append((start, end))
        spans.append((len(before), len(upto)))
    return WeightedSequence(ids, mask, turns, spans, text, problems)
