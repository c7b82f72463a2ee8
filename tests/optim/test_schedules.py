"""Learning-rate schedules (DESIGN §3.9) at hand-derived steps.

`lrs[s]` is the learning rate of step s (the one the (s+1)-th update uses); `lrs[T]` is the
value after the scheduler has been stepped T = total_steps times, the schedule's end point.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from lmforge.optim.schedules import SCHEDULES, build_schedule, learning_rates

LR = 1e-3


def _lrs(name: str, total_steps: int, warmup_steps: int = 0, lr: float = LR, **options) -> list[float]:
    """Learning rates at steps 0..total_steps, stepping the scheduler total_steps times."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    schedule = build_schedule(name, optimizer, total_steps, warmup_steps=warmup_steps, **options)
    lrs = [optimizer.param_groups[0]["lr"]]
    for _ in range(total_steps):
        optimizer.step()
        schedule.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


def test_one_cycle_hand_values():
    """T = 11, warmup 3, div_factor 25, final_div_factor 1e4.

    warmup, half cosine from lr/25 to lr: lr·(0.04 + 0.96·(1 - cos(π·s/3))/2)
        s = 0: 0.04·lr;  s = 1: (0.04 + 0.96·0.25)·lr = 0.28·lr;  s = 2: 0.76·lr;  s = 3: lr
    decay, half cosine from lr to floor = lr/(25·1e4) = 4e-6·lr over steps 3..11:
        s = 7 (half way): floor + (lr - floor)/2 = 0.500002·lr;  s = 11: 4e-6·lr
    """
    lrs = _lrs("one_cycle", 11, warmup_steps=3)
    expected = {0: 0.04, 1: 0.28, 2: 0.76, 3: 1.0, 7: 0.500002, 11: 4e-6}
    for step, multiple in expected.items():
        assert lrs[step] == pytest.approx(multiple * LR, rel=1e-9), step
    assert max(lrs) == pytest.approx(LR, rel=1e-12)


def test_one_cycle_options_and_groups():
    """Each group peaks at its own lr; div_factor 10, final_div_factor 100 start at lr/10
    and end at lr/1000."""
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [a], "lr": 1.0}, {"params": [b], "lr": 0.5}])
    schedule = build_schedule("one_cycle", optimizer, 10, warmup_steps=2, div_factor=10, final_div_factor=100)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.1, 0.05])
    for _ in range(2):
        optimizer.step()
        schedule.step()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([1.0, 0.5])
    for _ in range(8):
        optimizer.step()
        schedule.step()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([1e-3, 5e-4])


def test_one_cycle_without_warmup_starts_at_the_peak():
    """No rising phase: half a cosine from lr at step 0 to lr/(25·1e4) at step 10;
    step 5 is half way: (lr + 4e-6·lr)/2."""
    lrs = _lrs("one_cycle", 10)
    assert lrs[0] == pytest.approx(LR, rel=1e-12)
    assert lrs[5] == pytest.approx(0.500002 * LR, rel=1e-9)
    assert lrs[10] == pytest.approx(4e-6 * LR, rel=1e-9)


def test_sigmoid_hand_values():
    """T = 20, warmup 10, steepness k = 10: with σ(z) = 1/(1 + e^-z) and x = s/10,
    f(x) = (σ(10x - 5) - σ(-5)) / (σ(5) - σ(-5)), σ(-5) = 0.0066928509, σ(5) = 0.9933071491.
        s = 1: (σ(-4) - σ(-5)) / 0.9866142982 = (0.0179862100 - 0.0066928509) / 0.9866142982 = 0.0114465795
        s = 2: (σ(-3) - σ(-5)) / 0.9866142982 = (0.0474258732 - 0.0066928509) / 0.9866142982 = 0.0412856598
        s = 5: 0.5 by symmetry;  s = 8: 1 - f(0.2) = 0.9587143402;  s ≥ 10: 1
    """
    lrs = _lrs("sigmoid", 20, warmup_steps=10)
    expected = {0: 0.0, 1: 0.0114465795, 2: 0.0412856598, 5: 0.5, 8: 0.9587143402}
    for step, multiple in expected.items():
        assert lrs[step] == pytest.approx(multiple * LR, rel=1e-8, abs=1e-15), step
    assert lrs[10:] == [LR] * 11


def test_sigmoid_shape():
    """Starts slow (the first 10% of warmup stays under 10% of lr), rises monotonically,
    reaches lr exactly at the end of warmup."""
    lrs = _lrs("sigmoid", 200, warmup_steps=100)
    warmup = lrs[:101]
    assert all(a < b for a, b in zip(warmup, warmup[1:]))
    assert max(warmup[:11]) < 0.1 * LR
    assert lrs[100] == LR


def test_sigmoid_cosine_decay():
    """decay="cosine", T = 20, warmup 10: half a cosine from lr at 10 to 0 at 20;
    s = 15 gives lr/2, s = 12 gives lr·(1 + cos(π/5))/2 = 0.9045084972·lr."""
    lrs = _lrs("sigmoid", 20, warmup_steps=10, decay="cosine")
    assert lrs[10] == LR
    assert lrs[12] == pytest.approx(0.9045084972 * LR, rel=1e-9)
    assert lrs[15] == pytest.approx(0.5 * LR, rel=1e-9)
    assert lrs[20] == pytest.approx(0.0, abs=1e-15)


def test_sigmoid_rejects_bad_options():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    with pytest.raises(ValueError):
        build_schedule("sigmoid", optimizer, 10, warmup_steps=2, decay="linear")
    with pytest.raises(ValueError):
        build_schedule("sigmoid", optimizer, 10, warmup_steps=2, steepness=0.0)


def test_wsd_hand_values():
    """T = 20, warmup 4, decay_ratio 0.25 -> ceil(5) = 5 decay steps (15..19), stable 4..14,
    min_lr_ratio 0.1.
        warmup, linear from 0.1·lr: s = 0: 0.1·lr;  s = 2: (0.1 + 0.9·0.5)·lr = 0.55·lr
        stable: exactly lr
        cosine decay over 5 steps: s = 15: lr;
            s = 16: (0.1 + 0.9·(1 + cos(π/5))/2)·lr = (0.1 + 0.9·0.9045084972)·lr = 0.9140576475·lr
        s = 20: 0.1·lr
    """
    lrs = _lrs("wsd", 20, warmup_steps=4, decay_ratio=0.25, min_lr_ratio=0.1)
    assert lrs[0] == pytest.approx(0.1 * LR, rel=1e-12)
    assert lrs[2] == pytest.approx(0.55 * LR, rel=1e-12)
    assert lrs[4:16] == [LR] * 12
    assert lrs[16] == pytest.approx(0.9140576475 * LR, rel=1e-9)
    assert lrs[20] == pytest.approx(0.1 * LR, rel=1e-12)


def test_wsd_linear_decay_and_default_ratio():
    """Defaults: decay_ratio 0.1 of T = 50 -> 5 steps (45..49), min_lr_ratio 0; linear:
    s = 47: 1 - 2/5 = 0.6."""
    lrs = _lrs("wsd", 50, decay_type="linear")
    assert lrs[:46] == [LR] * 46
    assert lrs[47] == pytest.approx(0.6 * LR, rel=1e-12)
    assert lrs[50] == 0.0


def test_wsd_rejects_overlapping_phases():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    with pytest.raises(ValueError):
        build_schedule("wsd", optimizer, 10, warmup_steps=8, decay_ratio=0.5)


def test_cosine_linear_constant_hand_values():
    """T = 10, warmup 2 (linear from 0: s = 1 is lr/2).
    cosine: s = 6 is half way through the decay (4 of 8 steps): lr/2; with min_lr_ratio 0.1:
            (0.1 + 0.9·0.5)·lr = 0.55·lr; s = 10: 0.1·lr
    linear: s = 6: lr·4/8 = 0.5·lr;  constant: lr from s = 2 on."""
    cosine = _lrs("cosine", 10, warmup_steps=2)
    assert cosine[1] == pytest.approx(0.5 * LR) and cosine[2] == LR
    assert cosine[6] == pytest.approx(0.5 * LR, rel=1e-12) and cosine[10] == pytest.approx(0.0, abs=1e-18)
    floored = _lrs("cosine", 10, warmup_steps=2, min_lr_ratio=0.1)
    assert floored[6] == pytest.approx(0.55 * LR, rel=1e-12) and floored[10] == pytest.approx(0.1 * LR, rel=1e-12)
    linear = _lrs("linear", 10, warmup_steps=2)
    assert linear[6] == pytest.approx(0.5 * LR, rel=1e-12) and linear[10] == 0.0
    assert _lrs("constant", 10, warmup_steps=2)[2:] == [LR] * 9


@pytest.mark.parametrize("warmup_steps", [0, 1, 3])
@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_every_schedule_steps_total_steps_times(name, warmup_steps):
    lrs = _lrs(name, 10, warmup_steps=warmup_steps)
    assert all(math.isfinite(lr) and 0.0 <= lr <= LR * (1 + 1e-12) for lr in lrs)


def test_build_schedule_arguments():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    with pytest.raises(KeyError):
        build_schedule("step", optimizer, 10)
    with pytest.raises(TypeError):
        build_schedule("linear", optimizer, 10, min_lr_ratio=0.1)  # not a linear option
    # warmup_ratio 0.25 of 10 -> ceil(2.5) = 3 steps; warmup_steps overrides it
    assert learning_rates("linear", 10, 1.0, warmup_ratio=0.25)[3] == 1.0
    assert learning_rates("linear", 10, 1.0, warmup_ratio=0.25, warmup_steps=1)[1] == 1.0


def test_learning_rates():
    """linear, T = 10, warmup 2, lr 1: 0, 1/2, then 1 - (s - 2)/8."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. torch's "scheduler stepped before optimizer"
        rates = learning_rates("linear", 10, 1.0, warmup_steps=2)
    assert rates == pytest.approx([0.0, 0.5, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125])
    assert learning_rates("one_cycle", 11, 2.0, warmup_steps=3, div_factor=10)[0] == pytest.approx(0.2)
