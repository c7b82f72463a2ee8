"""PaLM-style model presets (DESIGN §3.13, seed 003) expressed in a stock transformers
architecture, so a checkpoint loads with plain `AutoModelForCausalLM.from_pretrained`.

Seed 003's table (dim, depth, heads, head dim, LR; vocab 50304, sequence 2048) with the
PaLM block: attention and MLP in parallel off one LayerNorm, SwiGLU, rotary positions,
multi-query attention, tied embeddings, no biases. transformers' Cohere architecture has
every one of these: `CohereDecoderLayer` adds attention and MLP outputs to the residual
off one bias-free `input_layernorm`, its MLP is SwiGLU (silu gate x up), its rotary
covers the whole head, `num_key_value_heads=1` makes the attention multi-query, `head_dim`
may differ from dim / heads, and it ties embeddings with no biases anywhere. What Cohere
adds is made neutral here (`logit_scale` 1.0, no q/k norm). Falcon (GELU MLP) and GPT-NeoX
(GELU, biases) are further from PaLM. README "Pretraining: model presets and tokenizers"
lists the remaining deviations.

This module holds plain values only (no torch): the config schema imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

ARCHITECTURE = "cohere"
"""The transformers model_type every preset builds."""

ARCHITECTURE_DEFAULTS = {
    # Cohere multiplies the logits by logit_scale (0.0625 in Command-R); PaLM does not
    "logit_scale": 1.0,
    "use_qk_norm": False,
    "attention_bias": False,
    "layer_norm_eps": 1e-5,
    # PaLM's rotary base (Cohere's config defaults to 500,000)
    "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
}
"""Config values of a freshly built Cohere model (preset or not) that make it PaLM's block."""


@dataclass(frozen=True)
class ModelPreset:
    hidden_size: int
    num_layers: int
    num_heads: int
    head_dim: int
    lr: float
    """The table's learning rate: documented, and set by presets/palm-pretrain.yaml; the
    model preset itself fixes the architecture only."""
    vocab_size: int = 50304
    max_position_embeddings: int = 2048

    def size(self) -> dict:
        """The preset as `model.size` (ModelSize) fields."""
        return {
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "num_kv_heads": 1,  # multi-query attention
            "head_dim": self.head_dim,
            "intermediate_size": 4 * self.hidden_size,  # PaLM's SwiGLU width: 4 x dim
            "max_position_embeddings": self.max_position_embeddings,
            "vocab_size": self.vocab_size,
            "tie_word_embeddings": True,
        }


PRESETS: dict[str, ModelPreset] = {
    # for CPU tests, demos and benches: not in the table; its LR is a small-model choice, and
    # its vocabulary is CPU-sized (with 50304 rows the head would be 93% of its compute)
    "palm-tiny": ModelPreset(hidden_size=128, num_layers=2, num_heads=4, head_dim=32, lr=1e-3, vocab_size=8192),
    # seed 003's table
    "palm-150m": ModelPreset(hidden_size=768, num_layers=12, num_heads=8, head_dim=128, lr=6e-4),
    "palm-410m": ModelPreset(hidden_size=1024, num_layers=24, num_heads=8, head_dim=128, lr=3e-4),
    "palm-1b": ModelPreset(hidden_size=2048, num_layers=16, num_heads=8, head_dim=128, lr=3e-4),
}


def resolve_preset(data: dict) -> dict:
    """The `model` mapping with `preset` expanded into `architecture` and `size`. Keys the
    user gave must agree with the preset; a contradiction is a ValueError naming the key."""
    name = data["preset"]
    preset = PRESETS[name]
    if data.get("name_or_path") is not None:
        raise ValueError(
            f"model.preset {name} builds a fresh model and cannot be combined with model.name_or_path "
            f"'{data['name_or_path']}': remove one of them"
        )
    architecture = data.get("architecture", ARCHITECTURE)
    if architecture != ARCHITECTURE:
        raise ValueError(
            f"model.architecture {architecture} contradicts model.preset {name}, which builds a "
            f"{ARCHITECTURE} model: remove model.architecture"
        )
    given = data.get("size") or {}
    if hasattr(given, "model_dump"):  # a ModelSize object: only the fields set on it
        given = given.model_dump(exclude_unset=True)
    if not isinstance(given, dict):
        return data  # not a mapping: ModelSize's own validation reports it
    fixed = preset.size()
    for key, value in given.items():
        if key in fixed and value != fixed[key]:
            raise ValueError(
                f"model.size.{key} {value} contradicts model.preset {name} ({key} {fixed[key]}): a preset "
                "fixes the model's shape; remove model.size or model.preset"
            )
    return {**data, "architecture": ARCHITECTURE, "size": {**given, **fixed}}


def preset_of(architecture: str, size: dict) -> str | None:
    """The preset whose shape `size` (ModelSize fields) is, for messages."""
    if architecture != ARCHITECTURE:
        return None
    return next(
        (name for name, p in PRESETS.items() if all(size.get(k) == v for k, v in p.size().items())),
        None,
    )
