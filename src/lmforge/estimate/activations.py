"""Bytes a causal LM keeps for its backward pass, per token: what the transformers
implementations of Llama (also Mistral, Qwen2), StableLM and GPT-NeoX save, read off
their code and checked tensor by tensor with `torch.autograd.graph.saved_tensors_hooks`
(tests/train/test_estimate.py).

Per decoder layer and token, with h = hidden size, kv = key/value width (kv heads x head
dim), i = intermediate size, attention through SDPA's flash/memory-efficient kernels (no
[T, T] matrix is kept) and no dropout:

    Llama      input, normalised input, norm output (q/k/v input), rotated q, k, v,
               attention output (o_proj input), residual sum, its normalised copy, norm
               output (gate/up input), gate, silu(gate), up, silu(gate)*up
               = 8h + 2kv + 4i values (+ two 1/rms and one logsumexp per head)
    StableLM   LayerNorm input, norm output, rotated q, k, v, attention output and its
               merged-heads copy, residual sum, norm output, gate, silu(gate), up, product
               = 6h + 2kv + 4i (+ LayerNorm mean/rstd, logsumexp)
    GPT-NeoX   LayerNorm input, norm output, fused qkv output (3h: v is a view of it),
               rotated q, k, attention output and its merged-heads copy, [residual sum
               unless use_parallel_residual], norm output, dense_h_to_4h output, gelu output
               = 9h (10h) + 2i (+ LayerNorm statistics, logsumexp)

(StableLM and GPT-NeoX rotate q and k with a `cat`, which leaves the attention output in
[batch, heads, tokens, dim] layout; merging the heads then copies it.) GPT-2 has no formula
here: it trains with dropout, whose masks and (on CPU) [T, T] attention fallback differ by
kernel.

The bytes per value depend on where the tensor sits and on the precision regime:

    kind        fp32   autocast (fp32 weights, 16-bit compute)   half (16-bit weights)
    fp32          4      4                                          4   RMSNorm upcasts its input
    stream        4      4                                          2   residual stream, norms
    compute       4      2                                          2   linear outputs onwards
    linear_in     4      2 per linear reading it                    2   autocast casts per call

With gradient checkpointing (transformers checkpoints each decoder layer) the forward keeps
only each layer's input (h values in the residual stream's dtype); the backward recomputes
one layer at a time, so one layer's full set above is live on top. While a layer runs its
backward, the gradients of its MLP intermediates add 3i (SwiGLU) or 2i (GELU) values.

Outside the layers: the embedding's input ids (8 bytes), the final norm's saved tensors
and the lm_head input. The logits are counted separately (see `logits_bytes_per_value`).
Terms that do not grow with the batch (rotary tables, masks of shape [1, T]) are left out.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Saved:
    """`count` tensors of `width` values per token kept for backward."""

    width: str  # hidden | kv | intermediate | heads | token
    kind: str  # fp32 | stream | compute | linear_in
    count: int = 1
    readers: int = 1  # linear layers reading a linear_in tensor (autocast casts for each)


RMS_NORM = [Saved("hidden", "fp32"), Saved("hidden", "stream"), Saved("token", "fp32")]  # input, x/rms, 1/rms
LAYER_NORM = [Saved("hidden", "stream"), Saved("token", "fp32", 2)]  # input, mean and rstd

_LLAMA_LAYER = [
    *RMS_NORM,
    Saved("hidden", "linear_in", readers=3),  # attention norm; its output feeds q, k, v
    Saved("hidden", "compute"),
    Saved("kv", "compute", 2),  # rotated q, k and v (SDPA inputs)
    Saved("heads", "fp32"),
    Saved("hidden", "compute"),  # SDPA logsumexp, output (o_proj input)
    *RMS_NORM,
    Saved("hidden", "linear_in", readers=2),  # MLP norm (input: residual sum); feeds gate, up
    Saved("intermediate", "compute", 4),  # gate, silu(gate), up, silu(gate) * up
]
_STABLELM_LAYER = [
    *LAYER_NORM,
    Saved("hidden", "linear_in", readers=3),
    Saved("hidden", "compute"),
    Saved("kv", "compute", 2),
    Saved("heads", "fp32"),
    Saved("hidden", "compute", 2),  # SDPA output and its merged-heads copy
    *LAYER_NORM,
    Saved("hidden", "linear_in", readers=2),
    Saved("intermediate", "compute", 4),
]


def _gpt_neox_layer(parallel_residual: bool) -> list[Saved]:
    return [
        *LAYER_NORM,
        Saved("hidden", "linear_in"),
        Saved("hidden", "compute", 3),  # the fused qkv output, kept whole by the v view
        Saved("hidden", "compute", 2),  # rotated q and k
        Saved("heads", "fp32"),
        Saved("hidden", "compute", 2),
        # the parallel MLP norm reads the layer input (already kept); the sequential one the residual sum
        *(LAYER_NORM[1:] if parallel_residual else LAYER_NORM),
        Saved("hidden", "linear_in"),
        Saved("intermediate", "compute", 2),  # dense_h_to_4h output, gelu output
    ]


FAMILIES = {"llama": "llama", "mistral": "llama", "qwen2": "llama", "stablelm": "stablelm", "gpt_neox": "gpt_neox"}


def layer_tensors(family: str, parallel_residual: bool = False) -> list[Saved]:
    if family == "llama":
        return _LLAMA_LAYER
    if family == "stablelm":
        return _STABLELM_LAYER
    return _gpt_neox_layer(parallel_residual)


def final_norm_tensors(family: str) -> list[Saved]:
    """The final norm's saved tensors and its output, the lm_head input."""
    return [*(RMS_NORM if family == "llama" else LAYER_NORM), Saved("hidden", "linear_in")]


def value_bytes(saved: Saved, regime: str) -> int:
    if saved.kind == "fp32" or regime == "fp32":
        return 4
    if saved.kind == "stream":
        return 4 if regime == "autocast" else 2
    if saved.kind == "linear_in" and regime == "autocast":
        return 2 * saved.readers
    return 2


@dataclass(frozen=True)
class Dims:
    hidden: int
    kv: int
    intermediate: int
    heads: int
    layers: int

    def width(self, name: str) -> int:
        return {
            "hidden": self.hidden,
            "kv": self.kv,
            "intermediate": self.intermediate,
            "heads": self.heads,
            "token": 1,
        }[name]


def saved_bytes(tensors: list[Saved], dims: Dims, regime: str) -> int:
    return sum(t.count * dims.width(t.width) * value_bytes(t, regime) for t in tensors)


def layer_bytes_per_token(family: str, dims: Dims, regime: str, parallel_residual: bool = False) -> int:
    """Bytes one decoder layer keeps for backward per token (see the module docstring)."""
    return saved_bytes(layer_tensors(family, parallel_residual), dims, regime)


def activation_bytes_per_token(
    family: str, dims: Dims, regime: str, checkpointing: bool, parallel_residual: bool = False
) -> int:
    """The most bytes kept for backward at once, per token of the forward batch: every
    layer's set, or under checkpointing every layer's input plus one layer recomputed."""
    layer = layer_bytes_per_token(family, dims, regime, parallel_residual)
    outside = 8 + saved_bytes(final_norm_tensors(family), dims, regime)  # 8: the int64 input id
    if checkpointing:
        layer_input = dims.hidden * value_bytes(Saved("hidden", "stream"), regime)
        return dims.layers * layer_input + layer + outside
    return dims.layers * layer + outside


def backward_working_bytes_per_token(family: str, dims: Dims, regime: str) -> int:
    """Gradients a decoder layer's backward holds at once on top of its saved tensors, per
    token: those of its MLP intermediates (down_proj's input, then both factors of the
    product: 3 x i for SwiGLU; the gelu output and its input: 2 x i for GPT-NeoX), in the
    dtype of those intermediates."""
    count = 2 if family == "gpt_neox" else 3
    return count * dims.intermediate * value_bytes(Saved("intermediate", "compute"), regime)


def logits_bytes_per_value(regime: str, passes: int) -> int:
    """Peak bytes of the loss computation per value of the [micro_batch, seq, vocab] logits
    of one pass, counting every position as a label (lmforge's losses work on label
    positions only, so prompt tokens make the real figure smaller).

    Cross-entropy family (ce, mixce, masked_thought, rank; objectives/ce.py): the logits
    (b bytes: 4 in fp32, 2 under 16-bit compute), their copy at label positions (b), a
    float32 upcast when b = 2 (4, freed once log-softmax has run) and the float32
    log-softmax kept for backward (4): 2b + 4 (+ 4) = 12 bytes in every regime.

    ReMask (two passes; objectives/remask.py): both passes' logits and label-position
    copies (4b), then both log-softmaxes, their exps, the two differences inside the
    symmetric KL and `linalg.vecdot`'s elementwise product (7 x 4 bytes, all live at once):
    4b + 28 per value of one pass, whether the passes are fused or not (the two graphs
    both live until the backward).
    """
    b = 4 if regime == "fp32" else 2
    if passes == 2:
        return 4 * b + 28
    return 2 * b + 4 + (4 if b == 2 else 0)
