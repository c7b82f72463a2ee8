"""Find and load what an evaluation needs from a directory: a finished run (its model/), an
lmforge model directory, a Trainer checkpoint-N/ (weights, maybe without the tokenizer or
lmforge.json: those then come from the run's model/ or the Trainer's saved tokenizer), or
any Hugging Face causal-LM directory."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmforge.data.sources import file_sha256
from lmforge.errors import LmforgeError
from lmforge.models.adapters import is_adapter_dir, load_adapter_model
from lmforge import rundir
from lmforge.checkpoints import checkpoint_step

MODEL_META_FILE = "lmforge.json"  # written by train.pipeline.save_final_model
WEIGHT_PATTERNS = ("*.safetensors", "*.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


@dataclass
class ModelSource:
    """Where the weights, tokenizer and prompt-format metadata of one checkpoint live."""

    weights_dir: Path
    tokenizer_dir: Path
    meta: dict[str, Any] = field(default_factory=dict)
    step: int | None = None


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    meta: dict[str, Any]
    source: ModelSource


def weight_files(directory: Path) -> list[Path]:
    return sorted(
        p
        for pattern in WEIGHT_PATTERNS
        for p in directory.glob(pattern)
        if not p.name.startswith(("optimizer", "scheduler", "rng_state", "training_args"))
    )


def has_tokenizer(directory: Path) -> bool:
    return any((directory / name).is_file() for name in TOKENIZER_FILES)


def _read_meta(directory: Path) -> dict[str, Any] | None:
    path = directory / MODEL_META_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _run_meta(run_dir: Path) -> dict[str, Any]:
    """Prompt format of a run whose final model is not written yet: from its config.yaml."""
    final = _read_meta(run_dir / rundir.MODEL_DIR)
    if final is not None:
        return final
    prompt_format = (rundir.read_config(run_dir).get("data") or {}).get("prompt_format")
    return {"prompt_format": prompt_format} if prompt_format else {}


def resolve(path: str | Path) -> ModelSource:
    """The weights/tokenizer/meta locations for `path`; a one-line error when any is missing."""
    directory = Path(path)
    if not directory.is_dir():
        raise LmforgeError(f"{directory}: model directory does not exist")
    run = rundir.read_run(directory)
    if run is not None:  # a run directory: its final model, once the run finished
        if run.get("status") != "finished":
            raise LmforgeError(
                f"{directory}: the run is {run.get('status')}, it has no final model yet "
                "(evaluate one of its checkpoint-N directories, or use lmforge sweep)"
            )
        directory = directory / rundir.MODEL_DIR
    if not weight_files(directory):
        raise LmforgeError(f"{directory}: holds no model weights (*.safetensors or *.bin)")
    step = checkpoint_step(directory)
    run_dir = directory.parent if step is not None else None
    tokenizer_dir = directory
    if not has_tokenizer(directory):
        fallback = run_dir / rundir.MODEL_DIR if run_dir is not None else None
        if fallback is None or not has_tokenizer(fallback):
            where = f" or in {fallback}" if fallback is not None else ""
            raise LmforgeError(f"{directory}: no tokenizer here{where} (tokenizer.json / tokenizer_config.json)")
        tokenizer_dir = fallback
    meta = _read_meta(directory)
    if meta is None:
        meta = _run_meta(run_dir) if run_dir is not None else {}
    return ModelSource(directory, tokenizer_dir, meta, step)


def load_checkpoint(path: str | Path, dtype: str = "float32", allow_pickle: bool = False) -> LoadedModel:
    from transformers.utils import logging as hf_logging

    from lmforge.models.loading import load_model, load_tokenizer

    source = resolve(path)
    hf_logging.disable_progress_bar()  # a weight-loading bar per checkpoint drowns the evaluation's own
    tokenizer = load_tokenizer(str(source.tokenizer_dir), key=str(source.tokenizer_dir))
    if is_adapter_dir(source.weights_dir):
        # the base quantized as in training, when it was; an unquantized one gets the
        # adapter merged in, so generation runs at full speed
        quantization = _run_quantization(source)
        model = load_adapter_model(source.weights_dir, len(tokenizer), dtype, quantization=quantization)
        return LoadedModel(model if quantization else model.merge_and_unload(), tokenizer, source.meta, source)
    model = load_model(str(source.weights_dir), dtype, allow_pickle=allow_pickle, pickle_setting="pass --allow-pickle")
    if model.get_input_embeddings().num_embeddings < len(tokenizer):
        raise LmforgeError(
            f"{source.weights_dir}: the tokenizer in {source.tokenizer_dir} has {len(tokenizer)} "
            f"tokens but the model only {model.get_input_embeddings().num_embeddings} embeddings"
        )
    return LoadedModel(model, tokenizer, source.meta, source)


def _run_quantization(source: ModelSource) -> dict[str, Any] | None:
    """How the base of an adapter was quantized in training: from the model's lmforge.json,
    else (a checkpoint-N) from the run's config.yaml."""
    adapter = source.meta.get("adapter")
    if adapter is not None:
        return adapter.get("quantization")
    if source.step is not None:
        return (rundir.read_config(source.weights_dir.parent).get("model") or {}).get("quantization")
    return None


def weights_sha256(directory: Path) -> dict[str, str]:
    """sha256 of every weight file, by file name: what the results JSON calls the model hash."""
    return {p.name: file_sha256(p) for p in weight_files(directory)}
