"""The language-model head at label positions only, in chunks.

A causal LM's last step turns every position's hidden state into a vocabulary-wide row of
logits: B x T x V numbers, most of them for prompt and padding positions no loss reads
(and at V = 49,152 and T = 2048, 400 MB per sequence in fp32). Here the model runs up to
its head; the losses select the label positions from the hidden states, and the head is
applied to them in chunks of `CHUNK` positions, each chunk's logits recomputed in the
backward pass (`torch.utils.checkpoint`) instead of kept. So no full logits tensor, and not
even the label positions' N x V logits, is ever alive at once — unless those fit in
`KEEP_LOGITS_BYTES`: then they are computed in one piece and kept for the backward pass,
which saves the recomputation (a third of the head's FLOPs) where memory is no concern.

Every loss reads model outputs through three functions that take either form:

- `select_positions(outputs, mask)` / `select_rows(outputs, flat_index)`: the positions a loss
  scores, as logits rows [N, V] (plain path) or `SelectedHidden` (head path);
- `token_nll(selected, targets)`: -log p(target) per position;
- `nll_and_symmetric_kl(a, b, targets)`: both passes' NLL and their symmetric KL (ReMask).

The head path is taken for model types whose head is a plain `lm_head(hidden)` with no
post-processing of the logits (`PLAIN_HEAD_MODEL_TYPES`; Gemma's soft-capping would be
skipped otherwise), or `lm_head(hidden) * config.logit_scale` (`SCALED_HEAD_MODEL_TYPES`:
Cohere, the architecture of lmforge's PaLM presets; the head path multiplies the same
way), and not when the head's weight is sharded (FSDP2,
DeepSpeed ZeRO-3: outside the model's forward it is not gathered). Anything else gets
ordinary logits. Written here because no maintained CPU-and-GPU library does this for any
Hugging Face model: Liger-Kernel and Cut-Cross-Entropy fuse the same idea for CUDA only and
for plain cross-entropy, not for MixCE, the ReMask divergence or sequence log-probs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint

CHUNK = 256
"""Label positions per head chunk: at V = 49,152 a chunk's fp32 logits are 50 MB."""

KEEP_LOGITS_BYTES = 64 * 2**20
"""The label positions' fp32 logits (all passes) up to this size are kept, not recomputed:
1024 positions at V = 8192 (the recomputation cost 9% of a step, bench/compare_sft.py's
model), 341 at V = 49,152."""

PLAIN_HEAD_MODEL_TYPES = frozenset(
    {
        "llama",
        "mistral",
        "mixtral",
        "qwen2",
        "qwen2_moe",
        "qwen3",
        "qwen3_moe",
        "phi3",
        "olmo",
        "olmo2",
        "starcoder2",
        "stablelm",
        "gpt_neox",
    }
)

SCALED_HEAD_MODEL_TYPES = frozenset({"cohere"})
"""Model types whose logits are `lm_head(hidden) * config.logit_scale`."""


class ScaledHead(torch.nn.Module):
    """`head(hidden) * scale`, as Cohere's forward computes its logits."""

    def __init__(self, head: torch.nn.Module, scale: float):
        super().__init__()
        self.head, self.scale = head, scale

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(hidden) * self.scale


@dataclass
class HiddenStates:
    """The final hidden states [B, T, d] (after the last norm) and the head that maps them
    to logits."""

    states: torch.Tensor
    head: torch.nn.Module

    def split(self, parts: int) -> list[HiddenStates]:
        return [HiddenStates(chunk, self.head) for chunk in self.states.chunk(parts)]


@dataclass
class SelectedHidden:
    """Hidden states at the positions a loss scores [N, d], and the head."""

    hidden: torch.Tensor
    head: torch.nn.Module


def select_positions(outputs, mask: torch.Tensor):
    """The positions t < T-1 where `mask` [B, T-1] is set (they predict token t + 1)."""
    if isinstance(outputs, HiddenStates):
        return SelectedHidden(outputs.states[:, :-1][mask], outputs.head)
    return outputs[:, :-1][mask]


def select_rows(outputs, flat_index: torch.Tensor):
    """Positions by flat index b * T + t. index_select's backward adds repeated positions in
    index order (advanced indexing's would add them in thread order on CPU)."""
    if isinstance(outputs, HiddenStates):
        states = outputs.states
        return SelectedHidden(states.reshape(-1, states.shape[-1]).index_select(0, flat_index), outputs.head)
    return outputs.reshape(-1, outputs.shape[-1]).index_select(0, flat_index)


def log_probs(selected_logits: torch.Tensor) -> torch.Tensor:
    """log-softmax in at least float32 (half-precision logits are upcast; float64 stays)."""
    return torch.log_softmax(selected_logits.to(torch.promote_types(selected_logits.dtype, torch.float32)), dim=-1)


def nll_from_log_probs(log_p: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -log_p.gather(1, targets.unsqueeze(1)).squeeze(1)


def symmetric_kl_from_log_probs(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """0.5 * sum_v (p_a - p_b)(log p_a - log p_b) per row; a dot product over the vocabulary,
    so no [N, V] product tensor is materialised."""
    return 0.5 * torch.linalg.vecdot(log_a.exp() - log_b.exp(), log_a - log_b)


def _chunked(function, logits_per_row: int, *tensors: torch.Tensor) -> list[torch.Tensor]:
    """`function` over CHUNK-row slices of `tensors`, outputs concatenated; each slice's
    intermediates (its logits) recomputed in backward rather than kept. In one piece, kept,
    when the rows' `logits_per_row` fp32 logits fit in KEEP_LOGITS_BYTES."""
    rows = tensors[0].shape[0]
    if rows == 0 or rows * logits_per_row * 4 <= KEEP_LOGITS_BYTES:
        result = function(*tensors)
        return list(result) if isinstance(result, tuple) else [result]
    outputs = []
    for start in range(0, rows, CHUNK):
        pieces = [t[start : start + CHUNK] for t in tensors]
        outputs.append(
            checkpoint(function, *pieces, use_reentrant=False) if torch.is_grad_enabled() else function(*pieces)
        )
    if isinstance(outputs[0], tuple):
        return [torch.cat(parts) for parts in zip(*outputs)]
    return [torch.cat(outputs)]


def _vocabulary(head: torch.nn.Module) -> int:
    """Logits per position: the head's weight rows (label_head_supported requires a weight;
    an adapter's wrapper of the head keeps the base weight's shape)."""
    return (head.head if isinstance(head, ScaledHead) else head).weight.shape[0]


def token_nll(selected, targets: torch.Tensor) -> torch.Tensor:
    """-log p(target) per selected position: [N]."""
    if not isinstance(selected, SelectedHidden):
        return nll_from_log_probs(log_probs(selected), targets)
    head = selected.head

    def chunk_nll(hidden: torch.Tensor, chunk_targets: torch.Tensor) -> torch.Tensor:
        return nll_from_log_probs(log_probs(head(hidden)), chunk_targets)

    return _chunked(chunk_nll, _vocabulary(head), selected.hidden, targets)[0]


def nll_and_symmetric_kl(selected_a, selected_b, targets: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(nll of a, nll of b, 0.5 * (KL(a || b) + KL(b || a))) per position, each pass's
    log-softmax computed once and shared by its NLL and the divergence."""
    if not isinstance(selected_a, SelectedHidden):
        log_a, log_b = log_probs(selected_a), log_probs(selected_b)
        return (
            nll_from_log_probs(log_a, targets),
            nll_from_log_probs(log_b, targets),
            symmetric_kl_from_log_probs(log_a, log_b),
        )
    head = selected_a.head

    def chunk_terms(hidden_a: torch.Tensor, hidden_b: torch.Tensor, chunk_targets: torch.Tensor):
        log_a, log_b = log_probs(head(hidden_a)), log_probs(head(hidden_b))
        return (
            nll_from_log_probs(log_a, chunk_targets),
            nll_from_log_probs(log_b, chunk_targets),
            symmetric_kl_from_log_probs(log_a, log_b),
        )

    return tuple(_chunked(chunk_terms, 2 * _vocabulary(head), selected_a.hidden, selected_b.hidden, targets))


# --------------------------------------------------------------------------- the forward pass


def _is_sharded(weight: torch.Tensor) -> bool:
    return (
        hasattr(weight, "ds_id")
        or type(weight).__name__ == "DTensor"
        or type(getattr(weight, "data", None)).__name__ == "DTensor"
    )


def label_head_supported(model) -> bool:
    from accelerate.utils import extract_model_from_parallel

    inner = extract_model_from_parallel(model)
    config = getattr(inner, "config", None)
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    weight = getattr(head, "weight", None)
    return (
        getattr(config, "model_type", None) in PLAIN_HEAD_MODEL_TYPES | SCALED_HEAD_MODEL_TYPES
        and head is not None
        and weight is not None
        and not _is_sharded(weight)
    )


def model_outputs(model, **inputs) -> torch.Tensor | HiddenStates:
    """The model's forward up to its head (`HiddenStates`) where the head path applies,
    else its logits. The head's input is taken by a forward pre-hook, which hands the head
    zero positions instead, so the model computes no logits at all."""
    if not label_head_supported(model):
        return model(**inputs, use_cache=False).logits
    from accelerate.utils import extract_model_from_parallel

    inner = extract_model_from_parallel(model)
    head = inner.get_output_embeddings()
    captured: dict[str, torch.Tensor] = {}

    def take_hidden(module, args):
        captured["states"] = args[0]
        return (args[0][:, :0],)

    handle = head.register_forward_pre_hook(take_hidden)
    try:
        output = model(**inputs, use_cache=False)
    finally:
        handle.remove()
    if "states" not in captured:  # the model did not call its head: it returned full logits
        return output.logits
    scale = getattr(inner, "logit_scale", 1.0)  # the value CohereForCausalLM.forward multiplies by
    if inner.config.model_type in SCALED_HEAD_MODEL_TYPES and scale != 1.0:
        return HiddenStates(captured["states"], ScaledHead(head, scale))
    return HiddenStates(captured["states"], head)
