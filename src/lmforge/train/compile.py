"""`train.compile`: torch.compile the transformer body (the decoder layers between the
embeddings and the head) for training.

The body is compiled in place (`nn.Module.compile`), so parameter names, checkpoints and
the saved model are those of the eager model. The head and the objectives stay eager: they
select label positions (objectives/head.py), whose count changes every batch. Generation
(task evaluations during training) runs eager: a KV cache growing one token at a time would
recompile the body at every length (eval/generate.py).
"""

from __future__ import annotations

import torch

from lmforge.errors import LmforgeError


def compile_decoder(model: torch.nn.Module) -> torch.nn.Module:
    """Compile `model`'s transformer body in place and return it (a peft adapter's base is
    reached through the adapter)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = inner.get_decoder() if hasattr(inner, "get_decoder") else None
    if not isinstance(decoder, torch.nn.Module) or decoder is inner:
        model_type = getattr(getattr(inner, "config", None), "model_type", type(inner).__name__)
        raise LmforgeError(f"train.compile: the {model_type} model has no separate transformer body to compile")
    decoder.compile()
    return decoder
