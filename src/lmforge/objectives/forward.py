"""The model forward pass every objective shares: inputs (never labels, never a KV cache),
optionally with NEFTune noise on the input embeddings (docs/methods.md)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from accelerate.utils import extract_model_from_parallel as unwrap_model

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


def neftune_noise(
    embeddings: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor | None,
    alpha: float,
    row_seeds: torch.Tensor | None = None,
) -> torch.Tensor:
    """alpha / sqrt(L * d) * U(-1, 1) on every real token; zero on padding.

    (Uniform on (-1, 1), as in Jain et al. 2023: one public implementation draws U(0, 1).)
    With `row_seeds` [B], each row's uniforms come from its own generator, drawn for its
    real tokens only: an example gets the same noise whatever batch, padding, process or
    rank layout it lands in. Without them, the global RNG.
    """
    hidden = embeddings.shape[-1]
    scale = alpha / torch.sqrt(segment_lengths(attention_mask, position_ids).clamp_min(1) * hidden)  # [B, T]
    if row_seeds is None:
        uniform = torch.rand_like(embeddings)
    else:
        uniform = torch.zeros_like(embeddings)
        real = attention_mask.bool().sum(dim=1).tolist()  # right padding: real tokens come first
        for row, (seed, length) in enumerate(zip(row_seeds.tolist(), real)):
            generator = torch.Generator(device=embeddings.device).manual_seed(seed)
            uniform[row, :length] = torch.rand(
                length, hidden, generator=generator, device=embeddings.device, dtype=embeddings.dtype
            )
    return (uniform * 2 - 1) * (scale * attention_mask).unsqueeze(-1).to(embeddings.dtype)


def real_token_mask(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """1 on real tokens. Packed batches carry no attention mask (position ids delimit
    their segments); their padding has token role -1."""
    if "attention_mask" in batch:
        return batch["attention_mask"]
    if "token_roles" in batch:
        return batch["token_roles"].ge(0).long()
    return torch.ones_like(batch["input_ids"])


# ints only: Python salts the hash of strings per process, never of int tuples
NEFTUNE_SALT = 0x4E4546


@dataclass
class NoiseSeeds:
    """Collate-time step: a NEFTune seed per row from (seed, epoch, example_id), so noise is
    drawn per example, the same under any batching or number of processes, and fresh each
    epoch (`NoiseEpoch` advances `epoch`)."""

    seed: int
    epoch: int = 0

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if "example_id" not in batch:
            return batch
        seeds = [
            hash((self.seed, self.epoch, example_id, NEFTUNE_SALT)) & (2**62 - 1)
            for example_id in batch["example_id"].tolist()
        ]
        return {**batch, "noise_seed": torch.tensor(seeds, dtype=torch.long)}


# The masked pass of a two-pass objective draws other noise than the full pass.
MASKED_PASS_SEED_OFFSET = 0x5EED


def pass_seeds(batch: dict[str, torch.Tensor], ids_key: str) -> torch.Tensor | None:
    seeds = batch.get("noise_seed")
    if seeds is None or ids_key == "input_ids":
        return seeds
    return seeds + MASKED_PASS_SEED_OFFSET


@contextmanager
def neftune_on(model, batch: dict[str, torch.Tensor], alpha: float, row_seeds: torch.Tensor | None):
    """NEFTune noise added to the input embedding module's output during one forward.

    A forward hook rather than computing the embeddings here: it works whatever wraps the
    model (DDP, FSDP2, DeepSpeed, peft) because the wrapper's own forward still runs the
    embedding inside its parameter gathering, and `unwrap_model` finds the module.
    """
    embedding = unwrap_model(model).get_input_embeddings()
    mask = real_token_mask(batch)

    def add_noise(module, inputs, output):
        return output + neftune_noise(output, mask, batch.get("position_ids"), alpha, row_seeds)

    handle = embedding.register_forward_hook(add_noise)
    try:
        yield
    finally:
        handle.remove()


def forward_logits(
    model, batch: dict[str, torch.Tensor], ids_key: str = "input_ids", neftune_alpha: float | None = None
) -> torch.Tensor:
    """Logits [B, T, V] of `batch[ids_key]`; NEFTune noise only while the model trains."""
    extra = {k: batch[k] for k in MODEL_INPUTS if k in batch}
    if neftune_alpha and model.training:
        with neftune_on(model, batch, neftune_alpha, pass_seeds(batch, ids_key)):
            return model(input_ids=batch[ids_key], use_cache=False, **extra).logits
    return model(input_ids=batch[ids_key], use_cache=False, **extra).logits


def forward_outputs(
    model, batch: dict[str, torch.Tensor], ids_key: str = "input_ids", neftune_alpha: float | None = None
):
    """What the losses read (objectives/head.py): the hidden states the head is applied to at
    label positions only, or, for models that path does not cover, the logits [B, T, V].
    NEFTune noise only while the model trains."""
    from lmforge.objectives.head import model_outputs

    extra = {k: batch[k] for k in MODEL_INPUTS if k in batch}
    if neftune_alpha and model.training:
        with neftune_on(model, batch, neftune_alpha, pass_seeds(batch, ids_key)):
            return model_outputs(model, input_ids=batch[ids_key], **extra)
    return model_outputs(model, input_ids=batch[ids_key], **extra)
