"""Batched, KV-cached greedy or sampled generation with left padding."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from transformers import StoppingCriteria, StoppingCriteriaList


def load_model_dir(model_dir: str | Path):
    """A model directory lmforge saved, a finished run directory, a checkpoint-N directory
    or any HF causal-LM dir: model, tokenizer, meta (see `lmforge.eval.checkpoint`)."""
    from lmforge.eval.checkpoint import load_checkpoint

    loaded = load_checkpoint(model_dir)
    return loaded.model, loaded.tokenizer, loaded.meta


@contextlib.contextmanager
def progress_bar(label: str, total: int, show: bool):
    """A rich progress bar (hidden unless `show`); yields `advance(n)`."""
    progress = Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), disable=not show, transient=True
    )
    with progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)


class StopOnStrings(StoppingCriteria):
    """Stop a row once its generated text contains any stop string (checked on the decoded
    tail, so a string split over several tokens is caught too)."""

    def __init__(self, tokenizer, stop_strings: list[str], prompt_length: int):
        self.tokenizer = tokenizer
        self.stop_strings = [s for s in stop_strings if s]
        self.prompt_length = prompt_length
        self.tail = max((len(s) for s in self.stop_strings), default=1) + 8

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        done = []
        for row in input_ids[:, self.prompt_length :].tolist():
            text = self.tokenizer.decode(row[-self.tail :], skip_special_tokens=False)
            done.append(any(s in text for s in self.stop_strings))
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def cut_at_stop_strings(text: str, stop_strings: list[str]) -> str:
    """Text before the first occurrence of each stop string, applied in turn (as the harness does).

    >>> cut_at_stop_strings("7\\n\\nQuestion: x", ["Question:", "\\n\\n"])
    '7'
    """
    for stop in stop_strings:
        if stop:
            text = text.split(stop)[0]
    return text


def stop_token_ids(tokenizer, stop_strings: list[str]) -> list[int]:
    ids = []
    for text in stop_strings:
        token_id = tokenizer.convert_tokens_to_ids(text)
        if token_id is not None and token_id != tokenizer.unk_token_id:
            ids.append(token_id)
    return ids


def shared_prefill(model, encoded: dict[str, torch.Tensor], repeats: int) -> dict:
    """The KV cache of every prompt but its last token, computed once and copied `repeats`
    times (prompt-major), for `generate` to continue from (it runs the last token itself).
    Left-padded rows get the position ids `generate` would give them."""
    ids, mask = encoded["input_ids"], encoded["attention_mask"]
    if ids.shape[1] < 2:
        return {}
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = model(
        input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1], use_cache=True
    ).cache
    cache.batch_repeat_interleave(repeats)
    return {"cache": cache}


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: list[str],
    stop_ids: list[int],
    max_new_tokens: int = 128,
    batch_size: int = 32,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    add_bos: bool = True,
    show_progress: bool = False,
    stop_strings: list[str] = (),
    skip_special_tokens: bool = False,
    max_prompt_tokens: int | None = None,
    repeats: int = 1,
) -> list[str]:
    """Continuations of `prompts`, cut before the first stop token and then before the first
    of each stop string; decoded with special tokens unless `skip_special_tokens` (the
    harness skips them). A prompt longer than `max_prompt_tokens` keeps its last tokens,
    as lm-evaluation-harness cuts contexts to the model's length less the generation limit.

    `repeats` > 1: that many continuations of each prompt (prompt-major), with the prompt's
    prefill computed once and its KV cache copied for every continuation (`batch_size`
    then counts continuations)."""
    was_training = model.training
    model.eval()
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    torch.manual_seed(seed)
    outputs: list[str] = []
    per_call = max(1, batch_size // repeats)
    try:
        # a model compiled for training (train.compile) generates eager: a KV cache growing a
        # token at a time would recompile it at every length
        with (
            torch.compiler.set_stance("force_eager"),
            progress_bar("generating", len(prompts) * repeats, show_progress) as advance,
        ):
            for start in range(0, len(prompts), per_call):
                chunk = prompts[start : start + per_call]
                if add_bos and tokenizer.bos_token:
                    chunk = [tokenizer.bos_token + p for p in chunk]
                encoded = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
                if max_prompt_tokens is not None and encoded["input_ids"].shape[1] > max_prompt_tokens:
                    # padding is on the left: the last columns hold every row's last tokens
                    encoded = {key: value[:, -max_prompt_tokens:] for key, value in encoded.items()}
                sampling = (
                    {"do_sample": True, "temperature": temperature, "top_p": top_p}
                    if do_sample
                    else {"do_sample": False}
                )
                width = encoded["input_ids"].shape[1]
                criteria = StoppingCriteriaList(
                    [StopOnStrings(tokenizer, list(stop_strings), width)] if stop_strings else []
                )
                prefilled = shared_prefill(model, encoded, repeats) if repeats > 1 else {}
                if repeats > 1:
                    encoded = {key: value.repeat_interleave(repeats, dim=0) for key, value in encoded.items()}
                generated = model.generate(
                    **encoded,
                    **prefilled,
                    max_new_tokens=max_new_tokens,
                    eos_token_id=stop_ids,
                    pad_token_id=tokenizer.pad_token_id,
                    stopping_criteria=criteria,
                    **sampling,
                )
                for row in generated[:, width:].tolist():
                    cut = next((i for i, t in enumerate(row) if t in stop_ids), len(row))
                    text = tokenizer.decode(row[:cut], skip_special_tokens=skip_special_tokens)
                    outputs.append(cut_at_stop_strings(text, list(stop_strings)))
                advance(len(chunk) * repeats)
    finally:
        tokenizer.padding_side = padding_side
        model.train(was_training)
    return outputs
