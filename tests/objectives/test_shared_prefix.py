"""Prefix sharing: one row per prompt gives the log-probs and parameter gradients of one row
per response, on a tiny random Llama, for SDPA and eager attention."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from transformers import AttentionInterface, LlamaConfig, LlamaForCausalLM
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from lmforge.objectives import shared_prefix
from lmforge.objectives.rank import sequence_logps
from lmforge.objectives.shared_prefix import (
    IGNORE_INDEX,
    ResponseGroup,
    pack_shared_prefix,
    pack_unshared,
    response_logps,
    shared_sequence_logps,
    supports_shared_prefix,
)

VOCAB = 128


def tiny_llama(attention: str) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        attn_implementation=attention,
    )
    return LlamaForCausalLM(config).float().train()


def make_groups(responses_per_group: int, seed: int, masked_labels: bool = False) -> list[ResponseGroup]:
    """Three groups with ragged prompt lengths and ragged response lengths."""
    generator = torch.Generator().manual_seed(seed)

    def tokens(count: int) -> list[int]:
        return torch.randint(0, VOCAB, (count,), generator=generator).tolist()

    groups = []
    for prompt_length in (5, 9, 3):
        lengths = torch.randint(1, 8, (responses_per_group,), generator=generator).tolist()
        responses = [tokens(n) for n in lengths]
        labels = None
        if masked_labels:  # mask the first token of some responses and a middle one of others
            labels = [
                [IGNORE_INDEX if (j == 0 and i % 2 == 0) or (j == 2 and i % 3 == 0) else t for j, t in enumerate(r)]
                for i, r in enumerate(responses)
            ]
        groups.append(ResponseGroup(tokens(prompt_length), responses, labels))
    return groups


def shared_logps(model, groups):
    batch = pack_shared_prefix(groups)
    logits = model(**batch.model_inputs(), use_cache=False).logits
    return shared_sequence_logps(logits, batch)


def unshared_logps(model, groups):
    rows = pack_unshared(groups)
    labels = rows.pop("labels")
    return sequence_logps(model(**rows, use_cache=False).logits, labels)


def preference_loss(sums: torch.Tensor, groups: list[ResponseGroup]) -> torch.Tensor:
    """DPO-like: in each group response 0 is chosen against every other one, plus all log-probs."""
    loss, offset = sums.sum(), 0
    for group in groups:
        chosen = sums[offset]
        rejected = sums[offset + 1 : offset + len(group.responses)]
        loss = loss - F.logsigmoid(0.1 * (chosen - rejected)).sum()
        offset += len(group.responses)
    return loss


def gradients(model, compute_logps, groups) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    sums, counts = compute_logps(model, groups)
    preference_loss(sums, groups).backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}
    return sums.detach(), counts, grads


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("responses_per_group", [2, 8])
@pytest.mark.parametrize("masked_labels", [False, True])
def test_shared_rows_match_unshared_logps_and_gradients(attention, responses_per_group, masked_labels):
    model = tiny_llama(attention)
    groups = make_groups(responses_per_group, seed=responses_per_group, masked_labels=masked_labels)
    shared_sums, shared_counts, shared_grads = gradients(model, shared_logps, groups)
    plain_sums, plain_counts, plain_grads = gradients(model, unshared_logps, groups)
    assert shared_sums.shape == (3 * responses_per_group,)
    assert torch.equal(shared_counts, plain_counts)
    torch.testing.assert_close(shared_sums, plain_sums, rtol=1e-5, atol=1e-5)
    assert shared_grads.keys() == plain_grads.keys() and len(shared_grads) == len(list(model.parameters()))
    for name in plain_grads:
        torch.testing.assert_close(shared_grads[name], plain_grads[name], rtol=1e-5, atol=1e-5, msg=name)


def test_layout_positions_predictors_and_mask():
    group = ResponseGroup(prompt=[10, 11, 12], responses=[[20, 21], [30, 31, 32]])
    batch = pack_shared_prefix([group, ResponseGroup([40], [[50]])], pad_token_id=0)
    assert batch.input_ids[0].tolist() == [10, 11, 12, 20, 21, 30, 31, 32]
    assert batch.position_ids[0].tolist() == [0, 1, 2, 3, 4, 3, 4, 5]
    assert batch.labels[0].tolist() == [IGNORE_INDEX] * 3 + [20, 21, 30, 31, 32]
    # first token of each response predicted from the last prompt token (position 2)
    assert batch.predictor_positions[0].tolist() == [-1, -1, -1, 2, 3, 2, 5, 6]
    assert batch.response_index[0].tolist() == [-1, -1, -1, 0, 0, 1, 1, 1]
    assert batch.spans.tolist() == [[0, 3, 2], [0, 5, 3], [1, 1, 1]]
    attends = batch.attention_mask[0, 0] == 0
    assert attends[5].tolist() == [True, True, True, False, False, True, False, False]  # 30: prompt + itself
    assert attends[7].tolist() == [True, True, True, False, False, True, True, True]
    second = batch.attention_mask[1, 0] == 0  # padded row: padding sees only itself
    assert (
        second[:2, :2].tolist() == [[True, False], [True, True]]
        and second[5].tolist() == [False] * 5 + [True] + [False] * 2
    )
    assert batch.attention_mask.dtype == torch.float32
    assert batch.attention_mask.min() == torch.finfo(torch.float32).min


@pytest.fixture
def fresh_verdicts(monkeypatch):
    monkeypatch.setattr(shared_prefix, "_PROBE_VERDICTS", {})
    monkeypatch.setattr(shared_prefix, "_FALLBACK_LOGGED", set())


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_whitelisted_implementations_pass_the_probe(attention, fresh_verdicts):
    assert supports_shared_prefix(tiny_llama(attention))


def test_unlisted_attention_falls_back_with_equal_logps(fresh_verdicts, caplog, monkeypatch):
    """A real attention implementation outside the whitelist (registered with transformers under
    its own name; it computes with SDPA so the test runs on CPU, as flash-attention would not)
    falls back to one row per response without probing, logs it, and gives the same log-probs."""
    AttentionInterface.register("sdpa_unlisted", sdpa_attention_forward)
    AttentionMaskInterface.register("sdpa_unlisted", sdpa_mask)
    reference = tiny_llama("sdpa").eval()
    model = tiny_llama("sdpa_unlisted").eval()
    assert model.config._attn_implementation == "sdpa_unlisted"
    groups = make_groups(4, seed=1)
    probed = []
    monkeypatch.setattr(shared_prefix, "probe_shared_prefix", lambda m: probed.append(m) or True)
    with caplog.at_level(logging.WARNING, logger=shared_prefix.__name__):
        sums, counts = response_logps(model, groups)
    assert not probed  # not whitelisted: decided without a probe
    assert "prefix sharing unavailable" in caplog.text and "sdpa_unlisted" in caplog.text
    expected, expected_counts = unshared_logps(reference, groups)
    torch.testing.assert_close(sums, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(counts, expected_counts)


def test_model_ignoring_the_4d_mask_fails_the_probe(fresh_verdicts, caplog):
    """A model class that builds its own causal mask from the sequence (ignoring ours) is
    caught by the probe, and the fallback still gives the unshared log-probs."""

    class OwnMaskLlama(LlamaForCausalLM):
        def forward(self, input_ids=None, attention_mask=None, **kwargs):
            if attention_mask is not None and attention_mask.dim() == 4:
                attention_mask = None  # plain causal over the whole row: responses see each other
            return super().forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    reference = tiny_llama("sdpa").eval()
    model = OwnMaskLlama(reference.config).eval()
    model.load_state_dict(reference.state_dict())
    groups = make_groups(3, seed=2)
    assert not supports_shared_prefix(model)
    with caplog.at_level(logging.WARNING, logger=shared_prefix.__name__):
        sums, _ = response_logps(model, groups)
    assert "OwnMaskLlama" in caplog.text
    torch.testing.assert_close(sums, unshared_logps(reference, groups)[0], rtol=1e-5, atol=1e-5)
    # and the shared path would indeed be wrong for it
    assert not torch.allclose(shared_logps(model, groups)[0], sums, atol=1e-3)


def test_probe_restores_train_flags(fresh_verdicts):
    model = tiny_llama("eager")
    model.model.layers[0].eval()
    before = [m.training for m in model.modules()]
    assert supports_shared_prefix(model)
    assert [m.training for m in model.modules()] == before


def test_response_logps_shared_path_matches(fresh_verdicts):
    model = tiny_llama("sdpa").eval()
    groups = make_groups(2, seed=3)
    torch.testing.assert_close(response_logps(model, groups)[0], unshared_logps(model, groups)[0], rtol=1e-5, atol=1e-5)


def test_empty_prompt_is_rejected():
    with pytest.raises(ValueError, match="non-empty prompt"):
        pack_shared_prefix([ResponseGroup([], [[1, 2]])])
