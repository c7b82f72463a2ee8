"""Load a Hugging Face causal LM + tokenizer from a local directory, a .gguf file (or hub
name), or build a fresh model of a stock transformers architecture from a size spec."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PretrainedConfig, PreTrainedModel

from lmforge.errors import LmforgeError
from lmforge.models import gguf, presets

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def looks_local(name: str) -> bool:
    """A path rather than a hub name ('org/model')."""
    return name.startswith((".", "/", "~")) or Path(name).exists() or name.count("/") > 1


def _check_path(name: str, what: str, key: str) -> None:
    if looks_local(name) and not Path(name).expanduser().is_dir():
        raise LmforgeError(f"{key}: {what} directory '{name}' does not exist")


PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.ckpt")


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False, key: str = "model.tokenizer"):
    if gguf.is_gguf(name_or_path):
        tokenizer = gguf.load_gguf_tokenizer(name_or_path, key)
    else:
        _check_path(name_or_path, "tokenizer", key)
        try:
            tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as exc:
            raise LmforgeError(
                f"{key}: cannot load a tokenizer from '{name_or_path}': {str(exc).splitlines()[0]}"
            ) from exc
    if not getattr(tokenizer, "is_fast", False):
        raise LmforgeError(f"{key}: '{name_or_path}' has no fast tokenizer; label masks need offset mappings")
    if tokenizer.eos_token is None:
        raise LmforgeError(f"{key}: tokenizer '{name_or_path}' defines no eos_token")
    if tokenizer.pad_token is None:
        # Padding positions are masked by attention_mask and label -100, so reusing eos is safe.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    name_or_path: str,
    dtype: str = "float32",
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
    quantization_config=None,
    allow_pickle: bool = False,
    pickle_setting: str = "set model.allow_pickle: true",
) -> PreTrainedModel:
    """A pretrained causal LM; `quantization_config` (a transformers BitsAndBytesConfig)
    loads its linear layers quantized. A .gguf file is dequantized: in memory, or, to be
    quantized again, into a safetensors directory converted once (lmforge.models.gguf).

    Weights load from safetensors only, unless `allow_pickle` (model.allow_pickle; the
    error names `pickle_setting`, the switch of the command at hand): a pickled checkpoint
    (.bin, .pt) can run code while it loads."""
    if gguf.is_gguf(name_or_path):
        if quantization_config is None:
            return gguf.load_gguf_model(name_or_path, DTYPES[dtype], attn_implementation)
        # transformers cannot quantize while loading a GGUF file: quantize its dense conversion
        name_or_path = str(gguf.cached_conversion(name_or_path))
    _check_path(name_or_path, "model", "model.name_or_path")
    directory = Path(name_or_path).expanduser()
    if directory.is_dir() and not any(directory.glob("*.safetensors")):
        pickled = sorted(p.name for pattern in PICKLE_PATTERNS for p in directory.glob(pattern))
        if not pickled:
            raise LmforgeError(f"model.name_or_path: '{name_or_path}' holds no model weights (*.safetensors or *.bin)")
        if not allow_pickle:
            raise LmforgeError(
                f"model.name_or_path: '{name_or_path}' holds pickled weights ({pickled[0]}) and no safetensors; "
                f"loading a pickle can run code: convert it to safetensors, or {pickle_setting} "
                "if you trust where it came from"
            )
    if trust_remote_code:
        log.warning("model.trust_remote_code is on: %s may run its own Python code", name_or_path)
    kwargs = {"dtype": DTYPES[dtype], "trust_remote_code": trust_remote_code, "use_safetensors": not allow_pickle}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
        # read the file instead of mapping it: the unquantized tensors (embeddings, norms)
        # would stay views into the mapping, keeping the whole full-precision file resident
        kwargs["disable_mmap"] = True
    try:
        return AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs)
    except (OSError, ValueError) as exc:
        raise LmforgeError(f"model.name_or_path: cannot load '{name_or_path}': {str(exc).splitlines()[0]}") from exc


# Config field names of each stock architecture for the generic size spec.
_LLAMA_FIELDS = dict(
    hidden_size="hidden_size",
    num_layers="num_hidden_layers",
    num_heads="num_attention_heads",
    num_kv_heads="num_key_value_heads",
    intermediate_size="intermediate_size",
    max_position_embeddings="max_position_embeddings",
)
_SIZE_FIELDS = {
    "llama": {**_LLAMA_FIELDS, "head_dim": "head_dim"},
    "mistral": {**_LLAMA_FIELDS, "head_dim": "head_dim"},
    "qwen2": _LLAMA_FIELDS,
    "cohere": {**_LLAMA_FIELDS, "head_dim": "head_dim"},
    "gpt2": dict(
        hidden_size="n_embd",
        num_layers="n_layer",
        num_heads="n_head",
        intermediate_size="n_inner",
        max_position_embeddings="n_positions",
    ),
    # GPT-NeoX names its fields as Llama does but has no key/value heads of its own
    "gpt_neox": {key: name for key, name in _LLAMA_FIELDS.items() if key != "num_kv_heads"},
}
_DEFAULT_INTERMEDIATE = {"llama": lambda h: (8 * h) // 3, "qwen2": lambda h: 4 * h, "mistral": lambda h: 4 * h}
_DEFAULT_INTERMEDIATE["cohere"] = _DEFAULT_INTERMEDIATE["qwen2"]  # PaLM's SwiGLU: 4 x dim
_ARCHITECTURE_DEFAULTS = {presets.ARCHITECTURE: presets.ARCHITECTURE_DEFAULTS}


def fresh_model_config(
    architecture: str, size: dict, tokenizer, attn_implementation: str | None = None
) -> PretrainedConfig:
    """The transformers config of a fresh `architecture` model sized by `size` (ModelSize
    fields) for `tokenizer`; `build_model` builds from it, `lmforge estimate` measures it."""
    names = _SIZE_FIELDS[architecture]
    if size.get("head_dim") is not None and "head_dim" not in names:
        raise LmforgeError(
            f"model.size.head_dim: a {architecture} model's head width is hidden_size / num_heads; "
            f"remove head_dim (it is set for {', '.join(a for a in _SIZE_FIELDS if 'head_dim' in _SIZE_FIELDS[a])})"
        )
    kwargs = {names[k]: v for k, v in size.items() if k in names and v is not None}
    if architecture in _DEFAULT_INTERMEDIATE and size.get("intermediate_size") is None:
        kwargs["intermediate_size"] = _DEFAULT_INTERMEDIATE[architecture](size["hidden_size"])
    vocab_size = size.get("vocab_size") or len(tokenizer)
    if len(tokenizer) > vocab_size:
        preset = presets.preset_of(architecture, size)
        rows = f"model.preset {preset}'s {vocab_size}" if preset else f"model.size.vocab_size {vocab_size}"
        raise LmforgeError(
            f"model.tokenizer: its {len(tokenizer)} tokens do not fit {rows} embedding rows; "
            f"use a tokenizer of at most {vocab_size} tokens (lmforge tokenizer train --vocab-size)"
        )
    config = AutoConfig.for_model(
        architecture,
        vocab_size=vocab_size,
        tie_word_embeddings=size.get("tie_word_embeddings", True),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **{**_ARCHITECTURE_DEFAULTS.get(architecture, {}), **kwargs},
    )
    if attn_implementation:
        config._attn_implementation = attn_implementation
    return config


def build_model(
    architecture: str,
    size: dict,
    tokenizer,
    dtype: str = "float32",
    seed: int = 0,
    attn_implementation: str | None = None,
) -> PreTrainedModel:
    """A randomly initialised model sized by `size` (ModelSize fields) for `tokenizer`."""
    config = fresh_model_config(architecture, size, tokenizer, attn_implementation)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, dtype=DTYPES[dtype])
