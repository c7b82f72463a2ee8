"""ReMask, ReMask-CoT and Masked Thought on hand-computed tensors, the masking rules by
statistics over many draws, gradients through both passes, and the fused pass."""

from __future__ import annotations

import math

import pytest
import torch

from lmforge.objectives import build_objective
from lmforge.objectives.remask import RegularizationNoise, remask_loss, symmetric_kl
from tests.train.conftest import tiny_model

# Two distributions over two tokens:
#   a = softmax([0, 0])    = (1/2, 1/2)
#   b = softmax([ln 3, 0]) = (3/4, 1/4)
# KL(a||b) = 1/2 ln(2/3) + 1/2 ln 2      = 0.5*(-0.405465) + 0.5*0.693147 = 0.143841
# KL(b||a) = 3/4 ln(3/2) + 1/4 ln(1/2)   = 0.75*0.405465 - 0.25*0.693147  = 0.130812
# symmetric = (0.143841 + 0.130812) / 2  = 0.137327
A = torch.tensor([[[0.0, 0.0]]])
B = torch.tensor([[[math.log(3.0), 0.0]]])


def test_symmetric_kl_hand_value():
    assert symmetric_kl(A, B).item() == pytest.approx(0.137327, abs=1e-6)
    assert symmetric_kl(B, A).item() == pytest.approx(0.137327, abs=1e-6)
    assert symmetric_kl(A, A).item() == 0.0


def test_remask_loss_hand_value():
    """Sequence of 2 positions, label at position 1 is token 0 (predicted from position 0).

    full pass   predicts (1/2, 1/2): CE = ln 2          = 0.693147
    masked pass predicts (3/4, 1/4): CE = -ln(3/4)      = 0.287682
    D = 0.137327 at the one label position
    L = 0.5 * (0.693147 + 0.287682) + 0.1 * 0.137327 = 0.490415 + 0.013733 = 0.504147
    """
    full = torch.cat([A, torch.zeros(1, 1, 2)], dim=1)  # [1, 2, 2]; position 1 predicts nothing
    masked = torch.cat([B, torch.zeros(1, 1, 2)], dim=1)
    labels = torch.tensor([[-100, 0]])
    loss, metrics = remask_loss(full, masked, labels, weight=0.1)
    assert loss.item() == pytest.approx(0.504147, abs=1e-6)
    assert metrics["kl"].item() == pytest.approx(0.137327, abs=1e-6)


def test_gradients_flow_through_both_passes_and_both_kl_directions():
    torch.manual_seed(0)
    full = torch.randn(2, 5, 7, dtype=torch.float64, requires_grad=True)
    masked = torch.randn(2, 5, 7, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([[-100, 1, 2, 3, 4], [-100, -100, 5, 6, -100]])
    loss, _ = remask_loss(full, masked, labels, weight=0.5)
    grad_full, grad_masked = torch.autograd.grad(loss, (full, masked))
    assert grad_full.abs().sum() > 0 and grad_masked.abs().sum() > 0

    # the divergence's gradient equals that of both KL directions written out, no stop-gradient
    def explicit(a, b):
        la, lb = a.log_softmax(-1), b.log_softmax(-1)
        return 0.5 * ((la.exp() * (la - lb)).sum(-1) + (lb.exp() * (lb - la)).sum(-1))

    assert torch.autograd.gradcheck(lambda a, b: symmetric_kl(a, b).sum(), (full, masked))
    ga = torch.autograd.grad(symmetric_kl(full, masked).sum(), (full, masked))
    gb = torch.autograd.grad(explicit(full, masked).sum(), (full, masked))
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y)


# --------------------------------------------------------------------------- masking rules

P, ASSIST, RAT, ANS = 0, 1, 2, 3
MASK_ID = 99


def _batch(rows_roles):
    roles = torch.tensor(rows_roles)
    input_ids = torch.arange(roles.numel()).view_as(roles) % 50 + 1
    labels = torch.where(roles > 0, input_ids, torch.full_like(input_ids, -100))
    labels = torch.where(roles < 0, torch.full_like(labels, -100), labels)
    return {"input_ids": input_ids, "labels": labels, "token_roles": roles, "attention_mask": (roles >= 0).long()}


COT = [P] * 4 + [RAT] * 40 + [ANS] * 4
CHAT = [P] * 4 + [ASSIST] * 40 + [-1] * 4  # padded


def _many_draws(noise, rows, n=400):
    generator = torch.Generator().manual_seed(0)
    batch = _batch(rows)
    return batch, [noise(batch, generator) for _ in range(n)]


def test_cot_rules_answer_never_masked_rationale_masked_at_p_in():
    noise = RegularizationNoise(MASK_ID, p_in=0.4, p_label=0.1, p_answer_only=0.1, cot_rules=True)
    batch, draws = _many_draws(noise, [COT, CHAT])
    roles = batch["token_roles"]
    masked = torch.stack([d["masked_input_ids"] == MASK_ID for d in draws]).float()  # [n, B, T]
    labels_dropped = torch.stack([(d["labels"] == -100) & (batch["labels"] != -100) for d in draws]).float()
    cot, chat = 0, 1
    # answers: never masked as input, never as label
    assert masked[:, cot][:, roles[cot] == ANS].sum() == 0
    assert labels_dropped[:, cot][:, roles[cot] == ANS].sum() == 0
    # prompt and padding never masked
    assert masked[:, :, :4].sum() == 0 and masked[:, chat, -4:].sum() == 0
    # rationale inputs masked at p_in
    assert masked[:, cot][:, roles[cot] == RAT].mean().item() == pytest.approx(0.4, abs=0.02)
    # rationale labels: dropped at p_label, plus all of them in p_answer_only of the examples
    rationale_drops = labels_dropped[:, cot][:, roles[cot] == RAT]  # [n, 40]
    answer_only = (rationale_drops.mean(1) == 1.0).float().mean().item()
    assert answer_only == pytest.approx(0.1, abs=0.04)
    partial = rationale_drops[rationale_drops.mean(1) < 1.0]
    assert partial.mean().item() == pytest.approx(0.1, abs=0.02)
    # the non-CoT example in the same batch gets plain ReMask: inputs masked, labels kept
    assert masked[:, chat][:, roles[chat] == ASSIST].mean().item() == pytest.approx(0.4, abs=0.02)
    assert labels_dropped[:, chat].sum() == 0


def test_plain_remask_masks_every_response_token_and_keeps_labels():
    noise = RegularizationNoise(MASK_ID, p_in=0.4, cot_rules=False)
    batch, draws = _many_draws(noise, [COT])
    roles = batch["token_roles"][0]
    masked = torch.stack([d["masked_input_ids"][0] == MASK_ID for d in draws]).float()
    assert masked[:, roles == ANS].mean().item() == pytest.approx(0.4, abs=0.05)
    assert masked[:, roles == RAT].mean().item() == pytest.approx(0.4, abs=0.02)
    assert all(torch.equal(d["labels"], batch["labels"]) for d in draws)
    assert all(torch.equal(d["input_ids"], batch["input_ids"]) for d in draws)


# --------------------------------------------------------------------------- fused pass


def _noisy_batch():
    noise = RegularizationNoise(MASK_ID % 48, p_in=0.4, p_label=0.1, p_answer_only=0.0)
    batch = _batch([COT, CHAT])
    batch["input_ids"] = batch["input_ids"] % 45 + 3
    batch["labels"] = torch.where(batch["labels"] == -100, batch["labels"], batch["input_ids"])
    return noise(batch, torch.Generator().manual_seed(1))


@pytest.mark.parametrize("weight", [0.1, 1.0])
def test_fused_pass_equals_two_separate_passes(weight):
    batch = _noisy_batch()
    results = []
    for fused in (True, False):
        model = tiny_model(seed=3)
        model.train()
        loss, _ = build_objective("remask", {"weight": weight, "fused": fused})(model, batch, None)
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (fused_loss, fused_grads), (plain_loss, plain_grads) = results
    torch.testing.assert_close(fused_loss, plain_loss, atol=1e-6, rtol=1e-6)
    for name in plain_grads:
        torch.testing.assert_close(fused_grads[name], plain_grads[name], atol=1e-5, rtol=1e-5, msg=name)


def test_masked_thought_is_ce_of_the_masked_pass_and_eval_batches_get_plain_ce():
    batch = _noisy_batch()
    model = tiny_model(seed=3)
    mt, _ = build_objective("masked_thought", {})(model, batch, None)
    ce_masked, _ = build_objective("ce", {})(model, {**batch, "input_ids": batch["masked_input_ids"]}, None)
    torch.testing.assert_close(mt, ce_masked)
    clean = {k: v for k, v in batch.items() if k != "masked_input_ids"}
    for name in ("remask", "remask_cot", "masked_thought"):
        loss, _ = build_objective(name, {"weight": 0.1})(model, clean, None)
        torch.testing.assert_close(loss, build_objective("ce", {})(model, clean, None)[0])


def test_remask_loss_equals_the_plain_full_tensor_formula():
    """The label-position implementation against DESIGN §3.3 written over full tensors."""
    torch.manual_seed(1)
    full = torch.randn(2, 7, 11, dtype=torch.float64, requires_grad=True)
    masked = torch.randn(2, 7, 11, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 11, (2, 7))
    labels[0, :3] = -100
    labels[1, 5:] = -100
    loss, _ = remask_loss(full, masked, labels, weight=0.3)

    valid = labels[:, 1:] != -100
    ce = torch.nn.functional.cross_entropy
    ce_full = ce(full[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), ignore_index=-100)
    ce_masked = ce(masked[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), ignore_index=-100)
    p_m, p_f = masked[:, :-1].softmax(-1), full[:, :-1].softmax(-1)
    kl_mf = (p_m * (p_m.log() - p_f.log())).sum(-1)
    kl_fm = (p_f * (p_f.log() - p_m.log())).sum(-1)
    divergence = (0.5 * (kl_mf + kl_fm))[valid].mean()
    plain = 0.5 * (ce_masked + ce_full) + 0.3 * divergence
    torch.testing.assert_close(loss, plain)
    for a, b in zip(
        torch.autograd.grad(loss, (full, masked), retain_graph=True), torch.autograd.grad(plain, (full, masked))
    ):
        torch.testing.assert_close(a, b)
