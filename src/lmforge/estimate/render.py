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


def estimate_json(estimate: Estimate) -> dict:
    shape, setup = estimate.shape, estimate.setup
    engines = {}
    for name, e in estimate.engines.items():
        engines[name] = {key: getattr(e, key) for key, _ in _ROWS}
        engines[name].update(total=e.total, max_micro_batch=e.max_micro_batch())
    return {
        "model": {
            "source": shape.source, "model_type": shape.model_type, "parameters": shape.parameters,
            "trainable_parameters": shape.trainable, "hidden_size": shape.dims.hidden,
            "num_layers": shape.dims.layers, "num_heads": shape.dims.heads, "kv_width": shape.dims.kv,
            "intermediate_size": shape.dims.intermediate, "vocab_size": shape.vocab,
        },
        "setup": {
            "micro_batch": setup.micro_batch, "seq_len": setup.seq_len, "passes": setup.passes,
            "weight_dtype": setup.weight_dtype, "precision": setup.precision, "optimizer": setup.optimizer,
            "gradient_checkpointing": setup.gradient_checkpointing, "gpus": setup.gpus,
            "gpu_memory": next(iter(estimate.engines.values())).gpu_memory,
        },
        "configured_engine": estimate.configured_engine,
        "engines": engines,
        "notes": list(estimate.notes),
    }


def estimate_table(estimate: Estimate, width: int = 110) -> str:
    shape, setup = estimate.shape, estimate.setup
    gpu_memory = next(iter(estimate.engines.values())).gpu_memory
    checkpointing = "on" if setup.gradient_checkpointing else "off"
    passes = f" x {setup.passes} passes" if setup.passes > 1 else ""
    d = shape.dims
    title = (f"Per-device memory, GB ({setup.gpus} GPU{'s' if setup.gpus > 1 else ''}, "
             f"micro batch {setup.micro_batch} x {setup.seq_len} tokens{passes})")
    table = Table(title=title, title_justify="left")
    table.add_column("")
    for name in estimate.engines:
        mark = " (config)" if name == estimate.configured_engine else ""
        table.add_column(ENGINE_NAMES[name] + mark, justify="right")
    for key, label in _ROWS:
        table.add_row(label, *(f"{getattr(e, key) / GB:.2f}" for e in estimate.engines.values()))
    table.add_row(f"total (checkpointing {checkpointing})",
                  *(f"{e.total / GB:.2f}" for e in estimate.engines.values()), style="bold")
    table.add_row(f"max micro batch in {gpu_memory / GB:g} GB",
                  *(str(e.max_micro_batch()) for e in estimate.engines.values()))
    lines = [
        f"model: {shape.model_type}, {shape.parameters / 1e9:.3f}B parameters ({shape.parameters:,}; "
        f"trainable {shape.trainable:,}), from {shape.source}",
        f"  hidden {d.hidden}, {d.layers} layers, {d.heads} heads, kv width {d.kv}, intermediate {d.intermediate}, "
        f"vocab {shape.vocab}",
        f"run: model.dtype {setup.weight_dtype}, precision {setup.precision}, optimizer {setup.optimizer}, "
        f"gradient checkpointing {checkpointing}",
    ]
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print("\n".join(lines), highlight=False)
    console.print(table)
    for note in (*estimate.notes,
                 "logits count every position as a label (prompt positions without labels cost less); "
                 "totals leave out the CUDA context and allocator slack (keep 1-2 GB free)"):
        console.print(f"note: {note}", highlight=False)
    return console.file.getvalue()
