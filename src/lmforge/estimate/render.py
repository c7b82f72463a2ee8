"""An Estimate as a table (rich, plain text) or as JSON (bytes)."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from lmforge.estimate import Estimate
from lmforge.estimate.memory import ENGINE_NAMES

GB = 10**9

_ROWS = [  # (JSON key, table label)
    ("weights", "weights"),
    ("gradients", "gradients"),
    ("optimizer", "optimizer state"),
    ("activations", "activations, no checkpointing"),
    ("activations_checkpointed", "activations, checkpointing"),
    ("logits", "logits + loss"),
]
_JSON_ONLY = ("persistent_gradients", "head_gradients", "layer_activations", "backward_working")
PEAK = (
    "peak: the largest of the loss (kept activations + logits) and the two ends of the backward "
    "(all activations + the embeddings' and lm_head's gradients; all gradients + one layer), on top of "
    "weights, optimizer state and gradients kept across steps; the rows never all coexist "
    "(lmforge/estimate/memory.py)"
)


def estimate_json(estimate: Estimate) -> dict:
    shape, setup = estimate.shape, estimate.setup
    engines = {}
    for name, e in estimate.engines.items():
        engines[name] = {key: getattr(e, key) for key in [*(key for key, _ in _ROWS), *_JSON_ONLY]}
        engines[name].update(total=e.total, max_micro_batch=e.max_micro_batch())
    return {
        "model": {
            "source": shape.source,
            "model_type": shape.model_type,
            "parameters": shape.parameters,
            "trainable_parameters": shape.trainable,
            "hidden_size": shape.dims.hidden,
            "num_layers": shape.dims.layers,
            "num_heads": shape.dims.heads,
            "kv_width": shape.dims.kv,
            "intermediate_size": shape.dims.intermediate,
            "vocab_size": shape.vocab,
        },
        "setup": {
            "micro_batch": setup.micro_batch,
            "seq_len": setup.seq_len,
            "passes": setup.passes,
            "weight_dtype": setup.weight_dtype,
            "precision": setup.precision,
            "optimizer": setup.optimizer,
            "gradient_checkpointing": setup.gradient_checkpointing,
            "gpus": setup.gpus,
            "gpu_memory": next(iter(estimate.engines.values())).gpu_memory,
        },
        "configured_engine": estimate.configured_engine,
        "engines": engines,
        "notes": list(estimate.notes),
    }


def _count(n: int) -> str:
    return next(
        f"{n / scale:.2f}{unit}"
        for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K"), (1, ""))
        if n >= scale or scale == 1
    )


def estimate_table(estimate: Estimate, width: int = 110) -> str:
    shape, setup = estimate.shape, estimate.setup
    engines = estimate.engines.values()
    gpu_memory = next(iter(engines)).gpu_memory
    # GB for real models; MB keeps tiny CPU models readable
    unit, scale = ("GB", 10**9) if max(e.total for e in engines) >= 10**9 else ("MB", 10**6)
    checkpointing = "on" if setup.gradient_checkpointing else "off"
    passes = f" x {setup.passes} passes" if setup.passes > 1 else ""
    d = shape.dims
    title = (
        f"Per-device memory, {unit} ({setup.gpus} GPU{'s' if setup.gpus > 1 else ''}, "
        f"micro batch {setup.micro_batch} x {setup.seq_len} tokens{passes})"
    )
    table = Table(title=title, title_justify="left")
    table.add_column("")
    for name in estimate.engines:
        mark = " (config)" if name == estimate.configured_engine else ""
        table.add_column(ENGINE_NAMES[name] + mark, justify="right")
    for key, label in _ROWS:
        table.add_row(label, *(f"{getattr(e, key) / scale:.2f}" for e in engines))
    table.add_row(f"peak (checkpointing {checkpointing})", *(f"{e.total / scale:.2f}" for e in engines), style="bold")
    table.add_row(f"max micro batch in {gpu_memory / GB:.4g} GB", *(str(e.max_micro_batch()) for e in engines))
    lines = [
        f"model: {shape.model_type}, {_count(shape.parameters)} parameters ({shape.parameters:,}; trainable "
        f"{shape.trainable:,}) from {shape.source}",
        f"  hidden {d.hidden}, {d.layers} layers, {d.heads} heads, kv width {d.kv}, intermediate {d.intermediate}, "
        f"vocab {shape.vocab}",
        f"run: model.dtype {setup.weight_dtype}, precision {setup.precision}, optimizer {setup.optimizer}, "
        f"gradient checkpointing {checkpointing}",
    ]
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print("\n".join(lines), highlight=False)
    console.print(table)
    notes = [
        *estimate.notes,
        PEAK,
        "logits count every position as a label (prompt positions without labels cost less); the peak "
        "leaves out the CUDA context and allocator slack (keep 1-2 GB free)",
    ]
    for note in notes:
        console.print(f"note: {note}", highlight=False)
    return console.file.getvalue()
