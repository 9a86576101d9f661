"""The `local` provider: generation with transformers in this process, with dynamic batching.

One loaded model is shared by every rollout of the process (cached by model folder + adapter + dtype).
`complete()` may be called from many threads at once: a background worker gathers the requests that
arrive within a short window into ONE batched `generate` (left padding), so 8 concurrent rollouts cost
little more than one on a CPU, where decoding is bound by reading the weights, not by arithmetic.

Each reply stops at the end of its first complete JSON object, at an end-of-turn token, at
`max_tokens`, or, with early stop (JSON protocol), as soon as it can no longer become a valid action;
with `constrained="json"` it decodes under a grammar of the action union (local_decoding.py). A row
that stops leaves the batch at once: its caller gets the reply while the other rows go on (generate
still computes the finished row as padding until the batch ends). Sampling uses the Gumbel-max trick
with one random generator per request, so a sampled reply depends on (seed, call number) only, never
on which other requests happened to share its batch; temperature 0 is greedy.
"""

from __future__ import annotations

import copy
import json
import queue
import re
import threading
import time
from concurrent.futures import Future
from typing import Any

from .base import ModelReply, ProviderConfig
from .local_decoding import (GenerationRequest, GenerationResult, RowWatch, grammar_mask, seeded_sampler,
                             stopping_criteria)

DEFAULT_BATCH_WINDOW_S = 0.05  # how long the worker waits for company once a request arrived
DEFAULT_MAX_BATCH = 16
PREFIX_MIN_TOKENS = 64  # shorter shared prefixes are not worth a cache entry
PREFIX_CACHE_ENTRIES = 4


class BatchingEngine:
    """Owns one model + tokenizer and a worker thread that runs batched generation."""

    def __init__(self, model: Any, tokenizer: Any, *, window_s: float = DEFAULT_BATCH_WINDOW_S,
                 max_batch: int = DEFAULT_MAX_BATCH, prefix_cache: bool = True):
        self.model = model
        self.prefix_cache = prefix_cache
        self._prefixes: dict[tuple[int, ...], Any] = {}  # token prefix -> its KV cache (1 row), oldest first
        self._last_prompt: tuple[int, ...] = ()
        self.tokenizer = tokenizer
        self.window_s = window_s
        self.max_batch = max_batch
        self.batch_sizes: list[int] = []  # one entry per generate call: what batching achieved
        self._grammar_compiler: Any = None
        self._grammars: dict[str, Any] = {}  # JSON schema text -> compiled grammar
        self._control_tokens: Any = None  # token ids holding a control character (never valid in compact JSON)
        # A fast tokenizer is not safe to use from several threads at once (its Rust core raises
        # "Already borrowed" when encode settings change mid-decode), so every use takes this lock.
        self.tokenizer_lock = threading.Lock()
        self._queue: queue.Queue[GenerationRequest] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="repo-agent-local-batching", daemon=True)
        self._thread.start()

    @property
    def context_length(self) -> int | None:
        return getattr(self.model.config, "max_position_embeddings", None)

    def clear_prefix_cache(self) -> None:
        """Forget cached prefixes: their KV caches belong to the weights they were computed with (a
        trainer that updates the weights between rollouts calls this after every update)."""
        with self.tokenizer_lock:
            self._prefixes.clear()
            self._last_prompt = ()

    def submit(self, request: GenerationRequest) -> Future:
        self._queue.put(request)
        return request.future

    def _work(self) -> None:
        while True:
            batch = self._gather()
            try:
                results = self.generate(batch, answer_early=True)
            except Exception as exc:  # one bad batch must not kill the worker or hang the callers
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(exc)
                continue
            for request, result in zip(batch, results):
                if not request.future.done():  # rows that stopped early were answered already
                    request.future.set_result(result)

    def _gather(self) -> list[GenerationRequest]:
        batch = [self._queue.get()]
        deadline = time.monotonic() + self.window_s
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                batch.append(self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def generate(self, batch: list[GenerationRequest], answer_early: bool = False) -> list[GenerationResult]:
        """One batched generate. `answer_early`: resolve each request's future as soon as its row stops."""
        with self.tokenizer_lock:
            return self._generate(batch, answer_early)

    def _compiled_grammar(self, schema: str) -> Any:
        """The xgrammar grammar of a JSON schema for this tokenizer, compiled once per schema."""
        if schema not in self._grammars:
            import xgrammar as xgr

            if self._grammar_compiler is None:
                import torch

                stop_ids = _end_of_turn_ids(self.model, self.tokenizer)
                info = xgr.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=self.model.config.vocab_size,
                                                          stop_token_ids=stop_ids)
                self._grammar_compiler = xgr.GrammarCompiler(info)
                self._control_tokens = torch.tensor(
                    [i for i, text in enumerate(info.decoded_vocab) if i not in stop_ids and any(b < 0x20 for b in text)],
                    dtype=torch.long)
            # compact separators: the grammar's output is the canonical rendering (protocol.render_action)
            self._grammars[schema] = self._grammar_compiler.compile_json_schema(
                schema, any_whitespace=False, separators=(",", ":"))
        return self._grammars[schema]

    def _shared_prefix(self, batch: list[GenerationRequest]) -> tuple[int, ...]:
        """The token prefix every prompt of the batch shares with each other and with the previous
        prompt: the system prompt across rollouts, the whole earlier conversation within one rollout."""
        prompts = [r.prompt_ids for r in batch] + ([list(self._last_prompt)] if self._last_prompt else [])
        # every row keeps at least one token to prefill; the previous prompt may be shorter than all
        shortest = min(min(len(r.prompt_ids) for r in batch) - 1, *(len(p) for p in prompts))
        length = 0
        while length < shortest and all(p[length] == prompts[0][length] for p in prompts):
            length += 1
        return tuple(prompts[0][:length]) if length >= PREFIX_MIN_TOKENS else ()

    def _prefix_kv(self, prefix: tuple[int, ...]) -> Any:
        """KV cache of `prefix`, computed incrementally from the longest cached prefix of it."""
        import torch
        from transformers import DynamicCache

        if prefix in self._prefixes:
            self._prefixes[prefix] = self._prefixes.pop(prefix)  # mark as recently used
            return self._prefixes[prefix]
        base = max((k for k in self._prefixes if len(k) < len(prefix) and prefix[: len(k)] == k), key=len, default=())
        cache = copy.deepcopy(self._prefixes[base]) if base else DynamicCache(config=self.model.config)
        with torch.inference_mode():
            self.model(input_ids=torch.tensor([prefix[len(base):]], device=self.model.device), past_key_values=cache, use_cache=True)
        self._prefixes[prefix] = cache
        while len(self._prefixes) > PREFIX_CACHE_ENTRIES:
            self._prefixes.pop(next(iter(self._prefixes)))
        return cache

    def _inputs(self, batch: list[GenerationRequest]) -> tuple[Any, Any, Any]:
        """input_ids, attention_mask and past_key_values. With a shared prefix the rows are
        prefix + padding + own suffix: generate derives positions from the mask (cumsum), so the
        padding in the middle changes nothing but lets all rows reuse one prefix KV cache."""
        import torch

        prefix = self._shared_prefix(batch) if self.prefix_cache else ()
        self._last_prompt = tuple(batch[-1].prompt_ids)
        suffixes = [r.prompt_ids[len(prefix):] for r in batch]
        width = max(len(s) for s in suffixes)
        pad = self.tokenizer.pad_token_id
        ids = [[*prefix, *[pad] * (width - len(s)), *s] for s in suffixes]
        mask = [[1] * len(prefix) + [0] * (width - len(s)) + [1] * len(s) for s in suffixes]
        device = self.model.device
        cache = None
        if prefix:
            cache = copy.deepcopy(self._prefix_kv(prefix))
            cache.batch_repeat_interleave(len(batch))
        return torch.tensor(ids, device=device), torch.tensor(mask, device=device), cache

    def _generate(self, batch: list[GenerationRequest], answer_early: bool) -> list[GenerationResult]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        tokenizer, model = self.tokenizer, self.model
        input_ids, attention_mask, cache = self._inputs(batch)
        eos_ids = _end_of_turn_ids(model, tokenizer)
        watches = [RowWatch(request) for request in batch]

        def answer(row: int) -> None:
            if answer_early and not batch[row].future.done():
                batch[row].future.set_result(watches[row].result(tokenizer, len(batch)))

        stop = stopping_criteria(tokenizer, watches, eos_ids, answer)
        processors = LogitsProcessorList()
        if any(r.schema for r in batch):  # the mask goes first: sampling then only sees allowed tokens
            grammars = [self._compiled_grammar(r.schema) if r.schema else None for r in batch]
            processors.append(grammar_mask(grammars, watches, model.config.vocab_size, self._control_tokens))
        if any(r.temperature > 0 for r in batch):
            processors.append(seeded_sampler(batch, model.device))
        config = GenerationConfig(max_new_tokens=max(r.max_new_tokens for r in batch), do_sample=False, num_beams=1,
                                  repetition_penalty=1.0, eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id)
        self.batch_sizes.append(len(batch))  # before generating: a row answered early may be read at once
        with torch.inference_mode():
            model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config,
                           past_key_values=cache, logits_processor=processors,
                           stopping_criteria=StoppingCriteriaList([stop]))
        return [watch.result(tokenizer, len(batch)) for watch in watches]


def _end_of_turn_ids(model: Any, tokenizer: Any) -> list[int]:
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids = set(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return sorted(ids)


_ENGINES: dict[tuple[str, str | None, str], BatchingEngine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(model_name: str, adapter: str | None = None) -> BatchingEngine:
    """The process-wide engine for (model, adapter, dtype); loads the model on first use."""
    from ..hf_loading import device_settings, load_model, load_tokenizer, resolve_model

    folder = str(resolve_model(model_name).resolve())
    dtype = str(device_settings()["dtype"])
    key = (folder, str(adapter) if adapter else None, dtype)
    with _ENGINES_LOCK:  # held while loading: concurrent rollouts must not load the weights twice
        if key not in _ENGINES:
            _quiet_loading()
            tokenizer = load_tokenizer(folder, padding_side="left")
            _ENGINES[key] = BatchingEngine(load_model(folder, adapter), tokenizer)
        return _ENGINES[key]


def _quiet_loading() -> None:
    """Rollouts draw their own progress; the per-tensor loading bar and PEFT's deprecation note about
    gradient checkpointing (which generation never uses) would only clutter it."""
    import warnings

    import transformers

    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.* is deprecated", category=FutureWarning)


class LocalModel:
    """One rollout's view of the shared engine. Call k of a rollout samples with seed (seed, k).

    JSON-protocol replies (no `tools`) may stop early and, with `constrained="json"`, decode under the
    schema of the action union over `tool_schemas` (default: the protocol's four tools)."""

    def __init__(self, config: ProviderConfig, seed: int, tool_schemas: dict[str, Any] | None = None):
        from ..protocol import TOOL_SCHEMAS, action_json_schema

        self.config = config
        self.seed = seed
        self.calls = 0
        self.schema = (json.dumps(action_json_schema(tool_schemas or TOOL_SCHEMAS), sort_keys=False)
                       if config.constrained == "json" else None)
        self.engine = get_engine(config.model, config.adapter)

    def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> ModelReply:
        started = time.monotonic()
        sampling = self.config.sampling
        try:
            prompt_ids = self._prompt_ids(messages, tools)
        except Exception as exc:
            return ModelReply(content="", error=f"chat template failed: {type(exc).__name__}: {exc}")
        limit = self.engine.context_length
        if limit and len(prompt_ids) + 1 > limit:
            return ModelReply(content="", prompt_tokens=len(prompt_ids), latency_s=time.monotonic() - started,
                              error=f"prompt of {len(prompt_ids)} tokens exceeds the model's context of {limit} tokens")
        max_new = min(sampling.max_tokens, limit - len(prompt_ids)) if limit else sampling.max_tokens
        json_protocol = not tools
        request = GenerationRequest(prompt_ids, max_new, sampling.temperature, sampling.top_p,
                                    seed=(self.seed * 1_000_003 + self.calls) % (2**63),
                                    early_stop=self.config.early_stop and json_protocol,
                                    schema=self.schema if json_protocol else None)
        self.calls += 1
        try:
            result: GenerationResult = self.engine.submit(request).result()
        except Exception as exc:
            return ModelReply(content="", latency_s=time.monotonic() - started, error=f"local generation failed: {type(exc).__name__}: {exc}")
        reply = ModelReply(content=result.text, prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
                           latency_s=time.monotonic() - started, finish_reason=result.finish_reason,
                           stopped_early=result.finish_reason == "early_stop")
        if tools:
            reply.tool_calls = parse_text_tool_calls(result.text)
        return reply

    def _prompt_ids(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> list[int]:
        tokenizer = self.engine.tokenizer
        chat = [_template_message(m) for m in messages]
        kwargs: dict[str, Any] = {}
        if tools:
            if template_supports_tools(tokenizer):
                kwargs["tools"] = tools
            else:
                chat = _tools_in_system_message(chat, tools)
        text = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False, **kwargs)
        with self.engine.tokenizer_lock:
            # the template already wrote the special tokens (BOS included where the model uses one)
            return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def template_supports_tools(tokenizer: Any) -> bool:
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else json.dumps(tokenizer.chat_template)
    return bool(template) and "tools" in template


def _template_message(message: dict[str, Any]) -> dict[str, Any]:
    """Chat templates (Qwen's among them) expect tool-call arguments as a mapping, not a JSON string."""
    if not message.get("tool_calls"):
        return message
    calls = []
    for call in message["tool_calls"]:
        function = dict(call.get("function") or {})
        try:
            function["arguments"] = json.loads(function.get("arguments") or "{}")
        except (TypeError, ValueError):
            pass
        calls.append({**call, "function": function})
    return {**message, "tool_calls": calls}


def _tools_in_system_message(chat: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fallback for templates without tool support: describe the functions in the system message and
    ask for the Hermes-style <tool_call> block that parse_text_tool_calls reads."""
    listing = "\n".join(json.dumps(t["function"], separators=(",", ":")) for t in tools)
    note = ("You can call these functions:\n" + listing + "\nCall one per turn as "
            '<tool_call>{"name": NAME, "arguments": {...}}</tool_call>')
    if chat and chat[0]["role"] == "system":
        return [{**chat[0], "content": f"{chat[0]['content']}\n\n{note}"}, *chat[1:]]
    return [{"role": "system", "content": note}, *chat]


_TOOL_CALL_BLOCK = re.compile(r"<tool_call>\s*(\{.*?\})\s*(?:</tool_call>|$)", re.S)


def parse_text_tool_calls(text: str) -> list[dict[str, Any]] | None:
    """OpenAI-shaped tool calls from generated text: Hermes/Qwen `<tool_call>{...}</tool_call>` blocks or
    one bare {"name": ..., "arguments": ...} object. None when there is none (a parse error upstream)."""
    candidates = _TOOL_CALL_BLOCK.findall(text) or [text.strip()]
    calls = []
    for index, raw in enumerate(candidates):
        try:
            obj = json.loads(raw)
        except ValueError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("name"), str):
            arguments = obj.get("arguments", obj.get("parameters", {}))
            calls.append({"id": f"call_{index}", "type": "function",
                          "function": {"name": obj["name"], "arguments": json.dumps(arguments)}})
    return calls or None
