"""Micro-batch 8 x accumulation 1 and micro-batch 1 x accumulation 8 must give the same
loss and gradients: losses are averaged over the label tokens of the whole global batch."""

from __future__ import annotations

import torch
from transformers import TrainerCallback

from tests.train.conftest import make_trainer, tiny_model, token_rows


class RecordFirstStep(TrainerCallback):
    def __init__(self):
        self.grads = None
        self.loss = None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if self.grads is None:
            self.grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.loss is None and logs and "loss" in logs:
            self.loss = logs["loss"]


def _first_step(tmp_path, micro: int, accumulation: int):
    recorder = RecordFirstStep()
    trainer = make_trainer(
        tiny_model(),
        token_rows(8),
        tmp_path / f"m{micro}",
        micro,
        accumulation,
        max_steps=1,
        callbacks=[recorder],
        max_grad_norm=0.0,
    )
    trainer.train()
    return recorder


def test_micro_batch_8_equals_micro_batch_1_times_8(tmp_path):
    big = _first_step(tmp_path, micro=8, accumulation=1)
    small = _first_step(tmp_path, micro=1, accumulation=8)
    assert big.grads.keys() == small.grads.keys() and big.grads
    for name in big.grads:
        torch.testing.assert_close(small.grads[name], big.grads[name], atol=1e-5, rtol=1e-5, msg=name)
    assert abs(big.loss - small.loss) < 1e-5


def test_the_data_would_expose_a_per_micro_batch_mean():
    """Guard against a vacuous test: with these rows, the mean of per-example means
    differs from the token mean, so averaging per micro-batch would be caught."""
    model = tiny_model()
    rows = token_rows(8)
    per_example, total, count = [], 0.0, 0
    with torch.no_grad():
        for row in rows:
            ids = torch.tensor([row["input_ids"]])
            labels = torch.tensor([row["labels"]])
            logits = model(input_ids=ids).logits
            nll = torch.nn.functional.cross_entropy(logits[0, :-1], labels[0, 1:], ignore_index=-100, reduction="sum")
            n = int(labels[0, 1:].ne(-100).sum())
            per_example.append(float(nll) / n)
            total += float(nll)
            count += n
    assert abs(sum(per_example) / len(per_example) - total / count) > 1e-3
