"""Generation backends share one interface; vLLM runs only where it can."""

from __future__ import annotations

import pytest

from lmforge.bootstrap import backends
from lmforge.bootstrap.backends import Sampling, TransformersBackend, choose_backend, vllm_available
from lmforge.errors import LmforgeError
from tests.train.conftest import tiny_model


class CharTokenizer:
    """Just enough of a tokenizer for `generate`: one id per character."""

    pad_token_id, bos_token, unk_token_id = 0, None, None
    padding_side = "right"

    def __call__(self, texts, return_tensors, padding, add_special_tokens):
        import torch
        from transformers import BatchEncoding

        longest = max(len(t) for t in texts)
        ids = [[0] * (longest - len(t)) + [3 + ord(c) % 40 for c in t] for t in texts]  # left padded
        mask = [[0] * (longest - len(t)) + [1] * len(t) for t in texts]
        return BatchEncoding({"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)})

    def decode(self, ids, skip_special_tokens):
        return " ".join(map(str, ids))


def test_transformers_backend_n_samples_per_prompt_seeded():
    backend = TransformersBackend(tiny_model(), CharTokenizer(), stop_ids=[2], add_bos=False, batch_size=4)
    sampling = Sampling(samples=3, temperature=1.0, top_p=1.0, max_new_tokens=5)
    first = backend.sample(["abc", "de"], sampling, seed=7)
    assert [len(samples) for samples in first] == [3, 3]
    assert backend.sample(["abc", "de"], sampling, seed=7) == first  # seeded
    assert backend.sample(["abc", "de"], sampling, seed=8) != first


@pytest.mark.parametrize("vllm_here", [True, False], ids=["vllm-runs-here", "no-vllm"])
def test_choose_backend(monkeypatch, vllm_here):
    """Each machine's answer, fixed: with vLLM usable 'auto' picks it; without, 'auto' falls
    back to transformers and an explicit 'vllm' is a one-line error; 'transformers' always
    stays itself."""
    monkeypatch.setattr(backends, "vllm_available", lambda: vllm_here)
    assert choose_backend("transformers") == "transformers"
    if vllm_here:
        assert choose_backend("auto") == "vllm"
        assert choose_backend("vllm") == "vllm"
    else:
        assert choose_backend("auto") == "transformers"
        with pytest.raises(LmforgeError) as error:
            choose_backend("vllm")
        assert str(error.value) == "bootstrap.backend: 'vllm' needs the vllm package and a CUDA GPU; use 'transformers'"


@pytest.mark.parametrize("installed, cuda, usable", [(True, True, True), (True, False, False), (False, True, False)])
def test_vllm_available_needs_the_package_and_a_cuda_gpu(monkeypatch, installed, cuda, usable):
    real = backends.importlib.util.find_spec
    monkeypatch.setattr(
        backends.importlib.util,
        "find_spec",
        lambda name, *a: (object() if installed else None) if name == "vllm" else real(name, *a),
    )
    monkeypatch.setattr(backends.torch.cuda, "is_available", lambda: cuda)
    assert vllm_available() is usable


@pytest.mark.gpu
@pytest.mark.skipif(not vllm_available(), reason="vLLM backend needs the vllm package and a CUDA GPU")
def test_vllm_backend_same_interface(tmp_path):
    from lmforge.bootstrap.backends import VLLMBackend

    model = tiny_model()
    model.save_pretrained(tmp_path)
    backend = VLLMBackend(str(tmp_path), stop_strings=[])
    outputs = backend.sample(["hello"], Sampling(samples=2, max_new_tokens=4), seed=0)
    assert len(outputs) == 1 and len(outputs[0]) == 2
