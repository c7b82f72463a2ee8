"""Generation backends behind one interface: N samples per prompt, seeded.

- `TransformersBackend`: batched, KV-cached `generate` with left padding (CPU and GPU).
- `VLLMBackend`: vLLM, used when it is installed and a GPU is present (optional extra).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Protocol

import torch

from lmforge.errors import LmforgeError
from lmforge.eval.generate import generate


@dataclass(frozen=True)
class Sampling:
    samples: int = 8
    temperature: float = 0.5
    top_p: float = 0.8
    max_new_tokens: int = 512


class Backend(Protocol):
    def sample(self, prompts: list[str], sampling: Sampling, seed: int) -> list[list[str]]:
        """For each prompt, `sampling.samples` continuations (special tokens kept, cut at the stop)."""


class TransformersBackend:
    def __init__(
        self, model, tokenizer, stop_ids: list[int], add_bos: bool, batch_size: int = 64, share_prefill: bool = True
    ):
        self.model, self.tokenizer, self.stop_ids = model, tokenizer, stop_ids
        self.add_bos, self.batch_size, self.share_prefill = add_bos, batch_size, share_prefill

    def sample(self, prompts: list[str], sampling: Sampling, seed: int) -> list[list[str]]:
        # N samples per prompt in one batched generate call; with share_prefill each prompt's
        # prefill runs once and its KV cache is copied N times, else the prompt is repeated
        n = sampling.samples
        outputs = generate(
            self.model,
            self.tokenizer,
            prompts if self.share_prefill else [p for p in prompts for _ in range(n)],
            self.stop_ids,
            max_new_tokens=sampling.max_new_tokens,
            batch_size=self.batch_size,
            do_sample=sampling.temperature > 0,
            temperature=sampling.temperature or 1.0,
            top_p=sampling.top_p,
            seed=seed,
            add_bos=self.add_bos,
            repeats=n if self.share_prefill else 1,
        )
        return [outputs[i * n : (i + 1) * n] for i in range(len(prompts))]


class VLLMBackend:
    def __init__(self, model_dir: str, stop_strings: list[str]):
        from vllm import LLM

        self.llm = LLM(model=model_dir, seed=0)
        self.stop_strings = stop_strings

    def sample(self, prompts: list[str], sampling: Sampling, seed: int) -> list[list[str]]:
        from vllm import SamplingParams

        params = SamplingParams(
            n=sampling.samples,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_new_tokens,
            seed=seed,
            stop=self.stop_strings,
            skip_special_tokens=False,
        )
        return [[choice.text for choice in result.outputs] for result in self.llm.generate(prompts, params)]


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


def choose_backend(name: str) -> str:
    """'auto' means vLLM when it can run here, else transformers."""
    if name == "auto":
        return "vllm" if vllm_available() else "transformers"
    if name == "vllm" and not vllm_available():
        raise LmforgeError("bootstrap.backend: 'vllm' needs the vllm package and a CUDA GPU; use 'transformers'")
    return name
