"""The model forward pass every objective shares: inputs (never labels, never a KV cache),
optionally with NEFTune noise on the input embeddings (DESIGN §3.2)."""

from __future__ import annotations

import torch

MODEL_INPUTS = ("attention_mask", "position_ids")


def segment_lengths(attention_mask: torch.Tensor, position_ids: torch.Tensor | None) -> torch.Tensor:
    """Per-token length L of the sequence the token belongs to: the unpadded row length,
    or, in packed rows (position ids restarting at 0), the packed segment's own length.

    attention_mask: [B, T] -> [B, T] (float)
    """
    real = attention_mask.bool()
    if position_ids is None:
        return real.sum(dim=1, keepdim=True).expand_as(real).float()
    segment = torch.cumsum((position_ids == 0).long(), dim=1)  # [B, T] segment index per token
    segment = torch.where(real, segment, torch.zeros_like(segment))
    counts = torch.zeros(segment.shape[0], int(segment.max()) + 1, device=segment.device)
    counts.scatter_add_(1, segment, real.float())
    return counts.gather(1, segment)


def neftune_noise(embeddings: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor | None,
                  alpha: float) -> torch.Tensor:
    """alpha / sqrt(L * d) * U(-1, 1) on every real token; zero on padding.

    (Uniform on (-1, 1), as in Jain et al. 2023: one public implementation draws U(0, 1).)
    """
    hidden = embeddings.shape[-1]
    scale = alpha / torch.sqrt(segment_lengths(attention_mask, position_ids).clamp_min(1) * hidden)  # [B, T]
    uniform = torch.rand_like(embeddings) * 2 - 1
    return uniform * (scale * attention_mask).unsqueeze(-1).to(embeddings.dtype)


def forward_logits(model, batch: dict[str, torch.Tensor], ids_key: str = "input_ids",
                   neftune_alpha: float | None = None) -> torch.Tensor:
    """Logits [B, T, V] of `batch[ids_key]`; NEFTune noise only while the model trains."""
    extra = {k: batch[k] for k in MODEL_INPUTS if k in batch}
    input_ids = batch[ids_key]
    if neftune_alpha and model.training:
        embeddings = model.get_input_embeddings()(input_ids)
        # packed batches carry no attention mask (position ids delimit their segments)
        mask = batch["attention_mask"] if "attention_mask" in batch else torch.ones_like(input_ids)
        embeddings = embeddings + neftune_noise(embeddings, mask, batch.get("position_ids"), neftune_alpha)
        return model(inputs_embeds=embeddings, use_cache=False, **extra).logits
    return model(input_ids=input_ids, use_cache=False, **extra).logits
