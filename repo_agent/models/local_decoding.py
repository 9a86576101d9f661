"""How the `local` provider decodes each row of a batch: when a row stops, which tokens it may take next,
and how it samples. Pieces that plug into transformers' `generate` (a StoppingCriteria and
LogitsProcessors); the batching engine that calls `generate` is local_hf.py.

- Stopping (`RowWatch`, `_stopping_criteria`): per row, at the end of its first complete JSON object
  (one action per reply), at an end-of-turn token, at its own token limit, or with early stop as soon
  as the reply can no longer become a valid action (protocol_prefix.py).
- Constraining (`_grammar_mask`): rows with a JSON schema decode under its xgrammar grammar.
- Sampling (`_seeded_sampler`): one random generator per request, so a sampled reply does not depend on
  which requests share its batch.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

from ..protocol_prefix import STOP_DEAD, ReplyStop


@dataclass
class GenerationRequest:
    prompt_ids: list[int]
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    early_stop: bool = False  # stop once the reply cannot become a valid JSON-protocol action
    schema: str | None = None  # JSON Schema (as text) to decode under, or None for free decoding
    future: Future = field(default_factory=Future)


@dataclass
class GenerationResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # stop (JSON complete or end of turn) | length | early_stop (the reply went dead)
    batch_size: int
    token_ids: list[int] = field(default_factory=list)  # exactly the generated tokens (an end-of-turn token included)


class RowWatch:
    """One row of a batch as it is generated: its tokens, its text decoded so far, when and why it stopped.

    The text is decoded from all of the row's tokens each step (skipping special tokens), exactly as the
    final reply is, and fed to the stop rule only up to a trailing U+FFFD: a byte-level tokenizer shows a
    multi-byte character split over two tokens as U+FFFD until its second half arrives."""

    def __init__(self, request: GenerationRequest):
        self.request = request
        self.stop = ReplyStop(request.early_stop)
        self.tokens: list[int] = []
        self.fed = ""
        self.finish_reason: str | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def observe(self, token: int, tokenizer: Any, eos_ids: list[int]) -> None:
        self.tokens.append(token)
        if token in eos_ids:
            self.finish_reason = "stop"
            return
        text = tokenizer.decode(self.tokens, skip_special_tokens=True)
        if not text.startswith(self.fed):  # the tokenizer revised earlier characters: read the text again
            self.stop, self.fed = ReplyStop(self.request.early_stop), ""
        settled = len(text.rstrip("\ufffd"))
        if settled > len(self.fed):
            reason = self.stop.feed(text[len(self.fed):settled])
            self.fed = text[:settled]
            if reason is not None:
                self.finish_reason = "early_stop" if reason == STOP_DEAD else "stop"
                return
        if len(self.tokens) >= self.request.max_new_tokens:
            self.finish_reason = "length"

    def result(self, tokenizer: Any, batch_size: int) -> GenerationResult:
        return GenerationResult(tokenizer.decode(self.tokens, skip_special_tokens=True), len(self.request.prompt_ids),
                                len(self.tokens), self.finish_reason or "length", batch_size, list(self.tokens))


def stopping_criteria(tokenizer: Any, watches: list[RowWatch], eos_ids: list[int],
                       on_finish: Callable[[int], None]) -> Any:
    import torch
    from transformers import StoppingCriteria

    class RowsFinished(StoppingCriteria):
        """Per row: done when its reply is complete, dead (early stop), ended its turn or reached its own
        token limit. A finished row is reported to `on_finish` at once, so its caller need not wait for
        the rest of the batch."""

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            last = input_ids[:, -1].tolist()
            done = []
            for row, watch in enumerate(watches):
                if not watch.finished:
                    watch.observe(last[row], tokenizer, eos_ids)
                    if watch.finished:
                        on_finish(row)
                done.append(watch.finished)
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return RowsFinished()


def grammar_mask(grammars: list[Any], watches: list[RowWatch], vocab_size: int, control_tokens: Any) -> Any:
    """Masks the logits of constrained rows to the tokens their grammar allows next.

    Built on xgrammar's matcher (`GrammarMatcher`, `apply_token_bitmask_inplace`) rather than its
    `contrib.hf.LogitsProcessor`, which applies one grammar to every row and asserts that each row's
    last token is grammatical: here rows may be unconstrained, and a finished row is fed padding.
    `control_tokens` (ids whose text holds a character below U+0020) are masked too: the grammar is
    compact (no whitespace between JSON tokens) and JSON strings may not hold raw control characters,
    yet xgrammar 0.2.9's rule for strings with a minLength admits them."""
    import torch
    import xgrammar as xgr
    from transformers import LogitsProcessor

    class GrammarMask(LogitsProcessor):
        def __init__(self) -> None:
            self.matchers = [xgr.GrammarMatcher(g) if g is not None else None for g in grammars]
            self.bitmask = xgr.allocate_token_bitmask(len(grammars), vocab_size)
            self.started = False

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            last = input_ids[:, -1].tolist() if self.started else None
            self.started = True
            rows = []
            for row, matcher in enumerate(self.matchers):
                if matcher is None or watches[row].finished:
                    continue
                if last is not None and not matcher.accept_token(last[row]):
                    self.matchers[row] = None  # cannot happen under the mask; never let it crash a batch
                    continue
                if matcher.is_terminated():
                    continue
                matcher.fill_next_token_bitmask(self.bitmask, row)
                rows.append(row)
            if rows:
                xgr.apply_token_bitmask_inplace(scores, self.bitmask, indices=rows)
                if len(control_tokens):
                    scores[torch.tensor(rows).unsqueeze(1), control_tokens.unsqueeze(0)] = float("-inf")
            return scores

    return GrammarMask()


def seeded_sampler(requests: list[GenerationRequest], device: Any) -> Any:
    import torch
    from transformers import LogitsProcessor

    class GumbelSampler(LogitsProcessor):
        """Turns greedy decoding into sampling for rows with temperature > 0: argmax(logits/T + Gumbel
        noise) is a sample of softmax(logits/T). Top-p removes the tail first."""

        def __init__(self) -> None:
            self.generators = []
            for request in requests:
                generator = torch.Generator(device=device)
                generator.manual_seed(request.seed)
                self.generators.append(generator)

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            scores = scores.clone()
            for row, request in enumerate(requests):
                if request.temperature <= 0:
                    continue
                logits = scores[row].float() / request.temperature
                if request.top_p < 1.0:
                    ordered, order = torch.sort(logits, descending=True)
                    cumulative = torch.softmax(ordered, dim=-1).cumsum(dim=-1)
                    drop = cumulative - torch.softmax(ordered, dim=-1) >= request.top_p  # keep the token that crosses top_p
                    logits[order[drop]] = float("-inf")
                uniform = torch.rand(logits.shape, generator=self.generators[row], device=logits.device)
                exponential = torch.log(uniform.clamp_min(1e-20)).neg().clamp_min(1e-20)
                gumbel = torch.log(exponential).neg()
                scores[row] = (logits + gumbel).to(scores.dtype)
            return scores

    return GumbelSampler()
