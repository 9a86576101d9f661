"""The loss-mask audit: token by token, which tokens carry loss, against what the data format says.

Convention for template tokens (shown in every report): loss is on the text of a model reply and on the
end-of-turn token that closes it when the model produced that token; role headers, the environment's
messages ([tool_result] ...) and whatever the template adds are masked. In step-level SFT data the
target is the LAST assistant message (PROTOCOL.md: earlier assistant turns have weight 0) and TRL
trains its whole rendering after the generation prompt (its end-of-turn included); an episode row
(`sft-extract --rows episode`) trains every assistant message with weight 1 the same way, each exactly
as its step row would. In a GRPO episode
every model-generated token carries loss and nothing else; whether the one end-of-turn token right
after a reply was sampled or added by the driver (which stops replies at the end of their JSON) cannot
be read from the text, so that single token may be either.

Failures: a mask that differs from the above, mask and ids of different lengths, ids that do not
decode to the conversation, a chat template that is not prefix-preserving (turn k's tokens are not a
prefix of turn k+1's), and an example cut at the length limit inside a trained turn (unless it is a
truncated GRPO episode that TRL masks out).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONVENTION = ("trained = the model's reply text (+ the end-of-turn token closing it when the model produced it); "
              "masked = role headers, environment messages, template text")
EITHER = 2  # expected value of a token that may be trained or not (see the module docstring)


@dataclass
class AuditItem:
    name: str
    kind: str  # grpo | sft
    ids: list[int]
    trained: list[int]  # the mask under audit, over `ids`
    expected: list[int]  # 0, 1 or EITHER
    pieces: list[str]  # decoded text of each token
    prompt_length: int = 0  # ids[:prompt_length] are the prompt (never trained)
    problems: list[str] = field(default_factory=list)

    def mismatches(self) -> list[int]:
        return [i for i, (got, want) in enumerate(zip(self.trained, self.expected)) if want != EITHER and got != want]


@dataclass
class AuditReport:
    items: list[AuditItem]

    @property
    def ok(self) -> bool:
        return not self.failures()

    def failures(self) -> list[str]:
        lines = []
        for item in self.items:
            lines += [f"{item.name}: {p}" for p in item.problems]
            wrong = item.mismatches()
            if wrong:
                first = wrong[0]
                lines.append(f"{item.name}: {len(wrong)} token(s) masked wrongly, first at token {first} "
                             f"({item.pieces[first]!r}: trained={item.trained[first]}, should be {item.expected[first]})")
        return lines

    def summary_line(self) -> str:
        tokens = sum(len(i.ids) for i in self.items)
        trained = sum(sum(i.trained) for i in self.items)
        state = "passed" if self.ok else f"FAILED ({len(self.failures())} problem(s))"
        return f"mask audit {state}: {len(self.items)} sequence(s), {tokens} tokens, {trained} trained"


def _char_offsets(tokenizer: Any, ids: list[int]) -> tuple[list[str], list[int]]:
    """Each token's text and start offset in the decoded sequence (decoding prefixes, so multi-byte
    characters split over tokens land on the token that completes them)."""
    singles = [tokenizer.decode([t], skip_special_tokens=False) for t in ids]
    if "\ufffd" not in "".join(singles) and "".join(singles) == tokenizer.decode(ids, skip_special_tokens=False):
        offsets, total = [], 0
        for piece in singles:
            offsets.append(total)
            total += len(piece)
        return singles, offsets
    final = tokenizer.decode(ids, skip_special_tokens=False)
    offsets, settled = [], 0
    for end in range(len(ids)):  # token i starts where the text settled before it (a split character belongs to its last token)
        offsets.append(settled)
        prefix = tokenizer.decode(ids[: end + 1], skip_special_tokens=False)
        settled = max(settled, min(len(prefix.rstrip("\ufffd")), len(final)))
    bounds = offsets + [len(final)]
    return [final[bounds[i]:bounds[i + 1]] for i in range(len(ids))], offsets


def _run_offsets(tokenizer: Any, ids: list[int], runs: list[int]) -> tuple[list[str], list[int]]:
    """Token texts and offsets, decoding each run of equal `runs` values on its own: a reply is decoded
    as the reply it was (a byte-level model may end a reply inside a multi-byte character, which the
    reply's text shows as U+FFFD; decoded together with the next message, those bytes would read
    differently)."""
    pieces: list[str] = []
    offsets: list[int] = []
    start, total = 0, 0
    for end in range(1, len(ids) + 1):
        if end == len(ids) or runs[end] != runs[start]:
            run_pieces, run_offsets = _char_offsets(tokenizer, ids[start:end])
            pieces += run_pieces
            offsets += [total + o for o in run_offsets]
            total += len("".join(run_pieces))
            start = end
    return pieces, offsets


def _spans_expected(offsets: list[int], pieces: list[str], spans: list[tuple[int, int]], eos_texts: set[str],
                    prompt_length: int, either_after: bool) -> list[int]:
    """1 for a token inside a reply span, EITHER for an end-of-turn token right after one (GRPO), else 0."""
    expected = []
    for index, (start, piece) in enumerate(zip(offsets, pieces)):
        end = start + max(1, len(piece))  # a token holding part of a character belongs with the character
        value = 0
        if index >= prompt_length:
            for s, e in spans:
                if s <= start and end <= e:
                    value = 1
                    break
                if either_after and start == e and piece in eos_texts:
                    value = EITHER
                    break
        expected.append(value)
    return expected


def audit_episode(tokenizer: Any, name: str, conversation: list[dict[str, Any]], prompt_ids: list[int],
                  completion_ids: list[int], mask: list[int], *, truncated: bool = False, mask_truncated: bool = True,
                  problems: list[str] | None = None, continued: list[dict[str, Any]] | None = None) -> AuditItem:
    """A GRPO episode: prompt + completion ids with the env mask, against the conversation (up to its
    last reply; `continued`: with the tool result after it, which a budget-cut episode may hold)."""
    from .episode_tokens import render

    problems = list(problems or [])
    ids = list(prompt_ids) + list(completion_ids)
    if len(mask) != len(completion_ids):
        problems.append(f"mask has {len(mask)} entries for {len(completion_ids)} completion tokens")
    trained = [0] * len(prompt_ids) + list(mask[: len(completion_ids)]) + [0] * max(0, len(completion_ids) - len(mask))
    pieces, offsets = _run_offsets(tokenizer, ids, [-1] * len(prompt_ids) + trained[len(prompt_ids):])
    text = "".join(pieces)
    spans, eos_texts = [], {tokenizer.decode([t]) for t in _eos_ids(tokenizer)}
    for index, message in enumerate(conversation):
        if message["role"] != "assistant":
            continue
        before = render(tokenizer, conversation[:index], generation_prompt=True)
        after = render(tokenizer, conversation[: index + 1], generation_prompt=False)
        if not after.startswith(before + (message.get("content") or "")):
            problems.append(f"turn {index}: the template does not render the reply right after the generation prompt "
                            "(not prefix-preserving)")
        spans.append((len(before), len(before) + len(message.get("content") or "")))
    closed = render(tokenizer, conversation, generation_prompt=False)
    if truncated:
        longest = render(tokenizer, continued, generation_prompt=True) if continued else closed
        if not longest.startswith(text) and not closed.startswith(text):
            at = next((i for i, (a, b) in enumerate(zip(text, longest)) if a != b), min(len(text), len(longest)))
            problems.append(f"the ids do not decode to a prefix of the episode's conversation (they differ at "
                            f"character {at}: {text[at:at + 30]!r} vs {longest[at:at + 30]!r})")
    elif not closed.startswith(text) or not text.strip() or not _only_template_left(closed[len(text):]):
        problems.append("the ids do not decode to the episode's conversation")
    expected = _spans_expected(offsets, pieces, spans, eos_texts, len(prompt_ids), either_after=True)
    if truncated and mask_truncated:
        expected = [e if e == 0 else EITHER for e in expected]  # TRL drops the loss of truncated completions itself
    elif truncated and trained and trained[-1]:
        problems.append("cut at the token budget inside a trained turn, and truncated completions are not masked")
    return AuditItem(name, "grpo", ids, trained, expected, pieces, len(prompt_ids), problems)


def _only_template_left(rest: str) -> bool:
    """After the episode's last end-of-turn only template whitespace may follow (e.g. ChatML's newline)."""
    return rest.strip() == ""


def _eos_ids(tokenizer: Any) -> list[int]:
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return ids


def audit_rollouts(tokenizer: Any, rollouts: list[Any], mask_truncated: bool = True) -> AuditReport:
    """The rollouts of one GRPO batch (grpo_rollout.Rollout)."""
    from .episode_tokens import conversation_of

    items = []
    for rollout in rollouts:
        tokens = rollout.tokens
        items.append(audit_episode(tokenizer, Path(rollout.trace_path).name, conversation_of(rollout.trace),
                                   tokens.prompt_ids, tokens.completion_ids, tokens.mask, truncated=tokens.budget_cut,
                                   mask_truncated=mask_truncated, problems=tokens.problems,
                                   continued=conversation_of(rollout.trace, last_result=True)))
    return AuditReport(items)


def replay_trace(tokenizer: Any, trace: dict[str, Any], token_budget: int = 1 << 30) -> Any:
    """How GRPO would tokenize and mask a recorded episode: the PolicyModel, fed the trace's replies."""
    from ..models.base import Sampling
    from .episode_tokens import PolicyModel, conversation_of, encode

    steps = trace.get("steps") or []
    eos = _eos_ids(tokenizer)

    def replayed(prompt_ids: list[int], max_new: int, seed: int) -> tuple[list[int], str, str]:
        content = steps[policy.calls]["assistant_message"].get("content") or ""
        return encode(tokenizer, content), content, "stop"

    policy = PolicyModel(tokenizer, replayed, Sampling(max_tokens=1 << 30), token_budget, seed=0)
    messages = [dict(m) for m in trace.get("prompt_messages") or []]
    for index, step in enumerate(steps):
        reply = policy.complete(messages)
        if reply.error:
            break
        messages += [step["assistant_message"]] + ([step["result_message"]] if step.get("result_message") else [])
    return policy.finish(conversation_of(trace), eos)


def audit_traces(tokenizer: Any, traces: list[tuple[str, dict[str, Any]]]) -> AuditReport:
    from .episode_tokens import conversation_of

    items = []
    for name, trace in traces:
        tokens = replay_trace(tokenizer, trace)
        items.append(audit_episode(tokenizer, name, conversation_of(trace), tokens.prompt_ids, tokens.completion_ids,
                                   tokens.mask, truncated=tokens.budget_cut, problems=tokens.problems,
                                   continued=conversation_of(trace, last_result=True)))
    return AuditReport(items)


def audit_sft_row(tokenizer: Any, name: str, row: dict[str, Any], max_length: int | None = None) -> AuditItem:
    """An SFT row (a step row, or an episode row with several weighted turns) as the local trainer masks
    it (episode_tokens.weighted_sequence: the labels training uses), against the format: loss on every
    assistant message with weight 1 (a row without weights: its last message), from the end of the
    generation prompt before it to the end of its rendering, and nowhere else."""
    import json

    from .episode_tokens import trained_turns, weighted_sequence

    problems = []
    if "messages" in row:
        messages = row["messages"]
    else:
        messages = [*({**m, "weight": 0} for m in row.get("prompt") or []), *({**m, "weight": 1} for m in row.get("completion") or [])]
    tools = row.get("tools")
    tools = json.loads(tools) if isinstance(tools, str) else tools
    if not messages or messages[-1].get("role") != "assistant":
        problems.append("the row does not end with an assistant message")
    if not trained_turns(messages):
        problems.append("no assistant message carries loss")
    seq = weighted_sequence(tokenizer, messages, tools or None)
    problems += seq.problems
    kwargs = {"tools": tools} if tools else {}
    _check_turn_prefixes(tokenizer, [{k: v for k, v in m.items() if k != "weight"} for m in messages], problems, kwargs)
    ids, trained = seq.ids, seq.mask
    pieces, offsets = _char_offsets(tokenizer, ids)
    expected = []
    for start, piece in zip(offsets, pieces):
        end = start + max(1, len(piece))
        expected.append(1 if any(s <= start and end <= e for s, e in seq.spans) else 0)
    for index in trained_turns(messages):
        content = messages[index].get("content") or ""
        before = tokenizer.apply_chat_template([{k: v for k, v in m.items() if k != "weight"} for m in messages[:index]],
                                               add_generation_prompt=True, tokenize=False, **kwargs)
        if content and not seq.text.startswith(before + content):
            problems.append(f"message {index}: the template does not render the reply right after the generation prompt")
    prompt_length = seq.turns[0][0] if seq.turns else len(ids)
    if max_length is not None and len(ids) > max_length:
        if any(end > max_length for _, end in seq.turns):
            problems.append(f"{len(ids)} tokens: a cut at --max-seq-len {max_length} falls inside a trained turn")
        ids, trained, expected, pieces = ids[:max_length], trained[:max_length], expected[:max_length], pieces[:max_length]
    return AuditItem(name, "sft", ids, trained, expected, pieces, prompt_length, problems)


def _check_turn_prefixes(tokenizer: Any, messages: list[dict[str, Any]], problems: list[str], kwargs: dict[str, Any]) -> None:
    """Turn k's tokens (up to its end) must be a prefix of turn k+1's rendering."""
    previous: list[int] | None = None
    for end in range(1, len(messages) + 1):
        text = tokenizer.apply_chat_template(messages[:end], tokenize=False, **kwargs)
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        if previous is not None and ids[: len(previous)] != previous:
            problems.append(f"turn {end - 2}'s tokens are not a prefix of turn {end - 1}'s rendering")
            return
        previous = ids


def audit_sft_file(tokenizer: Any, path: Path, max_length: int | None = None, limit: int | None = None) -> AuditReport:
    from .common import read_jsonl

    rows = read_jsonl(path)[:limit] if limit else read_jsonl(path)
    return AuditReport([audit_sft_row(tokenizer, f"{path.name}#{i + 1}", row, max_length) for i, row in enumerate(rows)])


# ------------------------------------------------------------------ rendering


def render_terminal(item: AuditItem, console: Any, max_tokens: int | None = None) -> None:
    """Trained tokens on green, masked ones dim, mask errors on red (rich markup)."""
    from rich.text import Text

    wrong = set(item.mismatches())
    text = Text()
    for index, piece in enumerate(item.pieces[: max_tokens or len(item.pieces)]):
        style = "white on red" if index in wrong else ("black on green" if item.trained[index] else "dim")
        text.append(piece.replace("\n", "⏎\n"), style=style)
    console.print(text)


def write_html(report: AuditReport, path: Path, title: str = "mask audit") -> Path:
    rows = []
    for item in report.items:
        wrong = set(item.mismatches())
        spans = "".join(
            f'<span class="{"bad" if i in wrong else ("t" if item.trained[i] else "m")}" title="#{i} id={item.ids[i]} '
            f'trained={item.trained[i]} expected={item.expected[i]}">{html.escape(p)}</span>'
            for i, p in enumerate(item.pieces))
        problems = "".join(f"<li>{html.escape(p)}</li>" for p in item.problems)
        status = "ok" if not item.problems and not wrong else "FAILED"
        rows.append(f"<section><h2>{html.escape(item.name)} ({item.kind}) — {status}: {len(item.ids)} tokens, "
                    f"{sum(item.trained)} trained, {len(wrong)} wrong</h2><ul>{problems}</ul><pre>{spans}</pre></section>")
    page = (f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
            "body{font-family:sans-serif;margin:1em}pre{white-space:pre-wrap;font-size:12px;line-height:1.5}"
            ".t{background:#b7f0b1}.m{color:#777}.bad{background:#f4a3a3;outline:1px solid #c00}"
            "span{border-right:1px dotted #ccc}</style>"
            f"<h1>{html.escape(title)}</h1><p>{html.escape(report.summary_line())}</p>"
            f"<p>Convention: {html.escape(CONVENTION)}. <span class='t'>trained</span> <span class='m'>masked</span> "
            f"<span class='bad'>mask differs from the format</span></p>" + "".join(rows))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
