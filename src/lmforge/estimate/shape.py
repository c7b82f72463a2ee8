"""The model whose training `lmforge estimate` sizes: its transformers config, and the
parameter counts of the model built from it on the meta device (exact, no memory used).

Where the config comes from, in order: a fresh model's size spec (the same config
`build_model` builds from); a local directory's config.json; the Hugging Face cache
(offline, never a download); lmforge's table of the presets' base models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig

from lmforge.errors import LmforgeError
from lmforge.estimate.activations import FAMILIES, Dims
from lmforge.estimate.known_models import KNOWN_MODELS, find_known_model
from lmforge.models.freezing import freeze_embeddings
from lmforge.models.loading import DTYPES, fresh_model_config, load_tokenizer


@dataclass(frozen=True)
class ModelShape:
    source: str
    """Where the architecture came from, in words."""
    model_type: str
    family: str
    dims: Dims
    vocab: int
    max_positions: int | None
    parallel_residual: bool
    parameters: int
    trainable: int
    linear_parameters: int
    """Weights of nn.Linear layers: the ones autocast copies to 16 bits for the matmuls."""
    layer_parameters: int
    """One decoder layer (an FSDP unit)."""
    largest_module: int
    """The most parameters one module holds directly (ZeRO-3 gathers module by module)."""
    small_parameters: int
    """Parameters in tensors below ZeRO-3's persistence threshold (10 x hidden, the value
    transformers fills in for "auto"): never partitioned."""
    trainable_shapes: tuple[tuple[int, ...], ...]
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class ModelSource:
    """The model part of a config, as plain values."""

    name_or_path: str | None
    architecture: str
    size: dict
    tokenizer: str | None
    trust_remote_code: bool
    dtype: str
    freeze_embeddings: bool


def resolve_config(source: ModelSource) -> tuple[PretrainedConfig, str, object | None]:
    """(transformers config, where it came from, tokenizer if one loads locally)."""
    name = source.name_or_path
    if name is None:
        tokenizer = load_tokenizer(source.tokenizer, source.trust_remote_code)
        config = fresh_model_config(source.architecture, source.size, tokenizer)
        return config, f"fresh {source.architecture} model (model.size, tokenizer {source.tokenizer})", tokenizer
    directory = Path(name).expanduser()
    if (directory / "config.json").is_file():
        try:
            config = AutoConfig.from_pretrained(str(directory), trust_remote_code=source.trust_remote_code)
        except (OSError, ValueError) as exc:
            raise LmforgeError(
                f"model.name_or_path: cannot read {directory / 'config.json'}: {str(exc).splitlines()[0]}"
            ) from exc
        return config, f"local config.json ({directory / 'config.json'})", _local_tokenizer(source)
    try:  # already downloaded to the Hugging Face cache: no network access
        config = AutoConfig.from_pretrained(name, local_files_only=True, trust_remote_code=source.trust_remote_code)
        return config, f"Hugging Face cache ({name})", _local_tokenizer(source)
    except (OSError, ValueError):
        pass
    known = find_known_model(name)
    if known is None:
        raise LmforgeError(
            f"model.name_or_path: '{name}' is not a local directory, not in the Hugging Face cache, nor a model "
            f"lmforge knows offline ({', '.join(KNOWN_MODELS)}); point it at a local directory holding config.json"
        )
    fields = dict(KNOWN_MODELS[known])
    config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    return config, f"published config.json of {known} (lmforge/estimate/known_models.py)", None


def _local_tokenizer(source: ModelSource):
    try:
        return load_tokenizer(source.tokenizer or source.name_or_path, source.trust_remote_code)
    except LmforgeError:
        return None  # a directory with only config.json is enough to size the model


def meta_model(config: PretrainedConfig, dtype: str, added_rows: int | None, trust_remote_code: bool = False):
    """`config`'s model on the meta device (shapes only, no memory), its embeddings grown by
    `added_rows` as adding lmforge's special tokens grows them."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=DTYPES[dtype], trust_remote_code=trust_remote_code)
        if added_rows:
            model.resize_token_embeddings(
                model.get_input_embeddings().weight.shape[0] + added_rows, mean_resizing=False
            )
    return model


def measure_model(
    config: PretrainedConfig,
    source: str,
    dtype: str,
    freeze: bool,
    added_rows: int | None,
    tokens_added: bool | None,
    trust_remote_code: bool = False,
    key: str = "model",
) -> ModelShape:
    """Count the parameters of `config`'s model built on the meta device.

    added_rows: embedding rows the vocabulary needs beyond the config's (tokens lmforge
    adds); tokens_added: whether lmforge adds any token (None: unknown, no tokenizer);
    key: the config key errors name.
    """
    family = FAMILIES.get(config.model_type)
    if family is None:
        raise LmforgeError(
            f"{key}: lmforge estimate has no activation formula for model_type "
            f"'{config.model_type}' (it knows {', '.join(FAMILIES)})"
        )
    model = meta_model(config, dtype, added_rows, trust_remote_code)
    notes = []
    if freeze:
        if tokens_added is False:
            freeze_embeddings(model, [])
        else:
            # freeze_embeddings keeps matrices with added rows trainable (a hook zeroes the
            # other rows' gradients), so they keep full gradients and optimizer state
            notes.append(
                "model.freeze_embeddings: the embeddings keep full gradients and optimizer state "
                + (
                    "because lmforge adds special tokens to this tokenizer"
                    if tokens_added
                    else "(assumed: without the tokenizer, lmforge's added tokens cannot be ruled out)"
                )
            )
    params = list(model.parameters())  # tied weights once
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    layers = [m for m in model.modules() if type(m).__name__ in set(model._no_split_modules or ())]
    linear = {id(m.weight): m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear)}
    threshold = 10 * config.hidden_size
    return ModelShape(
        source=source,
        model_type=config.model_type,
        family=family,
        dims=Dims(config.hidden_size, kv_heads * head_dim, config.intermediate_size, heads, config.num_hidden_layers),
        vocab=model.get_input_embeddings().weight.shape[0],
        max_positions=getattr(config, "max_position_embeddings", None),
        parallel_residual=bool(getattr(config, "use_parallel_residual", False)),
        parameters=sum(p.numel() for p in params),
        trainable=sum(p.numel() for p in params if p.requires_grad),
        linear_parameters=sum(linear.values()),
        layer_parameters=sum(p.numel() for p in layers[0].parameters()) if layers else 0,
        largest_module=max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules()),
        small_parameters=sum(p.numel() for p in params if p.numel() < threshold),
        trainable_shapes=tuple(tuple(p.shape) for p in params if p.requires_grad),
        notes=tuple(notes),
    )


def _resolve_with_tokens(source: ModelSource, needed_tokens):
    """(config, where it came from, embedding rows lmforge's tokens add, whether it adds any)."""
    config, where, tokenizer = resolve_config(source)
    added_rows = tokens_added = None
    if tokenizer is not None:
        vocab = tokenizer.get_vocab()
        missing = {t for t in needed_tokens(tokenizer) if t not in vocab}
        tokens_added = bool(missing)
        # models/tokens.py grows the embeddings only when the tokenizer outgrows them
        added_rows = max(0, len(tokenizer) + len(missing) - config.vocab_size)
    return config, where, added_rows, tokens_added


def model_shape(source: ModelSource, needed_tokens) -> ModelShape:
    """The model `source` describes, with the special tokens lmforge would add to its
    tokenizer: `needed_tokens(tokenizer)` lists the tokens the run needs."""
    config, where, added_rows, tokens_added = _resolve_with_tokens(source, needed_tokens)
    key = "model.name_or_path" if source.name_or_path else "model.architecture"
    return measure_model(
        config, where, source.dtype, source.freeze_embeddings, added_rows, tokens_added, source.trust_remote_code, key
    )


def parameter_count(source: ModelSource, needed_tokens) -> tuple[int, str]:
    """(parameters of the model training builds or loads, where its architecture came
    from): counted on the meta device, tied weights once, lmforge's special tokens
    included; for any architecture, not only those `lmforge estimate` has formulas for."""
    config, where, added_rows, _ = _resolve_with_tokens(source, needed_tokens)
    model = meta_model(config, source.dtype, added_rows, source.trust_remote_code)
    return sum(p.numel() for p in model.parameters()), where
