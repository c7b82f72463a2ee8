"""The optimizer registry: each builder takes exactly its own optimizer's keywords."""

from __future__ import annotations

import inspect

import pytest
import torch
from pytorch_optimizer import Adalite

from lmforge.optim.lilith import Lilith
from lmforge.optim.optimizers import OPTIMIZERS, build_optimizer, parameter_groups

# The keyword contract the config schema mirrors (one model per optimizer name).
KEYWORDS = {
    "adamw": {"lr", "betas", "eps", "weight_decay"},
    "adalite": {"lr", "betas", "weight_decay", "g_norm_min", "ratio_min", "tau", "eps1", "eps2"},
    "lilith": {
        "lr",
        "eps",
        "beta1_m",
        "beta2_m",
        "beta_v",
        "weight_decay",
        "g_norm_min",
        "ratio_min",
        "acceleration",
        "ema_k",
        "ema_beta",
    },
}


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))


def _groups(model: torch.nn.Module, weight_decay: float = 0.1):
    decay = {name for name, p in model.named_parameters() if p.ndim == 2}
    return parameter_groups(list(model.named_parameters()), decay, weight_decay)


def test_registry_keywords():
    assert set(OPTIMIZERS) == set(KEYWORDS)
    for name, builder in OPTIMIZERS.items():
        params = list(inspect.signature(builder).parameters)
        assert params[0] == "groups" and set(params[1:]) == KEYWORDS[name], name


@pytest.mark.parametrize(("name", "cls"), [("adamw", torch.optim.AdamW), ("adalite", Adalite), ("lilith", Lilith)])
def test_builds_with_only_lr(name, cls):
    optimizer = build_optimizer(name, _groups(_model()), lr=1e-3)
    assert isinstance(optimizer, cls)
    # the groups' own weight decay wins over the builder's default
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]


def test_hyper_parameters_reach_the_optimizer():
    adamw = build_optimizer("adamw", _groups(_model()), lr=2e-3, betas=[0.8, 0.95], eps=1e-6, weight_decay=0.0)
    assert (adamw.defaults["lr"], adamw.defaults["betas"], adamw.defaults["eps"]) == (2e-3, (0.8, 0.95), 1e-6)
    adalite = build_optimizer(
        "adalite", _groups(_model()), lr=1e-3, tau=2.0, eps1=1e-5, eps2=1e-9, g_norm_min=1e-3, ratio_min=1e-3
    )
    assert {k: adalite.defaults[k] for k in ("tau", "eps1", "eps2", "g_norm_min", "ratio_min")} == dict(
        tau=2.0, eps1=1e-5, eps2=1e-9, g_norm_min=1e-3, ratio_min=1e-3
    )
    lilith = build_optimizer("lilith", _groups(_model()), lr=1e-3, acceleration=0.5, ema_k=4, ema_beta=0.9, beta_v=0.99)
    assert {k: lilith.defaults[k] for k in ("acceleration", "ema_k", "ema_beta", "beta_v")} == dict(
        acceleration=0.5, ema_k=4, ema_beta=0.9, beta_v=0.99
    )


def test_unknown_name_is_a_key_error():
    with pytest.raises(KeyError):
        build_optimizer("sgd", _groups(_model()), lr=1e-3)


@pytest.mark.parametrize(("name", "foreign"), [("adalite", "eps"), ("lilith", "betas"), ("adamw", "tau")])
def test_another_optimizers_keyword_is_a_type_error(name, foreign):
    with pytest.raises(TypeError):
        build_optimizer(name, _groups(_model()), lr=1e-3, **{foreign: 0.9})


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_zero_gradient_rows_stay_put(name):
    """What frozen embedding rows rely on (models/freezing.py): in the no-decay group, rows
    whose gradient is always zero never move."""
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(5, 3))
    before = weight.detach().clone()
    optimizer = build_optimizer(name, [{"params": [weight], "weight_decay": 0.0}], lr=1e-2)
    for _ in range(3):
        grad = torch.randn(5, 3)
        grad[:2] = 0
        weight.grad = grad
        optimizer.step()
    assert torch.equal(weight[:2], before[:2])
    assert not torch.equal(weight[2:], before[2:])


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4
    )
    return LlamaForCausalLM(config)


def _train(optimizer: torch.optim.Optimizer, model: torch.nn.Module, steps: int = 20) -> list[float]:
    generator = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        ids = torch.randint(0, 64, (4, 16), generator=generator)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def test_adamw_takes_the_fused_kernel_and_updates_as_the_plain_loop():
    """lmforge's AdamW is torch's fused kernel; 20 steps on a Llama land where the plain
    single-tensor loop lands (to float rounding), with the same losses."""
    fused_model, plain_model = _tiny_llama(), _tiny_llama()
    fused = build_optimizer("adamw", _groups(fused_model), lr=1e-2, weight_decay=0.1)
    plain = torch.optim.AdamW(_groups(plain_model), lr=1e-2, weight_decay=0.1, foreach=False)
    assert fused.defaults["fused"] is True
    assert _train(fused, fused_model) == pytest.approx(_train(plain, plain_model), abs=1e-5)
    for (name, a), b in zip(fused_model.named_parameters(), plain_model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5, msg=name)


def test_adamw_takes_the_plain_loop_on_a_device_without_fused_kernels():
    model = _model().to("meta")  # a device type torch has no fused kernel for on every build
    optimizer = build_optimizer("adamw", _groups(model), lr=1e-3)
    assert not optimizer.defaults["fused"]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]
