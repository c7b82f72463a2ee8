"""Per-device memory of one training step under each engine, from a model's shape and the
run's settings. Plain arithmetic: every term is a documented count times bytes.

With P parameters (T of them trainable), N devices, w = bytes of model.dtype:

  DDP      weights P·w (+ 2 bytes per nn.Linear weight under autocast of fp32 weights: the
           16-bit copies autocast makes live until the backward); gradients T·w, twice when
           N > 1 (DDP's reducer keeps its own gradient buckets unless gradient_as_bucket_view,
           which the Trainer leaves off); optimizer state in the parameters' dtype (torch
           optimizers allocate it with zeros_like).
  ZeRO-2   DeepSpeed with fp16/bf16 runs a 16-bit model (2 bytes) and keeps fp32 master
           weights and fp32 optimizer state, both partitioned: (4 + 4·states)·T/N; the
           gradients are partitioned too (2·T/N) plus one reduce bucket (hidden² values,
           transformers' "auto"). Without fp16/bf16, weights stay in model.dtype, no master.
  ZeRO-3   as ZeRO-2, and the 16-bit weights are partitioned too (P·2/N) plus what is
           gathered at once: the largest module, the prefetch bucket (0.9·hidden², "auto")
           and the small tensors below the persistence threshold, never partitioned.
  FSDP     FSDP2 full shard: weights, gradients and optimizer state sharded in model.dtype
           (P·w/N, T·w/N, states·T·w/N); gathered in the compute dtype: the root module
           (embeddings, final norm, lm_head: it stays gathered from forward to backward) and
           two decoder layers (the running one and the prefetched one), or every layer when
           reshard_after_forward is off; unsharded gradients of the root and of one layer
           before their reduce-scatter.

Optimizer state per trainable value: AdamW 2 (exp_avg, exp_avg_sq), Lilith 3 (m1, m2, v;
+1 with ema_k > 0, optim/lilith.py), Adalite (pytorch_optimizer) factored: a [r, c] matrix
keeps 2(r + c) + 1 values, a vector 2 per value. Under ZeRO the optimizer only ever sees
flat 1-D partitions, so Adalite keeps 2 per value there.

Activations and logits come from activations.py; the regime (what 16-bit means for them)
depends on the engine: DDP with fp32 weights and fp16/bf16 precision is autocast, any
16-bit engine or 16-bit weights run 16-bit ("half").

The peak ("total") is not the sum of the rows: the loss's [micro_batch, seq, vocab]
buffers are gone before the backward reaches the layers, and the gradients appear only
during the backward (the Trainer frees them after every step with
zero_grad(set_to_none=True)). With fixed = weights + optimizer state + the gradients that
persist across steps (DDP's buckets, DeepSpeed's partitions), the step peaks at the largest of

    loss             fixed + kept + logits      what the forward kept (under checkpointing
                                                only the layer inputs) and the loss buffers
    backward start   fixed + activations + head gradients + working
    backward end     fixed + step gradients + one layer's activations + working

The backward runs the layers top to bottom: gradients grow and kept activations shrink,
each layer by layer, so their sum is largest at one of the two ends. "activations" is the
most kept at once (under checkpointing: the inputs plus the recomputed top layer), "head
gradients" those of the embeddings, final norm and lm_head (computed before any layer's),
"working" the gradients of one layer's MLP intermediates (activations.py).

The largest micro batch that fits solves that for the micro batch (activations and logits
grow linearly with it). Left out: the CUDA context and allocator slack (leave a GB or two),
the temporaries of optimizer.step (they live when the activations are gone), DeepSpeed's
fp32 gradient partition inside step(), and QLoRA / LoRA (not modelled yet).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lmforge.estimate.activations import (
    activation_bytes_per_token,
    backward_working_bytes_per_token,
    layer_bytes_per_token,
    logits_bytes_per_value,
)
from lmforge.estimate.shape import ModelShape

ENGINES = ("ddp", "zero2", "zero3", "fsdp")
ENGINE_NAMES = {"ddp": "DDP", "zero2": "ZeRO-2", "zero3": "ZeRO-3", "fsdp": "FSDP"}
WEIGHT_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
STATES = {"adamw": 2, "lilith": 3, "adalite": 2}  # per value; Adalite: when flattened (ZeRO)


@dataclass(frozen=True)
class Setup:
    """The run's settings that decide its memory, as plain values."""

    micro_batch: int
    seq_len: int
    weight_dtype: str  # model.dtype
    precision: str  # train.precision: fp32 | bf16 | fp16
    optimizer: str
    passes: int = 1  # forward passes kept for one backward (ReMask: 2)
    gradient_checkpointing: bool = False
    gpus: int = 1
    lilith_ema: bool = False
    fsdp_reshard_after_forward: bool = True
    zero_optimizer: str | None = None
    """The optimizer a DeepSpeed config's own `optimizer` block makes ZeRO run instead."""

    @property
    def half(self) -> bool:
        return self.precision in ("bf16", "fp16")


@dataclass(frozen=True)
class EngineEstimate:
    weights: int
    gradients: int
    persistent_gradients: int
    """The part of `gradients` that lives across steps (buckets, ZeRO partitions)."""
    head_gradients: int
    """Gradients of the parameters outside the decoder layers, made before the layers'."""
    optimizer: int
    activations: int
    activations_checkpointed: int
    layer_activations: int
    """One decoder layer's share (recomputed at a time under checkpointing)."""
    backward_working: int
    logits: int
    gradient_checkpointing: bool
    gpu_memory: int
    micro_batch: int

    @property
    def active_activations(self) -> int:
        return self.activations_checkpointed if self.gradient_checkpointing else self.activations

    @property
    def kept_activations(self) -> int:
        """What the forward keeps until the loss (under checkpointing: no recomputed layer yet)."""
        if self.gradient_checkpointing:
            return self.activations_checkpointed - self.layer_activations
        return self.activations

    @property
    def fixed(self) -> int:
        return self.weights + self.optimizer + self.persistent_gradients

    @property
    def step_gradients(self) -> int:
        return self.gradients - self.persistent_gradients

    def _phases(self) -> list[tuple[int, int]]:
        """(bytes that do not grow with the micro batch, bytes that do) of the loss, the
        start and the end of the backward, on top of `fixed`."""
        return [
            (0, self.kept_activations + self.logits),
            (self.head_gradients, self.active_activations + self.backward_working),
            (self.step_gradients, self.layer_activations + self.backward_working),
        ]

    @property
    def total(self) -> int:
        return self.fixed + max(constant + growing for constant, growing in self._phases())

    def max_micro_batch(self) -> int:
        """The largest micro batch whose total fits in gpu_memory."""
        free = self.gpu_memory - self.fixed
        fits = [(free - constant) * self.micro_batch / growing for constant, growing in self._phases() if growing]
        return max(0, math.floor(min(fits)))


def regime(engine: str, setup: Setup) -> str:
    if not setup.half:
        return "fp32" if setup.weight_dtype == "float32" else "half"
    return "autocast" if engine == "ddp" and setup.weight_dtype == "float32" else "half"


def optimizer_values(shape: ModelShape, setup: Setup, flat: bool, shards: int = 1) -> float:
    """Optimizer state values per device; flat: ZeRO's 1-D partitions (see the module docstring)."""
    optimizer = (setup.zero_optimizer or setup.optimizer) if flat else setup.optimizer
    if optimizer == "adalite" and not flat:
        return sum(_adalite_values(s, shards) for s in shape.trainable_shapes)
    states = STATES[optimizer] + (1 if optimizer == "lilith" and setup.lilith_ema else 0)
    return states * shape.trainable / shards


def _adalite_values(shape: tuple[int, ...], shards: int) -> float:
    if len(shape) < 2:
        return 2 * math.prod(shape) / shards
    rows, columns = shape[0], math.prod(shape[1:])  # Adalite views >2-D tensors as [size(0), -1]
    return 2 * (rows / shards + columns) + 1  # FSDP shards the rows; the column factors stay whole


def _outside_layers(shape: ModelShape, trainable: bool = False) -> int:
    """Parameters outside the decoder layers: embeddings, final norm, lm_head (FSDP's root)."""
    layers = shape.dims.layers * shape.layer_parameters
    return max(0, (shape.trainable if trainable else shape.parameters) - layers)


def estimate_engine(shape: ModelShape, setup: Setup, engine: str, gpu_memory: int) -> EngineEstimate:
    n, w = setup.gpus, WEIGHT_BYTES[setup.weight_dtype]
    p, t, h = shape.parameters, shape.trainable, shape.dims.hidden
    if engine == "ddp":
        autocast_copies = 2 * shape.linear_parameters if regime(engine, setup) == "autocast" else 0
        weights = p * w + autocast_copies
        persistent = t * w if n > 1 else 0  # DDP's buckets; the parameters' .grad is freed every step
        gradients = t * w + persistent
        head = _outside_layers(shape, trainable=True) * w
        optimizer = optimizer_values(shape, setup, flat=False) * w
    elif engine in ("zero2", "zero3"):
        model_bytes = 2 if setup.half else w
        master, state_bytes = (4, 4) if setup.half else (0, w)
        if engine == "zero2":
            weights = p * model_bytes
        else:
            gathered = shape.largest_module + int(0.9 * h * h) + shape.small_parameters
            weights = p * model_bytes / n + gathered * model_bytes
        gradients = persistent = t * model_bytes / n + h * h * model_bytes  # allocated once, reused
        head = 0  # reduced into the partitions as they are made
        optimizer = t * master / n + optimizer_values(shape, setup, flat=True, shards=n) * state_bytes
    elif engine == "fsdp":
        compute = 2 if setup.half else w
        layers = shape.dims.layers * shape.layer_parameters
        gathered = _outside_layers(shape) + (2 * shape.layer_parameters if setup.fsdp_reshard_after_forward else layers)
        weights = p * w / n + gathered * compute
        head = _outside_layers(shape, trainable=True) * compute  # unsharded until the root's reduce-scatter
        gradients = t * w / n + head + shape.layer_parameters * compute
        persistent = 0  # sharded gradients are freed by zero_grad like DDP's
        optimizer = optimizer_values(shape, setup, flat=False, shards=n) * w
    else:
        raise ValueError(f"unknown engine {engine!r}")
    tokens = setup.micro_batch * setup.seq_len * setup.passes
    kind = regime(engine, setup)

    def activations(checkpointing: bool) -> int:
        return tokens * activation_bytes_per_token(
            shape.family, shape.dims, kind, checkpointing, shape.parallel_residual
        )

    logits = setup.micro_batch * setup.seq_len * shape.vocab * logits_bytes_per_value(kind, setup.passes)
    return EngineEstimate(
        weights=int(weights),
        gradients=int(gradients),
        persistent_gradients=int(persistent),
        head_gradients=int(head),
        optimizer=int(optimizer),
        activations=activations(False),
        activations_checkpointed=activations(True),
        layer_activations=tokens * layer_bytes_per_token(shape.family, shape.dims, kind, shape.parallel_residual),
        backward_working=tokens * backward_working_bytes_per_token(shape.family, shape.dims, kind),
        logits=logits,
        gradient_checkpointing=setup.gradient_checkpointing,
        gpu_memory=gpu_memory,
        micro_batch=setup.micro_batch,
    )
