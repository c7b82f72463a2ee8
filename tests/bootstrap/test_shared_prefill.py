"""Bootstrap sampling computes each question's prefill once and copies its KV cache for the
N samples: the same samples as repeating the prompt N times, greedy and sampled."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lmforge.bootstrap.backends import Sampling, TransformersBackend
from lmforge.eval import generate as generation


@pytest.fixture
def model_and_tokenizer(tokenizer):
    # `tokenizer` is a private copy: the session's tiny_tokenizer must not gain a pad token
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128
        )
    ).eval()
    return model, tokenizer


PROMPTS = ["Tom has 3 apples and buys 4 more.", "Ana has 12 pens.", "How many apples does Tom have in the end now?"]


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_shared_prefill_gives_the_repeated_prompts_samples(model_and_tokenizer, temperature, monkeypatch):
    model, tokenizer = model_and_tokenizer
    sampling = Sampling(samples=4, temperature=temperature, top_p=0.9, max_new_tokens=12)
    calls = []
    real = generation.shared_prefill
    monkeypatch.setattr(
        generation, "shared_prefill", lambda *a, **k: calls.append(a[1]["input_ids"].shape) or real(*a, **k)
    )
    shared = TransformersBackend(model, tokenizer, [tokenizer.eos_token_id], True, batch_size=8).sample(
        PROMPTS, sampling, seed=5
    )
    repeated = TransformersBackend(
        model, tokenizer, [tokenizer.eos_token_id], True, batch_size=8, share_prefill=False
    ).sample(PROMPTS, sampling, seed=5)
    assert shared == repeated and [len(s) for s in shared] == [4, 4, 4]
    # batch_size 8 counts continuations: two prompts (8 continuations) per call, prefill on 2 rows, then 1
    assert [shape[0] for shape in calls] == [2, 1]
    if temperature > 0:
        assert len({s for samples in shared for s in samples}) > 3  # sampling did draw different answers
