"""Batched, KV-cached greedy or sampled generation with left padding."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from lmforge.errors import LmforgeError


def load_model_dir(model_dir: str | Path):
    """A model directory lmforge saved (or any HF causal-LM dir): model, tokenizer, meta."""
    from lmforge.models.loading import load_model, load_tokenizer
    from lmforge.train.pipeline import MODEL_META_FILE

    from lmforge.train import rundir

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise LmforgeError(f"{model_dir}: model directory does not exist")
    run = rundir.read_run(model_dir)
    if run is not None:  # a run directory: use its final model, only once the run finished
        if run.get("status") != "finished":
            raise LmforgeError(f"{model_dir}: the run is {run.get('status')}, it has no final model yet")
        model_dir = model_dir / rundir.MODEL_DIR
    tokenizer = load_tokenizer(str(model_dir), key=str(model_dir))
    model = load_model(str(model_dir))
    meta_path = model_dir / MODEL_META_FILE
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    return model, tokenizer, meta


def stop_token_ids(tokenizer, stop_strings: list[str]) -> list[int]:
    ids = []
    for text in stop_strings:
        token_id = tokenizer.convert_tokens_to_ids(text)
        if token_id is not None and token_id != tokenizer.unk_token_id:
            ids.append(token_id)
    return ids


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
) -> list[str]:
    """Continuations of `prompts`, decoded with special tokens, cut before the first stop token."""
    was_training = model.training
    model.eval()
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    torch.manual_seed(seed)
    outputs: list[str] = []
    progress = Progress(TextColumn("generating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        disable=not show_progress, transient=True)
    try:
        with progress:
            task = progress.add_task("generate", total=len(prompts))
            for start in range(0, len(prompts), batch_size):
                chunk = prompts[start: start + batch_size]
                if add_bos and tokenizer.bos_token:
                    chunk = [tokenizer.bos_token + p for p in chunk]
                encoded = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
                sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if do_sample else {"do_sample": False}
                generated = model.generate(
                    **encoded, max_new_tokens=max_new_tokens, eos_token_id=stop_ids,
                    pad_token_id=tokenizer.pad_token_id, **sampling,
                )
                for row in generated[:, encoded["input_ids"].shape[1]:].tolist():
                    cut = next((i for i, t in enumerate(row) if t in stop_ids), len(row))
                    outputs.append(tokenizer.decode(row[:cut], skip_special_tokens=False))
                progress.advance(task, len(chunk))
    finally:
        tokenizer.padding_side = padding_side
        model.train(was_training)
    return outputs
