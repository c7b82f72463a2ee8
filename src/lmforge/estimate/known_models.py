"""Architectures of the base models lmforge's presets start from, so `lmforge estimate`
can size them without a download: the values of each model's published config.json on
the Hugging Face hub (facts about the checkpoint, not tunable settings).

A config's `model.name_or_path` matches an entry by its last path component, so both the
hub name and a local copy such as `saved_models/RedPajama-INCITE-Base-3B-v1` (seed 001)
find it.
"""

from __future__ import annotations

KNOWN_MODELS: dict[str, dict] = {
    # seed 001 (presets/oasst-sft.yaml, section redpajama-3b)
    "togethercomputer/RedPajama-INCITE-Base-3B-v1": dict(
        model_type="gpt_neox",
        hidden_size=2560,
        num_hidden_layers=32,
        num_attention_heads=32,
        intermediate_size=10240,
        vocab_size=50432,
        max_position_embeddings=2048,
        rotary_pct=1.0,
        use_parallel_residual=False,
        tie_word_embeddings=False,
        hidden_act="gelu",
        layer_norm_eps=1e-5,
    ),
    # seeds 000 and 004 (presets/memphis-cot.yaml, presets/remask-cot.yaml); the config.json
    # since transformers' native StableLM support (model_type stablelm, no remote code)
    "stabilityai/stablelm-3b-4e1t": dict(
        model_type="stablelm",
        hidden_size=2560,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        intermediate_size=6912,
        vocab_size=50304,
        max_position_embeddings=4096,
        partial_rotary_factor=0.25,
        use_qkv_bias=False,
        tie_word_embeddings=False,
        hidden_act="silu",
        layer_norm_eps=1e-5,
    ),
}


def find_known_model(name_or_path: str) -> str | None:
    """The KNOWN_MODELS key whose last path component matches that of `name_or_path`."""
    wanted = name_or_path.rstrip("/").rsplit("/", 1)[-1].lower()
    return next((key for key in KNOWN_MODELS if key.rsplit("/", 1)[-1].lower() == wanted), None)
