"""Lilith (DESIGN §3.8) on hand-computed tensors.

Hyper-parameters unless a test says otherwise: lr = 0.1, β1_m = 0.9, β2_m = 0.99,
β_v = 0.999, acceleration = 1, weight_decay = 0 and eps = 0 (so a first step is exactly
±lr per element, as in Adam).

Two steps on p = [[1, 2], [2, 4]] (‖p‖ = 5):

step 1, g = [[0.5, -0.5], [0.5, 0.5]] (‖g‖ = 1):
    trust ratio = max(5 / max(1, 1e-4), 1e-4) = 5          -> g = [[2.5, -2.5], [2.5, 2.5]]
    m1 = 0.9·(0 + 0) + 0.1·g = [[0.25, -0.25], [0.25, 0.25]]
    m2 = 0.99·0 + 0.01·(m1 - 0) = ±0.0025
    u  = m1 + m2 = ±0.2525
    v  = 0.001·0.2525² = 6.375625e-5;  v̂ = v / (1 - 0.999) = 0.06375625 = u²
    p ← p - 0.1·u/sqrt(v̂) = p - 0.1·sign(g) = [[0.9, 2.1], [1.9, 3.9]]

step 2, g = p = [[0.9, 2.1], [1.9, 3.9]]: trust ratio = ‖p‖/‖g‖ = 1, g unchanged.
    m1 = 0.9·(m1 + m2) + 0.1·g = 0.9·(±0.2525) + 0.1·g
       = [[0.22725 + 0.09, -0.22725 + 0.21], [0.22725 + 0.19, 0.22725 + 0.39]]
       = [[0.31725, -0.01725], [0.41725, 0.61725]]
    m1 - m1_old = [[0.06725, 0.23275], [0.16725, 0.36725]]
    m2 = 0.99·(±0.0025) + 0.01·(m1 - m1_old)
       = [[0.0031475, -0.0001475], [0.0041475, 0.0061475]]
    u  = m1 + m2 = [[0.3203975, -0.0173975], [0.4213975, 0.6233975]]
    v  = 0.999·6.375625e-5 + 0.001·u²
       = [[1.6634705175625e-4, 6.399516675625e-5], [2.4126834675625e-4, 4.5231693675625e-4]]
    v̂ = v / (1 - 0.999²) = v / 0.001999
       = [[0.0832151334448, 0.0320135901732], [0.1206945206384, 0.2262716041802]]
    u/sqrt(v̂) = [[0.3203975/0.2884703337, -0.0173975/0.1789234199],
                 [0.4213975/0.3474111694,  0.6233975/0.4756801490]]
              = [[1.1106774685, -0.0972343364], [1.2129647435, 1.3105392379]]
    p ← p - 0.1·u/sqrt(v̂) = [[0.7889322532, 2.1097234336], [1.7787035257, 3.7689460762]]
"""

from __future__ import annotations

import io

import pytest
import torch

from lmforge.optim.lilith import Lilith

P0 = [[1.0, 2.0], [2.0, 4.0]]
G1 = [[0.5, -0.5], [0.5, 0.5]]
HAND = dict(lr=0.1, eps=0.0, weight_decay=0.0)


def _param(values) -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.tensor(values, dtype=torch.float64))


def _step(optimizer: Lilith, param: torch.Tensor, grad) -> None:
    param.grad = torch.as_tensor(grad, dtype=param.dtype).clone()
    optimizer.step()


def test_first_step_hand_values():
    p = _param(P0)
    opt = Lilith([p], **HAND)
    _step(opt, p, G1)
    state = opt.state[p]
    torch.testing.assert_close(state["m1"], torch.tensor([[0.25, -0.25], [0.25, 0.25]], dtype=torch.float64))
    torch.testing.assert_close(state["m2"], torch.tensor([[0.0025, -0.0025], [0.0025, 0.0025]], dtype=torch.float64))
    torch.testing.assert_close(state["v"], torch.full((2, 2), 6.375625e-5, dtype=torch.float64))
    assert state["step"] == 1
    torch.testing.assert_close(p.detach(), torch.tensor([[0.9, 2.1], [1.9, 3.9]], dtype=torch.float64))


def test_second_step_hand_values():
    p = _param(P0)
    opt = Lilith([p], **HAND)
    _step(opt, p, G1)
    _step(opt, p, [[0.9, 2.1], [1.9, 3.9]])
    state = opt.state[p]
    torch.testing.assert_close(
        state["m1"], torch.tensor([[0.31725, -0.01725], [0.41725, 0.61725]], dtype=torch.float64)
    )
    torch.testing.assert_close(
        state["m2"], torch.tensor([[0.0031475, -0.0001475], [0.0041475, 0.0061475]], dtype=torch.float64)
    )
    expected = torch.tensor([[0.7889322532, 2.1097234336], [1.7787035257, 3.7689460762]], dtype=torch.float64)
    torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("shape", [(1,), (1, 1), ()])
def test_single_element_has_no_trust_ratio(shape):
    """p = 2, g = 0.5. A trust ratio would be 2/0.5 = 4 and make m1 = 0.1·2 = 0.2; without
    it m1 = 0.1·0.5 = 0.05, m2 = 0.01·0.05 = 0.0005, v = 0.001·0.0505² = 2.55025e-6, and
    p ← 2 - 0.1·sign(0.5) = 1.9."""
    p = torch.nn.Parameter(torch.full(shape, 2.0, dtype=torch.float64))
    opt = Lilith([p], **HAND)
    _step(opt, p, torch.full(shape, 0.5))
    state = opt.state[p]
    torch.testing.assert_close(state["m1"], torch.full(shape, 0.05, dtype=torch.float64))
    torch.testing.assert_close(state["m2"], torch.full(shape, 0.0005, dtype=torch.float64))
    torch.testing.assert_close(state["v"], torch.full(shape, 2.55025e-6, dtype=torch.float64))
    torch.testing.assert_close(p.detach(), torch.full(shape, 1.9, dtype=torch.float64))


def test_weight_decay_uses_the_parameter_before_the_update():
    """Step 1 of the module example with weight_decay = 0.01:
    u = sign(g) + 0.01·p = [[1.01, -0.98], [1.02, 1.04]],
    p ← p - 0.1·u = [[0.899, 2.098], [1.898, 3.896]]."""
    p = _param(P0)
    opt = Lilith([p], **{**HAND, "weight_decay": 0.01})
    _step(opt, p, G1)
    torch.testing.assert_close(p.detach(), torch.tensor([[0.899, 2.098], [1.898, 3.896]], dtype=torch.float64))


def test_weight_decay_per_group():
    """Zero gradient: m1 = m2 = v = 0, so u = 0/sqrt(0 + eps) + wd·p = wd·p and
    p ← p·(1 - lr·wd) = p·(1 - 0.1·0.5) = 0.95·p in the decay group; the group that
    overrides weight_decay to 0 does not move."""
    decayed, kept = _param(P0), _param(P0)
    opt = Lilith([{"params": [decayed]}, {"params": [kept], "weight_decay": 0.0}], lr=0.1, weight_decay=0.5)
    decayed.grad, kept.grad = torch.zeros(2, 2, dtype=torch.float64), torch.zeros(2, 2, dtype=torch.float64)
    opt.step()
    torch.testing.assert_close(decayed.detach(), torch.tensor([[0.95, 1.9], [1.9, 3.8]], dtype=torch.float64))
    torch.testing.assert_close(kept.detach(), torch.tensor(P0, dtype=torch.float64))


def test_ema_replaces_the_weights_every_ema_k_steps():
    """ema_k = 2, ema_β = 0.5; one element p = 1, g = 1 at every step.

    step 1: p ← 1 - 0.1·1 = 0.9 (first step: ±lr);  e = 0.5·1 + 0.5·0.9 = 0.95 (e starts
            at p); 1 % 2 != 0, so p stays 0.9.
    step 2: m1 = 0.9·(0.1 + 0.001) + 0.1·1 = 0.1909;  m2 = 0.99·0.001 + 0.01·0.0909 = 0.001899
            u = 0.192799;  v = 0.999·1.0201e-5 + 0.001·0.192799² = 4.7362253401e-5
            v̂ = v/0.001999 = 0.0236929732;  u/sqrt(v̂) = 0.192799/0.1539252195 = 1.2525497815
            p ← 0.9 - 0.12525497815 = 0.77474502185
            e = 0.5·0.95 + 0.5·0.77474502185 = 0.86237251093;  2 % 2 == 0, so p ← e.
    """
    p = _param([1.0])
    opt = Lilith([p], **HAND, ema_k=2, ema_beta=0.5)
    _step(opt, p, [1.0])
    assert p.item() == pytest.approx(0.9, abs=1e-12)
    assert opt.state[p]["ema"].item() == pytest.approx(0.95, abs=1e-12)
    _step(opt, p, [1.0])
    assert p.item() == pytest.approx(0.86237251093, abs=1e-10)
    assert torch.equal(p.detach(), opt.state[p]["ema"])
    _step(opt, p, [1.0])
    assert not torch.equal(p.detach(), opt.state[p]["ema"])  # step 3: no copy
    _step(opt, p, [1.0])
    assert torch.equal(p.detach(), opt.state[p]["ema"])  # step 4: copy


def _grads(step: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(step)
    return [torch.randn(2, 3, generator=gen), torch.randn(3, generator=gen)]


def _run(optimizer: Lilith, params: list[torch.Tensor], steps: range) -> None:
    for step in steps:
        for param, grad in zip(params, _grads(step)):
            param.grad = grad
        optimizer.step()


def _lilith(params: list[torch.Tensor]) -> Lilith:
    return Lilith(
        [{"params": params[:1]}, {"params": params[1:], "weight_decay": 0.0}],
        lr=0.05,
        weight_decay=0.1,
        ema_k=2,
        ema_beta=0.9,
    )


def test_state_dict_round_trip_continues_identically():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(2, 3)), torch.nn.Parameter(torch.randn(3))]
    opt = _lilith(params)
    _run(opt, params, range(3))

    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    resumed = _lilith(copies)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert resumed.state[copies[0]]["step"] == 3
    assert set(resumed.state[copies[0]]) == {"step", "m1", "m2", "v", "ema"}

    _run(opt, params, range(3, 6))
    _run(resumed, copies, range(3, 6))
    for original, copy in zip(params, copies):
        assert torch.equal(original, copy)
    for original, copy in zip(params, copies):
        for key in ("m1", "m2", "v", "ema"):
            assert torch.equal(opt.state[original][key], resumed.state[copy][key])


def _snapshot(optimizer: Lilith, param: torch.Tensor) -> dict:
    state = optimizer.state[param]
    copied = {k: v.clone() if torch.is_tensor(v) else v for k, v in state.items()}
    return {"param": param.detach().clone(), **copied}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k] for k in a)


def test_parameter_without_grad_is_untouched():
    """Before it has state (none is created) and after (none of it changes), with the EMA
    on so that every kind of state is there."""
    torch.manual_seed(0)
    used, skipped = torch.nn.Parameter(torch.randn(2, 2)), torch.nn.Parameter(torch.randn(2, 2))
    opt = Lilith([used, skipped], lr=0.1, ema_k=1)
    before = _snapshot(opt, skipped)
    used.grad, skipped.grad = torch.randn(2, 2), None
    opt.step()
    assert _same(_snapshot(opt, skipped), before) and len(opt.state[skipped]) == 0

    skipped.grad = torch.randn(2, 2)
    opt.step()
    before, used_before = _snapshot(opt, skipped), used.detach().clone()
    used.grad, skipped.grad = torch.randn(2, 2), None
    opt.step()
    assert _same(_snapshot(opt, skipped), before)
    assert not torch.equal(used, used_before)


def test_gradient_is_not_modified():
    p = _param(P0)
    opt = Lilith([p], lr=0.1)
    grad = torch.tensor(G1, dtype=torch.float64)
    p.grad = grad.clone()
    opt.step()
    assert torch.equal(p.grad, grad)  # the trust ratio (5 here) rescales a copy


def test_minimizes_a_quadratic():
    torch.manual_seed(0)
    target, curvature = torch.randn(4, 4), torch.rand(4, 4) * 4 + 0.5
    x = torch.nn.Parameter(torch.full((4, 4), 0.1))
    opt = Lilith([x], lr=0.02, weight_decay=0.0)

    def loss():
        return 0.5 * (curvature * (x - target) ** 2).sum()

    start = loss().item()
    for _ in range(300):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert loss().item() < start * 1e-3


@pytest.mark.parametrize("bad", [dict(lr=-1.0), dict(beta_v=1.0), dict(eps=-1e-8), dict(ema_k=-1), dict(ema_k=1.5)])
def test_rejects_bad_hyper_parameters(bad):
    with pytest.raises(ValueError):
        Lilith([torch.nn.Parameter(torch.zeros(2))], **{"lr": 0.1, **bad})
