"""ReMask's shared-prompt path (`fused: shared_prompt`): one forward over rows
`[x[:P] | x[P:L] | m[P:L]]` gives the fused path's loss and every parameter gradient, for
ReMask and ReMask-CoT, on collated batches with ragged prompts, right padding, a row with
nothing masked and a multi-turn chat row; and it falls back to the fused path where it must."""

from __future__ import annotations

import logging

import pytest
import torch
from pydantic import ValidationError
from transformers import AttentionInterface, LlamaForCausalLM
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

import lmforge.objectives as objectives
from lmforge.data.collate import PadCollator
from lmforge.data.conversation import ROLE_IDS
from lmforge.objectives import build_objective, head, shared_prefix, shared_prompt_fallback
from lmforge.objectives.forward import NoiseSeeds
from lmforge.objectives.remask import RegularizationNoise, ReMaskConfig, ReMaskCoTConfig
from lmforge.objectives.shared_prefix import pack_shared_prompt
from tests.train.conftest import PAD, VOCAB, tiny_model

MASK_ID = VOCAB - 1
PROMPT, ASSISTANT, RATIONALE, ANSWER = (ROLE_IDS[r] for r in ("prompt", "assistant", "rationale", "answer"))
SHARED = "shared_prompt"


def _row(example_id: int, roles: list[int], seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, MASK_ID, (len(roles),), generator=generator).tolist()
    labels = [t if r != PROMPT else -100 for t, r in zip(ids, roles)]
    return {"input_ids": ids, "labels": labels, "token_roles": roles, "example_id": example_id}


def _turn_starts(roles: list[int]) -> list[int]:
    """Start index of each response turn."""
    return [i for i, r in enumerate(roles) if r != PROMPT and (i == 0 or roles[i - 1] == PROMPT)]


COT_ROW = [PROMPT] * 3 + [RATIONALE] * 10 + [ANSWER] * 2
CHAT_ROW = [PROMPT] * 9 + [ASSISTANT] * 12
MULTI_TURN = [PROMPT] * 4 + [ASSISTANT] * 5 + [PROMPT] * 4 + [ASSISTANT] * 6 + [PROMPT] * 3 + [ASSISTANT] * 5
UNMASKED_ROW = [PROMPT] * 6 + [RATIONALE] * 5 + [ANSWER] * 2
SHORT_ROW = [PROMPT] * 2 + [ASSISTANT] * 4


def collated_batch(cot_rules: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    """As the training collator builds it (PadCollator, then the noise), with two rows
    adjusted: the multi-turn row keeps its first two assistant turns unmasked (its first
    masked token lies in the third turn, after labelled turns), and one row has nothing masked."""
    roles = [COT_ROW, CHAT_ROW, MULTI_TURN, UNMASKED_ROW, SHORT_ROW]
    batch = PadCollator(PAD)([_row(i, r, seed * 10 + i) for i, r in enumerate(roles)])
    noise = RegularizationNoise(MASK_ID, p_in=0.4, p_label=0.3, p_answer_only=0.0, cot_rules=cot_rules, seed=seed)
    batch = noise(batch)
    masked = batch["masked_input_ids"]
    third_turn = _turn_starts(MULTI_TURN)[2]
    masked[2, :third_turn] = batch["input_ids"][2, :third_turn]
    masked[2, third_turn + 1] = MASK_ID
    masked[3] = batch["input_ids"][3]
    masked[4, 2] = MASK_ID  # the first response token: P = prompt length
    return batch


def _prefix_lengths(batch) -> list[int]:
    lengths = batch["attention_mask"].sum(1)
    packed = pack_shared_prompt(batch["input_ids"], batch["masked_input_ids"], batch["labels"], lengths)
    return packed.prefix_lengths.tolist()


def run(model, name: str, fused, batch, neftune_alpha=None, num_items=None):
    model.zero_grad(set_to_none=True)
    loss, metrics = build_objective(name, {"weight": 0.5, "fused": fused}, neftune_alpha)(model, batch, num_items)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), metrics, grads


def assert_same(a, b, tolerance=1e-5):
    (loss_a, metrics_a, grads_a), (loss_b, metrics_b, grads_b) = a, b
    torch.testing.assert_close(loss_a, loss_b, atol=tolerance, rtol=tolerance)
    for key in ("ce_full", "ce_masked", "kl", "tokens"):
        torch.testing.assert_close(metrics_a[key], metrics_b[key], atol=tolerance, rtol=tolerance, msg=key)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], atol=tolerance, rtol=tolerance, msg=name)


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(shared_prefix, "_PROBE_VERDICTS", {})
    monkeypatch.setattr(shared_prefix, "_FALLBACK_LOGGED", set())
    monkeypatch.setattr(objectives, "_SHARED_PROMPT_FALLBACK_LOGGED", set())
    packs = []
    original = shared_prefix.pack_shared_prompt

    def recording(*args, **kwargs):
        packed = original(*args, **kwargs)
        packs.append(packed)
        return packed

    monkeypatch.setattr(shared_prefix, "pack_shared_prompt", recording)
    return packs


def llama(attention: str = "sdpa", seed: int = 3) -> LlamaForCausalLM:
    model = tiny_model(seed=seed)
    model.config._attn_implementation = attention
    return model.float().train()


# --------------------------------------------------------------------------- equality


def test_the_batch_has_the_cases_it_claims():
    for cot_rules in (True, False):
        batch = collated_batch(cot_rules)
        lengths = batch["attention_mask"].sum(1).tolist()
        prefix = _prefix_lengths(batch)
        assert len(set(prefix)) == len(prefix)  # different shared lengths
        assert prefix[3] == lengths[3]  # nothing masked
        assert prefix[4] == 2  # the first response token masked
        third_turn = _turn_starts(MULTI_TURN)[2]
        assert third_turn <= prefix[2] <= third_turn + 1  # after two labelled assistant turns
        assert batch["labels"][2, 1:third_turn].ne(-100).sum() >= 10  # labels inside the shared part
        assert min(lengths) < max(lengths)  # right padding


@pytest.mark.parametrize("name", ["remask", "remask_cot"])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("head_path", [True, False])
def test_shared_prompt_equals_fused(name, attention, head_path, fresh, monkeypatch):
    if not head_path:  # the logits path (models the label-position head does not cover)
        monkeypatch.setattr(head, "label_head_supported", lambda model: False)
    batch = collated_batch(cot_rules=name == "remask_cot", seed=1)
    num_items = batch["labels"][:, 1:].ne(-100).sum() + 7  # as in gradient accumulation
    fused = run(llama(attention), name, True, batch, num_items=num_items)
    shared = run(llama(attention), name, SHARED, batch, num_items=num_items)
    assert len(fresh) == 1 and fresh[0] is not None  # the shared path ran
    assert_same(shared, fused)
    # and it saved tokens: one row of 2L - P per example instead of two of the padded width
    packed_width = fresh[0].rows.input_ids.shape[1]
    assert packed_width < 2 * batch["input_ids"].shape[1]


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_shared_prompt_equals_fused_on_other_draws(seed, fresh):
    batch = collated_batch(cot_rules=True, seed=seed)
    assert_same(run(llama(), "remask_cot", SHARED, batch), run(llama(), "remask_cot", True, batch))
    assert fresh and fresh[-1] is not None


@pytest.mark.parametrize("name", ["remask", "remask_cot"])
def test_shared_prompt_under_bf16_autocast_matches_fused(name, fresh):
    """train.precision: bf16 runs the forward under autocast with fp32 weights: the shared
    rows' fp32 mask and positions still give the stacked forward's loss and gradients, to
    bf16's rounding (the two paths add in different orders)."""
    batch = collated_batch(cot_rules=name == "remask_cot", seed=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused = run(llama(), name, True, batch)
        shared = run(llama(), name, SHARED, batch)
    assert len(fresh) == 1 and fresh[0] is not None  # the shared path ran, not a fallback
    (loss_a, metrics_a, grads_a), (loss_b, metrics_b, grads_b) = shared, fused
    torch.testing.assert_close(loss_a, loss_b, atol=2e-2, rtol=2e-2)
    for key in ("ce_full", "ce_masked"):
        torch.testing.assert_close(metrics_a[key], metrics_b[key], atol=2e-2, rtol=2e-2, msg=key)
    for key in grads_b:
        scale = grads_b[key].abs().max().clamp_min(1e-3)
        assert (grads_a[key] - grads_b[key]).abs().max() <= 0.05 * scale, key


def test_layout_positions_and_predictors():
    """x = 5 6 7 8 9, m = 5 6 M 8 M: P = 2, row `5 6 | 7 8 9 | M 8 M`, positions 0..4, 2..4.
    Labels at 1..4 are predicted from 0..3: the clean pass at 0 1 2 3, the masked pass at
    0 1 (shared, P - 1 = 1 included) then 5 6 (its own copy)."""
    x = torch.tensor([[5, 6, 7, 8, 9, PAD], [5, 6, 7, PAD, PAD, PAD]])
    m = torch.tensor([[5, 6, MASK_ID, 8, MASK_ID, PAD], [5, 6, 7, PAD, PAD, PAD]])
    labels = torch.tensor([[-100, 6, 7, 8, 9, -100], [-100, -100, 7, -100, -100, -100]])
    packed = pack_shared_prompt(x, m, labels, torch.tensor([5, 3]))
    rows = packed.rows
    width = rows.input_ids.shape[1]
    assert width == 8
    assert rows.input_ids[0].tolist() == [5, 6, 7, 8, 9, MASK_ID, 8, MASK_ID]
    assert rows.position_ids[0].tolist() == [0, 1, 2, 3, 4, 2, 3, 4]
    assert rows.input_ids[1, :3].tolist() == [5, 6, 7]  # nothing masked: the row alone
    assert packed.prefix_lengths.tolist() == [2, 3]
    assert packed.full_index.tolist() == [0, 1, 2, 3, width + 1]
    assert packed.masked_index.tolist() == [0, 1, 5, 6, width + 1]
    assert packed.targets.tolist() == [6, 7, 8, 9, 7]
    allowed = rows.attention_mask[0, 0].eq(0)
    assert allowed[5].nonzero().squeeze(1).tolist() == [0, 1, 5]  # the prefix and itself, not the clean copy
    assert allowed[7].nonzero().squeeze(1).tolist() == [0, 1, 5, 6, 7]
    assert allowed[4].nonzero().squeeze(1).tolist() == [0, 1, 2, 3, 4]
    # a row masked at its first token has no shared position: no packing
    assert pack_shared_prompt(x, torch.full_like(x, MASK_ID), labels, torch.tensor([5, 3])) is None


# --------------------------------------------------------------------------- fallbacks


def test_packed_rows_fall_back(fresh):
    batch = collated_batch(cot_rules=True)
    width = batch["input_ids"].shape[1]
    positions = torch.arange(width).repeat(batch["input_ids"].shape[0], 1)
    positions[0, 8:] = torch.arange(width - 8)  # a second segment starts at 8
    packed = {**batch, "position_ids": positions}
    model = llama()
    assert shared_prompt_fallback(model, packed, None) == "packed or left-padded rows"
    assert shared_prompt_fallback(model, {**batch, "token_example_ids": batch["token_roles"]}, None)
    assert shared_prompt_fallback(model, {**batch, "position_ids": torch.arange(width).repeat(5, 1)}, None) is None
    assert_same(run(llama(), "remask_cot", SHARED, packed), run(llama(), "remask_cot", True, packed), 0)
    assert not fresh


def test_neftune_falls_back_to_two_independent_draws(fresh):
    batch = NoiseSeeds(seed=5)(collated_batch(cot_rules=True))
    assert shared_prompt_fallback(llama(), batch, 5.0) == "NEFTune noise"
    shared = run(llama(), "remask_cot", SHARED, batch, neftune_alpha=5.0)
    assert_same(shared, run(llama(), "remask_cot", True, batch, neftune_alpha=5.0), 0)
    assert not fresh
    # and the noise does matter here: without it the loss differs
    assert not torch.allclose(shared[0], run(llama(), "remask_cot", True, batch)[0])


def test_a_row_masked_at_its_first_token_falls_back(fresh):
    batch = collated_batch(cot_rules=False)
    batch["masked_input_ids"][1, 0] = MASK_ID
    assert_same(run(llama(), "remask", SHARED, batch), run(llama(), "remask", True, batch), 0)
    assert fresh == [None]


def test_model_ignoring_the_4d_mask_falls_back(fresh, caplog):
    """A model that builds its own causal mask fails the probe: the fused path runs, logged once."""

    class OwnMaskLlama(LlamaForCausalLM):
        def forward(self, input_ids=None, attention_mask=None, **kwargs):
            if attention_mask is not None and attention_mask.dim() == 4:
                attention_mask = None
            return super().forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    reference = llama()
    model = OwnMaskLlama(reference.config).train()
    model.load_state_dict(reference.state_dict())
    batch = collated_batch(cot_rules=True)
    with caplog.at_level(logging.INFO):
        shared = run(model, "remask_cot", SHARED, batch)
        run(model, "remask_cot", SHARED, batch)
    assert not fresh
    assert "prefix sharing unavailable" not in caplog.text  # the preference objectives' wording
    assert caplog.text.count("ReMask shared prompt: fused passes instead") == 1
    assert "OwnMaskLlama with attention 'sdpa' ignores the shared-prefix mask" in caplog.text
    assert_same(shared, run(reference, "remask_cot", True, batch))


def test_unlisted_attention_falls_back_without_a_probe(fresh, monkeypatch):
    AttentionInterface.register("sdpa_unlisted", sdpa_attention_forward)
    AttentionMaskInterface.register("sdpa_unlisted", sdpa_mask)
    monkeypatch.setattr(shared_prefix, "probe_shared_prefix", lambda m: pytest.fail("probed"))
    batch = collated_batch(cot_rules=False)
    model = llama("sdpa_unlisted")
    assert "attention" in shared_prompt_fallback(model, batch, None)
    assert_same(run(model, "remask", SHARED, batch), run(llama(), "remask", True, batch))
    assert not fresh


def test_evaluation_batches_get_plain_ce(fresh):
    batch = collated_batch(cot_rules=True)
    clean = {k: v for k, v in batch.items() if k != "masked_input_ids"}
    model = llama().eval()
    loss, _ = build_objective("remask_cot", {"weight": 0.1, "fused": SHARED})(model, clean, None)
    torch.testing.assert_close(loss, build_objective("ce", {})(model, clean, None)[0])
    assert not fresh


def test_config_accepts_the_mode():
    assert ReMaskConfig(name="remask", fused=SHARED).fused == SHARED
    assert ReMaskCoTConfig(name="remask_cot", fused=False).fused is False
    assert ReMaskCoTConfig(name="remask_cot").fused == SHARED  # the default: faster in bench/remask_step.py
    assert ReMaskConfig(name="remask").fused == SHARED
    with pytest.raises(ValidationError):
        ReMaskConfig(name="remask", fused="shared")
