"""Tiny causal LMs built from a config (no download) for tests: a Llama or Qwen2 model with a few
thousand parameters per layer and a byte-level BPE tokenizer trained on repo-agent's own prompt text.

Two facts shape this file:
- a tiny random model learns visibly in a few LoRA steps only with a large initializer_range (~0.2);
- a Qwen2 tokenizer is rebuilt on load with Qwen's NFC normalizer and regex pre-tokenizer, so one
  trained with anything else would change its ids after save + reload.
"""

from __future__ import annotations

from pathlib import Path

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
ARCHITECTURES = ("llama", "qwen2")


def _corpus() -> list[str]:
    from repo_agent.prompts import goal_message, system_prompt
    from repo_agent.toolsets import FILES

    root = Path(__file__).resolve().parents[1] / "eval" / "suites" / "bundled"
    code = [p.read_text() for p in sorted(root.rglob("*.py"))[:40]]
    return [system_prompt("json"), system_prompt("native"), FILES.expected_shape_hint(), goal_message("Fix gcd so its tests pass."),
            "[tool_result]\nERROR: invalid_json: the reply is not valid JSON.", *code] * 3


def _train_tokenizer(arch: str, vocab_size: int):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    if arch == "qwen2":
        from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

        tokenizer.normalizer = normalizers.NFC()
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(_corpus(), trainer)
    return tokenizer


def _wrap_tokenizer(arch: str, raw, folder: Path):
    import json

    from transformers import PreTrainedTokenizerFast

    names = dict(eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    if arch == "qwen2":
        from transformers import Qwen2Tokenizer

        model = json.loads(raw.to_str())["model"]
        tokenizer = Qwen2Tokenizer(vocab=model["vocab"], merges=[tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]], **names)
    else:
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, **names)
    tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.save_pretrained(folder)
    return tokenizer


def build_tiny_model(folder: str | Path, arch: str = "llama", *, seed: int = 0, vocab_size: int = 600,
                     hidden_size: int = 64, layers: int = 2, initializer_range: float = 0.2) -> Path:
    """Write a tiny model + tokenizer + chat template into `folder` (idempotent) and return it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LlamaConfig, Qwen2Config

    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {ARCHITECTURES}")
    folder = Path(folder)
    if (folder / "config.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _wrap_tokenizer(arch, _train_tokenizer(arch, vocab_size), folder)
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in SPECIAL_TOKENS}
    config_class = Qwen2Config if arch == "qwen2" else LlamaConfig
    config = config_class(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16384,
        initializer_range=initializer_range, tie_word_embeddings=False,
        bos_token_id=ids["<|im_start|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    model.save_pretrained(folder)
    reloaded = AutoTokenizer.from_pretrained(folder)
    probe = "GOAL:\nFix gcd so its tests pass. {\"type\":\"final\"} café"
    if reloaded(probe)["input_ids"] != tokenizer(probe)["input_ids"]:
        raise AssertionError(f"the {arch} tokenizer changes its ids on reload")
    return folder


def shared_tiny_model(tmp_path_factory, arch: str = "llama") -> Path:
    """One tiny model per test session, whichever test module asks first (the build is idempotent)."""
    return build_tiny_model(tmp_path_factory.getbasetemp() / "tiny-models" / arch, arch)


LEARNED_ACTION = '{"type":"final","summary":"done"}'


def learnable_rows(count: int = 8) -> list[dict]:
    """Short SFT rows whose target action a tiny model memorises in ~15 LoRA steps."""
    return [{"messages": [{"role": "user", "content": f"GOAL:\nFix task{i}."}, {"role": "assistant", "content": LEARNED_ACTION}]}
            for i in range(count)]


def shared_learned_adapter(tmp_path_factory, model: Path) -> Path:
    """A LoRA adapter that has learned LEARNED_ACTION (trained once per session; reruns are no-ops)."""
    import json

    from repo_agent.train.common import LocalTrainConfig
    from repo_agent.train.local import train

    root = tmp_path_factory.getbasetemp() / "learned-adapter"
    root.mkdir(exist_ok=True)
    dataset = root / "short.jsonl"
    if not dataset.exists():
        dataset.write_text("".join(json.dumps(r) + "\n" for r in learnable_rows()))
    config = LocalTrainConfig(method="sft", model=str(model), dataset=str(dataset), output=str(root / "adapter"),
                              max_steps=15, batch_size=4, learning_rate=1e-2, lora_r=8, lora_alpha=16, lora_dropout=0.0)
    train(config)
    return root / "adapter"
