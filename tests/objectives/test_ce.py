"""CE and MixCE on hand-computed tensors.

One sequence, vocabulary 2, three positions; labels [-100, 0, 1] so the targets after the
shift are position 0 -> token 0 and position 1 -> token 1 (position 2 predicts nothing).

    logits[0] = [ln 3, 0]   -> p(token 0) = 3/4
    logits[1] = [0, 0]      -> p(token 1) = 1/2

CE    = (-ln 3/4 - ln 1/2) / 2 = (0.287682 + 0.693147) / 2 = 0.490415
MixCE(eta = 0.75): weights eta + (1 - eta) p = 0.75 + 0.25*0.75 = 0.9375 and
                                              0.75 + 0.25*0.5  = 0.875
      = (0.9375*0.287682 + 0.875*0.693147) / 2 = (0.269702 + 0.606504) / 2 = 0.438103
"""

from __future__ import annotations

import math

import torch

from lmforge.objectives.ce import cross_entropy_loss, mixce_loss

LOGITS = torch.tensor([[[math.log(3.0), 0.0], [0.0, 0.0], [5.0, -5.0]]])
LABELS = torch.tensor([[-100, 0, 1]])


def test_cross_entropy_hand_value():
    loss, metrics = cross_entropy_loss(LOGITS, LABELS)
    assert abs(loss.item() - 0.490415) < 1e-6
    assert metrics["tokens"].item() == 2


def test_mixce_hand_value():
    loss, _ = mixce_loss(LOGITS, LABELS, ratio=0.75)
    assert abs(loss.item() - 0.438103) < 1e-6


def test_mixce_ratio_one_is_cross_entropy():
    ce, _ = cross_entropy_loss(LOGITS, LABELS)
    mix, _ = mixce_loss(LOGITS, LABELS, ratio=1.0)
    assert torch.allclose(ce, mix)


def test_mixce_weight_is_stop_gradient():
    """d/dz of w*nll with w held constant: the gradient equals w times the CE gradient."""
    logits = LOGITS.clone().requires_grad_(True)
    mixce_loss(logits, LABELS, ratio=0.75)[0].backward()
    expected_scale = torch.tensor([0.9375, 0.875])
    ce_logits = LOGITS.clone().requires_grad_(True)
    cross_entropy_loss(ce_logits, LABELS)[0].backward()
    torch.testing.assert_close(logits.grad[0, :2], ce_logits.grad[0, :2] * expected_scale[:, None])


def test_num_items_normalises_by_the_global_count():
    """With 10 label tokens in the whole global batch, this micro-batch's share is sum/10."""
    loss, _ = cross_entropy_loss(LOGITS, LABELS, num_items=10)
    assert abs(loss.item() - (0.287682 + 0.693147) / 10) < 1e-6


def test_label_position_path_equals_the_plain_full_tensor_computation():
    """Only label positions go through the softmax; the result must equal F.cross_entropy
    over every position with ignore_index (the obviously-correct version), values and grads."""
    torch.manual_seed(0)
    logits = torch.randn(3, 9, 17, requires_grad=True)
    labels = torch.randint(0, 17, (3, 9))
    labels[0, :4] = -100
    labels[2, 6:] = -100
    loss, _ = cross_entropy_loss(logits, labels)
    plain = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, 17), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    torch.testing.assert_close(loss, plain)
    grad = torch.autograd.grad(loss, logits)[0]
    torch.testing.assert_close(grad, torch.autograd.grad(plain, logits)[0])
