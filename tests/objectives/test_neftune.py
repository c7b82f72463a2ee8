"""NEFTune: noise of magnitude alpha / sqrt(L * d) from each sequence's own length, uniform
on (-1, 1), in training only."""

from __future__ import annotations

import pytest
import torch

from lmforge.objectives import build_objective
from lmforge.objectives.forward import NoiseSeeds, forward_logits, neftune_noise, neftune_on, segment_lengths
from tests.train.conftest import tiny_model

ALPHA, HIDDEN = 10.0, 256


def test_segment_lengths_rows_and_packed_segments():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    assert segment_lengths(mask, None).tolist() == [[3, 3, 3, 3], [4, 4, 4, 4]]
    packed = torch.tensor([[0, 1, 2, 0], [0, 1, 0, 1]])  # row 0: segments of 3 and 1
    assert segment_lengths(mask, packed)[0, :3].tolist() == [3, 3, 3]
    assert segment_lengths(mask, packed)[1].tolist() == [2, 2, 2, 2]
    assert segment_lengths(torch.ones(1, 5, dtype=torch.long), torch.tensor([[0, 1, 0, 1, 2]])).tolist() == [
        [2, 2, 3, 3, 3]
    ]


@pytest.mark.parametrize("lengths", [[10, 40], [25, 64]])
def test_noise_magnitude_matches_alpha_over_sqrt_length_times_width(lengths):
    """E|U(-1, 1)| = 1/2, so the mean absolute noise of a row of length L is alpha / (2 sqrt(L d))."""
    torch.manual_seed(0)
    T = max(lengths)
    mask = torch.tensor([[1] * n + [0] * (T - n) for n in lengths])
    noise = neftune_noise(torch.zeros(len(lengths), T, HIDDEN), mask, None, ALPHA)
    for row, n in enumerate(lengths):
        measured = noise[row, :n].abs().mean().item()
        expected = ALPHA / (2 * (n * HIDDEN) ** 0.5)
        assert measured == pytest.approx(expected, rel=0.05)
        assert noise[row, n:].abs().sum() == 0  # padding gets none
        bound = ALPHA / (n * HIDDEN) ** 0.5
        assert noise[row, :n].max() <= bound and noise[row, :n].min() >= -bound
        assert (noise[row, :n] < 0).float().mean().item() == pytest.approx(0.5, abs=0.02)  # symmetric: not U(0, 1)


def test_packed_segments_get_their_own_scale():
    torch.manual_seed(0)
    mask = torch.ones(1, 80, dtype=torch.long)
    positions = torch.cat([torch.arange(16), torch.arange(64)]).unsqueeze(0)
    noise = neftune_noise(torch.zeros(1, 80, HIDDEN), mask, positions, ALPHA)
    assert noise[0, :16].abs().mean().item() == pytest.approx(ALPHA / (2 * (16 * HIDDEN) ** 0.5), rel=0.05)
    assert noise[0, 16:].abs().mean().item() == pytest.approx(ALPHA / (2 * (64 * HIDDEN) ** 0.5), rel=0.05)


def _greedy_scores(model, prompt: torch.Tensor) -> torch.Tensor:
    """The logits of each generated token under greedy decoding, stacked [steps, V]."""
    out = model.generate(
        prompt, max_new_tokens=4, do_sample=False, output_scores=True, return_dict_in_generate=True, pad_token_id=0
    )
    return torch.cat(out.scores)


def test_noise_only_in_training_mode_and_never_in_generate():
    """The same model in the same state: NEFTune noise changes its training forwards; the
    forwards of evaluation and of `generate` — before, during (the hook is live) and after
    training with NEFTune — see clean embeddings. The noise path is shown to reach
    `generate` when forced on, so the comparison can tell the difference."""
    model = tiny_model()
    batch = {"input_ids": torch.randint(3, 40, (2, 9)), "attention_mask": torch.ones(2, 9, dtype=torch.long)}
    batch["labels"] = batch["input_ids"].clone()
    prompt = batch["input_ids"][:1]
    model.eval()
    clean = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    clean_scores = _greedy_scores(model, prompt)
    with neftune_on(model, {"attention_mask": torch.ones_like(prompt)}, ALPHA, None):  # noise forced into generate
        assert not torch.allclose(_greedy_scores(model, prompt), clean_scores, atol=1e-4)
    torch.testing.assert_close(forward_logits(model, batch, neftune_alpha=ALPHA), clean)  # eval mode: none

    model.train()
    assert not torch.allclose(forward_logits(model, batch, neftune_alpha=ALPHA), clean, atol=1e-4)
    torch.testing.assert_close(forward_logits(model, batch), clean)  # no alpha: no noise
    loss, _ = build_objective("ce", {}, neftune_alpha=ALPHA)(model, batch, None)  # a NEFTune training step's forward
    loss.backward()
    assert torch.equal(_greedy_scores(model, prompt), clean_scores)  # training mode, after NEFTune forwards
    model.eval()
    assert torch.equal(_greedy_scores(model, prompt), clean_scores)
    torch.testing.assert_close(forward_logits(model, batch, neftune_alpha=ALPHA), clean)
    assert not model.get_input_embeddings()._forward_hooks


def test_objectives_pass_the_noise_through():
    model = tiny_model()
    model.train()
    batch = {"input_ids": torch.randint(3, 40, (2, 9)), "attention_mask": torch.ones(2, 9, dtype=torch.long)}
    batch["labels"] = batch["input_ids"].clone()
    plain, _ = build_objective("mixce", {"ratio": 0.75})(model, batch, None)
    noisy, _ = build_objective("mixce", {"ratio": 0.75}, neftune_alpha=50.0)(model, batch, None)
    assert not torch.allclose(plain, noisy)


def test_seeded_noise_is_the_same_whatever_batch_or_padding_an_example_lands_in():
    """Row seeds make an example's noise independent of its batch mates, of padding and so
    of how examples are spread over processes; padding gets none."""
    embeddings = torch.zeros(2, 12, HIDDEN)
    mask = torch.tensor([[1] * 5 + [0] * 7, [1] * 12])
    together = neftune_noise(embeddings, mask, None, ALPHA, row_seeds=torch.tensor([11, 22]))
    alone = neftune_noise(
        torch.zeros(1, 5, HIDDEN), torch.ones(1, 5, dtype=torch.long), None, ALPHA, row_seeds=torch.tensor([11])
    )
    torch.testing.assert_close(together[0, :5], alone[0])
    assert together[0, 5:].abs().sum() == 0
    other_seed = neftune_noise(embeddings, mask, None, ALPHA, row_seeds=torch.tensor([12, 22]))
    assert not torch.allclose(other_seed[0, :5], together[0, :5])
    torch.testing.assert_close(other_seed[1], together[1])


def test_noise_seeds_follow_example_and_epoch():
    seeds = NoiseSeeds(seed=1)
    first = seeds({"example_id": torch.tensor([4, 9])})["noise_seed"]
    assert torch.equal(seeds({"example_id": torch.tensor([9, 4])})["noise_seed"], first.flip(0))
    seeds.epoch = 1
    assert not torch.equal(seeds({"example_id": torch.tensor([4, 9])})["noise_seed"], first)
    assert "noise_seed" not in seeds({"input_ids": torch.zeros(1, 3)})  # no ids: global RNG


def test_noise_reaches_a_wrapped_model():
    """NEFTune hooks the embedding module of the unwrapped model, so a wrapper's own forward
    (DDP, FSDP, DeepSpeed) still runs; here a DataParallel-like wrapper with `.module`."""
    model = tiny_model()
    wrapper = torch.nn.DataParallel(model)  # CPU: a plain pass-through with `.module`
    wrapper.train()
    batch = {"input_ids": torch.randint(3, 40, (2, 9)), "attention_mask": torch.ones(2, 9, dtype=torch.long)}
    clean = forward_logits(wrapper, batch)
    assert not torch.allclose(forward_logits(wrapper, batch, neftune_alpha=ALPHA), clean, atol=1e-4)
    assert not model.get_input_embeddings()._forward_hooks  # the hook is gone after the forward
