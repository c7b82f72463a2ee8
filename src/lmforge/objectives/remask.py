"""ReMask, ReMask-CoT and Masked Thought (docs/methods.md; seed 004, euclaise's ReMask-3B).

The random corruption is drawn when a training batch is collated (`RegularizationNoise`),
so the trainer counts the label tokens that survive label masking, and the loss functions
below stay pure: they only see logits and (already masked) labels.

Batch contract after the noise: `input_ids` (untouched), `masked_input_ids` (some response
inputs replaced by the mask id), `labels` (ReMask-CoT label masking applied).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from typing import Literal

import torch
from pydantic import Field
from transformers import TrainerCallback

from lmforge.data.conversation import ROLE_IDS
from lmforge.data.tokenize import IGNORE_INDEX
from lmforge.objectives.ce import cross_entropy_loss, label_positions, normaliser
from lmforge.objectives.head import log_probs, nll_and_symmetric_kl, symmetric_kl_from_log_probs
from lmforge.strict import Probability, Strict


SHARED_PROMPT = "shared_prompt"
TwoPassMode = bool | Literal["shared_prompt"]
"""How ReMask runs its two passes: fused (true), separately (false) or with the prompt shared."""


class MaskedThoughtConfig(Strict):
    """One pass on inputs with response tokens masked (baseline of seed 004)."""

    name: Literal["masked_thought"]
    p_in: Probability = 0.4
    p_label: Probability = 0.1
    p_answer_only: Probability = 0.1


class ReMaskConfig(Strict):
    """Full and masked pass, CE on both plus weight x symmetric KL."""

    name: Literal["remask"]
    p_in: Probability = 0.4
    weight: float = Field(0.1, ge=0.0)
    fused: TwoPassMode = SHARED_PROMPT
    """"shared_prompt" (default): one forward over rows holding the tokens before the first
    masked one once (`objectives.remask_objective`; falls back to true where it cannot; the
    fastest in bench/remask_step.py); true: both passes as one forward over the stacked batch
    (2x activation memory); false: two forwards."""


class ReMaskCoTConfig(Strict):
    """ReMask with the CoT rules (RegularizationNoise below) for examples with a rationale."""

    name: Literal["remask_cot"]
    p_in: Probability = 0.4
    p_label: Probability = 0.1
    p_answer_only: Probability = 0.1
    weight: float = Field(0.1, ge=0.0)
    fused: TwoPassMode = SHARED_PROMPT
    """As ReMaskConfig.fused."""


MASK_TOKEN = "<|mask|>"
RATIONALE, ANSWER, ASSISTANT = ROLE_IDS["rationale"], ROLE_IDS["answer"], ROLE_IDS["assistant"]


# --------------------------------------------------------------------------- the noise


@dataclass
class RegularizationNoise:
    """Input masking (and, with `cot_rules`, ReMask-CoT label masking) of a padded batch.

    Input masking: each response-token input is replaced by `mask_token_id` with
    probability `p_in`. Under `cot_rules`, in an example with a rationale only rationale
    tokens are candidates (answer tokens are never masked, as input or label), each
    rationale label is dropped with probability `p_label`, and with probability
    `p_answer_only` all rationale labels of the example are dropped. Examples without a
    rationale get plain ReMask input masking over their response tokens.

    Everything is decided per example, also in packed rows, where the examples are the
    segments (`token_example_ids`): whether it is CoT, its answer-only draw, and its token
    draws. Randomness: each example's draws come from its own generator seeded by
    (seed, epoch, example_id) and cover its own tokens only, so an example is corrupted the
    same way whatever batch, padding, packing, worker or resumed run it lands in, and
    differently in every epoch. (The global RNG would not do: the Trainer restores it only
    after collating the first batch of a resumed run.) Tests may pass one `generator` for
    the whole batch instead.
    """

    mask_token_id: int
    p_in: float
    p_label: float = 0.0
    p_answer_only: float = 0.0
    cot_rules: bool = True
    seed: int = 0
    epoch: int = 0

    def _draws(self, batch, generator: torch.Generator | None) -> tuple[torch.Tensor, ...]:
        """Per token: the input-mask and label-mask uniforms, the example's answer-only
        uniform, and whether the token's example has a rationale. [B, T] each.

        Each example (a row, or a segment of a packed row) draws from its own generator over
        its own tokens only, so neither padding nor packing nor the batch moves its draws."""
        roles = batch["token_roles"]
        rows, length = roles.shape
        owners = self._owners(batch)
        if generator is not None or owners is None:
            draw = lambda *shape: torch.rand(shape, generator=generator)  # noqa: E731
            is_cot = (roles == RATIONALE).any(dim=1, keepdim=True).expand(rows, length)
            return draw(rows, length), draw(rows, length), draw(rows, 1).expand(rows, length), is_cot
        input_draw, label_draw = torch.ones(rows, length), torch.ones(rows, length)
        example_draw, is_cot = torch.ones(rows, length), torch.zeros(rows, length, dtype=torch.bool)
        for row in range(rows):
            for example_id in torch.unique(owners[row]).tolist():
                if example_id < 0:  # padding
                    continue
                positions = (owners[row] == example_id).nonzero().squeeze(1)
                n = positions.numel()
                example_generator = torch.Generator().manual_seed(
                    hash((self.seed, self.epoch, example_id)) & (2**63 - 1)
                )
                uniforms = torch.rand(2 * n + 1, generator=example_generator)
                input_draw[row, positions] = uniforms[:n]
                label_draw[row, positions] = uniforms[n : 2 * n]
                example_draw[row, positions] = uniforms[2 * n]
                is_cot[row, positions] = bool((roles[row, positions] == RATIONALE).any())
        return input_draw, label_draw, example_draw, is_cot

    @staticmethod
    def _owners(batch) -> torch.Tensor | None:
        """Per token: the id of the example it belongs to (-1 on padding); None without ids."""
        if "token_example_ids" in batch:  # packed rows
            return batch["token_example_ids"]
        if "example_id" in batch:
            real = batch["token_roles"].ge(0)
            return torch.where(real, batch["example_id"].unsqueeze(1), torch.full_like(batch["token_roles"], -1))
        return None

    def __call__(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None):
        roles = batch["token_roles"]  # [B, T], -1 on padding
        labels = batch["labels"].clone()  # [B, T]
        input_draw, label_draw, example_draw, is_cot = (u.to(roles.device) for u in self._draws(batch, generator))
        response = (roles == ASSISTANT) | (roles == RATIONALE) | (roles == ANSWER)
        candidates = torch.where(is_cot, roles == RATIONALE, response) if self.cot_rules else response
        masked_inputs = batch["input_ids"].masked_fill(candidates & (input_draw < self.p_in), self.mask_token_id)

        if self.cot_rules:
            rationale = (roles == RATIONALE) & is_cot
            drop_token = rationale & (label_draw < self.p_label)
            answer_only = example_draw < self.p_answer_only  # the example's one draw, on each of its tokens
            labels = labels.masked_fill(drop_token | (rationale & answer_only), IGNORE_INDEX)
        return {**batch, "masked_input_ids": masked_inputs, "labels": labels}


@dataclass
class NoisyCollator:
    """A padding collator followed by the regularization noise (training batches only)."""

    collate: object
    noise: RegularizationNoise

    def __call__(self, rows):
        return self.noise(self.collate(rows))


class NoiseEpoch(TrainerCallback):
    """Tell collate-time noise (masks, NEFTune seeds) which epoch starts, so each epoch
    draws fresh noise."""

    def __init__(self, *noises):
        self.noises = noises

    def on_epoch_begin(self, args, state, control, **kwargs):
        for noise in self.noises:
            noise.epoch = math.floor(state.epoch or 0)


# --------------------------------------------------------------------------- the losses


def symmetric_kl(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """0.5 * (KL(a || b) + KL(b || a)) per position = 0.5 * sum_v (p_a - p_b)(log p_a - log p_b).

    logits: [..., V] -> [...]
    """
    return symmetric_kl_from_log_probs(log_probs(logits_a), log_probs(logits_b))


def remask_loss(
    logits_full: torch.Tensor,
    logits_masked: torch.Tensor,
    labels: torch.Tensor,
    weight: float,
    num_items: torch.Tensor | int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L = 0.5 * (CE(z_masked, y) + CE(z_full, y)) + weight * D, where D is the mean over
    label positions of the symmetric KL between the two predictive distributions.
    Gradients flow through both passes and both sides of D.

    Each pass's log-softmax is computed once, at label positions only, and serves both its
    cross-entropy and the divergence.
    """
    selected_full, targets, mask = label_positions(logits_full, labels)
    selected_masked, _, _ = label_positions(logits_masked, labels)
    return remask_loss_from_selected(selected_full, selected_masked, targets, mask, weight, num_items)


def remask_loss_from_selected(
    selected_full, selected_masked, targets: torch.Tensor, mask: torch.Tensor, weight: float, num_items=None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """`remask_loss` from both passes' outputs already selected at the label positions (as
    `ce.label_positions` selects them: logits rows or `SelectedHidden`), their targets [N] and
    the label mask [B, T-1]; the shared-prompt path selects them from one packed row."""
    nll_masked, nll_full, divergence = nll_and_symmetric_kl(selected_masked, selected_full, targets)
    denominator = normaliser(mask, num_items)
    ce_full, ce_masked = nll_full.sum() / denominator, nll_masked.sum() / denominator
    kl = divergence.sum() / denominator
    loss = 0.5 * (ce_masked + ce_full) + weight * kl
    return loss, {
        "nll_sum": nll_full.sum().detach(),
        "tokens": mask.sum(),
        "ce_masked": ce_masked.detach(),
        "ce_full": ce_full.detach(),
        "kl": kl.detach(),
    }


def masked_thought_loss(
    logits_masked: torch.Tensor, labels: torch.Tensor, num_items: torch.Tensor | int | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Masked Thought: plain CE of the masked pass (single pass)."""
    return cross_entropy_loss(logits_masked, labels, num_items)
