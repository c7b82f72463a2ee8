"""`lmforge estimate`: per-device memory of training a config under DDP, ZeRO-2, ZeRO-3 and
FSDP, and the largest micro batch that fits a GPU. `estimate_config` is the entry point
(the only code here that reads the Config); shape.py sizes the model, activations.py and
memory.py hold the formulas, render.py prints them."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from lmforge.config import Config
from lmforge.errors import LmforgeError
from lmforge.estimate.memory import ENGINES, EngineEstimate, Setup, estimate_engine
from lmforge.estimate.shape import ModelShape, ModelSource, model_shape, parameter_count
from lmforge.objectives.registry import OBJECTIVES

_UNITS = {
    "": 10**9,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


@dataclass(frozen=True)
class Estimate:
    shape: ModelShape
    setup: Setup
    engines: dict[str, EngineEstimate]
    configured_engine: str | None
    """The engine the config itself selects (None: a DeepSpeed stage not shown here)."""
    notes: tuple[str, ...]


def parse_memory(text: str) -> int:
    """'80GB' -> 80e9 bytes; GB/MB/TB are decimal, GiB/MiB/TiB binary; a bare number is GB."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([kmgt]i?b|b)?\s*", text, re.IGNORECASE)
    if not match or float(match.group(1)) <= 0:
        raise LmforgeError(f"--gpu-memory '{text}': give a size such as 80GB, 24GiB or 40000MB")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()])


def read_deepspeed(value: str | dict) -> tuple[int, str | None]:
    """(zero_optimization.stage, the optimizer type its `optimizer` block names, if any) of
    a DeepSpeed config (a JSON file path or a mapping), read and checked as training reads it."""
    from lmforge.train.deepspeed import load_deepspeed_config

    ds = load_deepspeed_config(value)
    stage = (ds.get("zero_optimization") or {}).get("stage", 0)
    if not isinstance(stage, int):
        raise LmforgeError(f"train.deepspeed: zero_optimization.stage must be 0-3, got {stage!r}")
    return stage, (ds.get("optimizer") or {}).get("type")


def _model_source(config: Config) -> ModelSource:
    model = config.model
    return ModelSource(
        model.name_or_path,
        model.architecture,
        model.size.model_dump(),
        model.tokenizer,
        model.trust_remote_code,
        model.dtype,
        model.freeze_embeddings,
    )


def _needed_tokens(config: Config):
    from lmforge.train.pipeline import needed_special_tokens  # the tokens training would add

    return lambda tokenizer: needed_special_tokens(config, tokenizer)


def parameters_line(config: Config) -> str:
    """`# model: N parameters (where the architecture came from)`, for `lmforge config show`.
    A fresh model's problems (tokenizer, preset) are errors; a pretrained model that is not
    available offline is 'unknown', since showing a config needs no model."""
    try:
        count, where = parameter_count(_model_source(config), _needed_tokens(config))
    except LmforgeError as exc:
        if config.model.name_or_path is None:
            raise
        return f"# model parameters: unknown ({exc})"
    preset = f", model.preset {config.model.preset}" if config.model.preset else ""
    return f"# model: {count:,} parameters ({where}{preset})"


def estimate_config(config: Config, gpus: int = 1, gpu_memory: int = 80 * 10**9) -> Estimate:
    if gpus < 1:
        raise LmforgeError(f"--gpus {gpus}: need at least one GPU")
    model, train = config.model, config.train
    if model.adapter is not None or model.quantization is not None:
        # a full-finetuning figure for an adapter run would overstate its memory several times
        key = "model.adapter" if model.adapter is not None else "model.quantization"
        raise LmforgeError(
            f"{key}: lmforge estimate models full finetuning only; adapters and quantized bases are not modelled yet"
        )
    shape = model_shape(_model_source(config), _needed_tokens(config))
    setup = Setup(
        micro_batch=train.micro_batch_size,
        seq_len=config.data.max_length,
        weight_dtype=model.dtype,
        precision=train.precision,
        optimizer=train.optimizer.name,
        passes=OBJECTIVES[train.objective.name].passes,
        gradient_checkpointing=train.gradient_checkpointing,
        gpus=gpus,
        lilith_ema=getattr(train.optimizer, "ema_k", 0) > 0,
        fsdp_reshard_after_forward=train.fsdp.reshard_after_forward if train.fsdp else True,
    )
    notes = list(shape.notes)
    engine: str | None = "ddp"
    if train.fsdp is not None:
        engine = "fsdp"
        if train.fsdp.cpu_offload:
            notes.append(
                "train.fsdp.cpu_offload: sharded weights and optimizer state live in CPU memory "
                "(the FSDP column counts them on the GPU)"
            )
    elif train.deepspeed is not None:
        stage, ds_optimizer = read_deepspeed(train.deepspeed)
        engine = {2: "zero2", 3: "zero3"}.get(stage)
        if engine is None:
            notes.append(f"train.deepspeed: ZeRO stage {stage} is not one of the columns (stages 2 and 3 are)")
        if ds_optimizer:
            # DeepSpeed builds the optimizer its config names instead of train.optimizer
            if str(ds_optimizer).lower().replace("fused", "").replace("cpu", "").startswith("adam"):
                setup = replace(setup, zero_optimizer="adamw")
                notes.append(
                    f"train.deepspeed: its optimizer block ({ds_optimizer}) replaces train.optimizer; "
                    f"the ZeRO columns count Adam's two states"
                )
            else:
                notes.append(
                    f"train.deepspeed: its optimizer block ({ds_optimizer}) replaces train.optimizer; "
                    f"the ZeRO columns still count {train.optimizer.name}'s state"
                )
    if setup.half and model.dtype == "float32":
        notes.append(
            f"precision {train.precision} over model.dtype float32: DDP trains under autocast (16-bit "
            f"copies of the weights live through each step), FSDP gathers 16-bit copies of fp32 shards, "
            f"ZeRO runs a 16-bit model with fp32 master weights"
        )
    if shape.max_positions and setup.seq_len > shape.max_positions:
        notes.append(
            f"data.max_length {setup.seq_len} is longer than the model's max_position_embeddings {shape.max_positions}"
        )
    engines = {name: estimate_engine(shape, setup, name, gpu_memory) for name in ENGINES}
    return Estimate(shape, setup, engines, engine, tuple(notes))
