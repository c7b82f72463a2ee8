"""A NaN loss skips its update (no weight changes), is counted and logged; more than K in
a row stop the run with a clear error."""

from __future__ import annotations

import pytest
import torch
from transformers import TrainerCallback

from lmforge.objectives import build_objective
from lmforge.train.callbacks import NonFiniteLossError
from tests.train.conftest import make_trainer, tiny_model, token_rows


def nan_on_steps(bad_steps: set[int]):
    """CE objective whose loss is NaN on the given (1-based) optimizer steps."""
    ce = build_objective("ce", {})
    state = {"calls": 0}

    def objective(model, batch, num_items=None):
        loss, metrics = ce(model, batch, num_items)
        if model.training:
            state["calls"] += 1
            if state["calls"] in bad_steps:
                loss = loss * float("nan")
        return loss, metrics

    return objective


class Snapshots(TrainerCallback):
    """Weights after every optimizer step, and the logs."""

    def __init__(self, model):
        self.weights = [self._copy(model)]
        self.logs = []

    @staticmethod
    def _copy(model):
        return {n: p.detach().clone() for n, p in model.named_parameters()}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.weights.append(self._copy(model))

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}))


def _same(a, b):
    return all(torch.equal(a[n], b[n]) for n in a)


def test_nan_step_leaves_weights_untouched_and_is_counted(tmp_path):
    model = tiny_model()
    snapshots = Snapshots(model)
    trainer = make_trainer(
        model,
        token_rows(16),
        tmp_path,
        micro_batch=4,
        accumulation=1,
        max_steps=4,
        objective=nan_on_steps({2}),
        callbacks=[snapshots],
        weight_decay=0.1,
    )
    trainer.train()
    assert not _same(snapshots.weights[0], snapshots.weights[1])  # step 1 trained
    assert _same(snapshots.weights[1], snapshots.weights[2])  # step 2 (NaN) skipped, decay included
    assert not _same(snapshots.weights[2], snapshots.weights[3])  # training goes on
    assert trainer.guard.skipped == 1
    assert [log["skipped_updates"] for log in snapshots.logs if "loss" in log] == [0, 1, 1, 1]
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_nan_in_one_micro_batch_skips_the_whole_accumulated_update(tmp_path):
    model = tiny_model()
    snapshots = Snapshots(model)
    # step 1 = micro-batch calls 1..2; the NaN is in the second micro-batch
    trainer = make_trainer(
        model,
        token_rows(16),
        tmp_path,
        micro_batch=2,
        accumulation=2,
        max_steps=2,
        objective=nan_on_steps({2}),
        callbacks=[snapshots],
    )
    trainer.train()
    assert _same(snapshots.weights[0], snapshots.weights[1])
    assert not _same(snapshots.weights[1], snapshots.weights[2])


def test_more_than_k_consecutive_nan_steps_stop_the_run(tmp_path):
    model = tiny_model()
    trainer = make_trainer(
        model,
        token_rows(32),
        tmp_path,
        micro_batch=2,
        accumulation=1,
        max_steps=10,
        objective=nan_on_steps({3, 4, 5}),
        max_consecutive_nonfinite=2,
    )
    with pytest.raises(NonFiniteLossError, match="3 updates in a row"):
        trainer.train()
    assert trainer.state.global_step == 4  # steps 1-2 fine, 3-4 skipped, stopped at 5


def test_k_consecutive_nan_steps_are_tolerated(tmp_path):
    trainer = make_trainer(
        tiny_model(),
        token_rows(32),
        tmp_path,
        micro_batch=2,
        accumulation=1,
        max_steps=6,
        objective=nan_on_steps({3, 4}),
        max_consecutive_nonfinite=2,
    )
    trainer.train()
    assert trainer.guard.skipped == 2 and trainer.state.global_step == 6
