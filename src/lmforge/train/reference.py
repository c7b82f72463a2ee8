"""What preference objectives need from the starting model before the first step, computed
once and kept in the run directory:

- **reference log-probabilities** (DPO, IPO, SPIN): the summed log-probability of every
  candidate response under the frozen reference, in a no-grad pass over the training rows.
  The reference is the model the run starts from (SPIN: the previous iteration); with an
  adapter it is the base with the adapter disabled, so no second model is held in memory.
- **self-generated rejected responses** (SPIN): the starting model's own answer to every
  training prompt.

Both are cached under RUN_DIR/reference/ keyed by a hash of the starting weights and of the
training rows (and the generation settings), so a rerun or `--resume` reuses them. A resume
works because the checkpoint's weights are loaded later, inside `Trainer.train`: this pass
always sees the starting weights. Every process computes the same values (sharded models
need every rank in every forward); the main process writes the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

import torch
from datasets import Dataset

from lmforge.data.tokenize import IGNORE_INDEX
from lmforge.errors import LmforgeError
from lmforge.eval.generate import progress_bar, stop_token_ids
from lmforge.models.loading import load_model, load_tokenizer
from lmforge.objectives.registry import OBJECTIVES
from lmforge.objectives.preference import candidate_scores
from lmforge.rundir import write_json_atomic

if TYPE_CHECKING:  # the pipeline imports this module
    from lmforge.config import Config
    from lmforge.train.data_builders import PreparedData
    from lmforge.train.pipeline import PreparedModel

CACHE_DIR = "reference"


def weights_fingerprint(model) -> str:
    """sha256 over the model's parameter names and values (the adapter's excluded: the
    reference is the base)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if "lora_" in name or "trainable_tokens" in name:
            continue
        digest.update(name.encode())
        digest.update(
            tensor.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        )
    return digest.hexdigest()


def rows_fingerprint(dataset: Dataset, columns: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for row in dataset.select_columns([c for c in columns if c in dataset.column_names]):
        digest.update(json.dumps(row, sort_keys=True).encode())
    return digest.hexdigest()


@contextlib.contextmanager
def as_reference(model):
    """The model as the frozen reference: eval mode, no gradients, an adapter disabled."""
    was_training = model.training
    model.eval()
    disable = getattr(model, "disable_adapter", None)
    try:
        with torch.no_grad(), disable() if disable is not None else contextlib.nullcontext():
            yield model
    finally:
        model.train(was_training)


def _store(path: Path, key: str, values: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"key": key, "values": values})


def _cached(path: Path, key: str) -> Any | None:
    if not path.is_file():
        return None
    stored = json.loads(path.read_text(encoding="utf-8"))
    return stored["values"] if stored.get("key") == key else None


def add_reference_logps(model, train: Dataset, collator, batch_size: int, run_dir: Path, is_main: bool) -> Dataset:
    """`train` with a `reference_logps` column: per row, one summed log-probability per
    sequence the collator makes of it, in the collator's order."""
    key = hashlib.sha256(
        f"{weights_fingerprint(model)}:{rows_fingerprint(train, SEQUENCE_COLUMNS)}".encode()
    ).hexdigest()
    path = run_dir / CACHE_DIR / "reference_logps.json"
    values = _cached(path, key)
    if values is None:
        values = []
        with as_reference(model), progress_bar("reference log-probs", len(train), is_main) as advance:
            for start in range(0, len(train), batch_size):
                rows = [train[i] for i in range(start, min(start + batch_size, len(train)))]
                batch = {key: value.to(model.device) for key, value in collator(rows).items()}
                sums = candidate_scores(model, batch).sums  # each prompt once for all its responses
                per_row = [[] for _ in rows]
                for row_index, value in zip(batch["group"].tolist(), sums.tolist()):
                    per_row[row_index].append(value)
                values += per_row
                advance(len(rows))
        if is_main:
            _store(path, key, values)
    if "reference_logps" in train.column_names:
        train = train.remove_columns("reference_logps")
    return train.add_column("reference_logps", values)


SEQUENCE_COLUMNS = ("input_ids", "labels", "rejected_input_ids", "rejected_labels")


def add_own_generations(
    model,
    tokenizer,
    train: Dataset,
    stop_ids: list[int],
    settings: dict[str, Any],
    max_length: int,
    seed: int,
    run_dir: Path,
    is_main: bool,
    batch_size: int = 16,
) -> Dataset:
    """`train` whose `rejected_*` columns hold the starting model's own answer to each row's
    prompt (the tokens before its first label), generated from the very token ids the
    response is trained after, so the prompt is the same one."""
    key = hashlib.sha256(
        json.dumps(
            [weights_fingerprint(model), rows_fingerprint(train, ("input_ids", "labels")), settings, max_length, seed],
            sort_keys=True,
        ).encode()
    ).hexdigest()
    path = run_dir / CACHE_DIR / "own_generations.json"
    generated = _cached(path, key)
    prompts = [_prompt_ids(row["input_ids"], row["labels"]) for row in train]
    if generated is None:
        generated = _generate(model, tokenizer, prompts, stop_ids, settings, max_length, seed, batch_size, is_main)
        if is_main:
            _store(path, key, generated)
    rejected_ids = [[prompt + answer] for prompt, answer in zip(prompts, generated)]
    rejected_labels = [[[IGNORE_INDEX] * len(prompt) + answer] for prompt, answer in zip(prompts, generated)]
    train = train.remove_columns([c for c in ("rejected_input_ids", "rejected_labels") if c in train.column_names])
    return train.add_column("rejected_input_ids", rejected_ids).add_column("rejected_labels", rejected_labels)


def _prompt_ids(input_ids: list[int], labels: list[int]) -> list[int]:
    first = next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)
    return list(input_ids[:first])


def _generate(
    model,
    tokenizer,
    prompts: list[list[int]],
    stop_ids: list[int],
    settings: dict[str, Any],
    max_length: int,
    seed: int,
    batch_size: int,
    show: bool,
) -> list[list[int]]:
    """Each prompt's continuation, up to and including the first stop token, within
    `max_length` tokens in all (left padding; greedy at temperature 0)."""
    pad = tokenizer.pad_token_id
    sampling = (
        {"do_sample": True, "temperature": settings["temperature"], "top_p": 1.0}
        if settings["temperature"] > 0
        else {"do_sample": False}
    )
    torch.manual_seed(seed)
    answers: list[list[int]] = []
    with as_reference(model), progress_bar("own answers (SPIN)", len(prompts), show) as advance:
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            width = max(len(p) for p in chunk)
            ids = torch.tensor([[pad] * (width - len(p)) + p for p in chunk], device=model.device)
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk], device=model.device)
            limit = max(1, min(settings["max_new_tokens"], max_length - width))
            output = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=limit,
                eos_token_id=stop_ids,
                pad_token_id=pad,
                **sampling,
            )
            for prompt, row in zip(chunk, output[:, width:].tolist()):
                cut = next((i + 1 for i, t in enumerate(row) if t in stop_ids), len(row))
                answers.append(row[:cut][: max_length - len(prompt)])
            advance(len(chunk))
    return answers


def prepare_candidates(config: Config, prepared: PreparedModel, data: PreparedData, is_main: bool) -> None:
    """SPIN's own answers, then the reference log-probabilities, from the starting model."""
    spec = OBJECTIVES[config.train.objective.name]
    if spec.self_generated:
        settings = config.train.objective.model_dump()
        stop_strings = prepared.prompt_format.stop_strings(prepared.tokenizer)
        data.train = add_own_generations(
            prepared.model,
            prepared.tokenizer,
            data.train,
            stop_token_ids(prepared.tokenizer, stop_strings),
            {"max_new_tokens": settings["max_new_tokens"], "temperature": settings["temperature"]},
            config.data.max_length,
            config.run.seed,
            config.output_path,
            is_main,
        )
    if spec.reference:
        path = config.train.objective.model_dump().get("reference")
        model = load_reference_model(path, prepared.tokenizer, config.model.dtype) if path else prepared.model
        data.train = add_reference_logps(
            model, data.train, data.collator, config.train.micro_batch_size, config.output_path, is_main
        )


def load_reference_model(path: str, policy_tokenizer, dtype: str):
    """A separate reference (train.objective.reference), loaded for the reference pass only;
    its token ids must mean what the policy's mean."""
    reference_tokenizer = load_tokenizer(path, key="train.objective.reference")
    if reference_tokenizer.get_vocab() != policy_tokenizer.get_vocab():
        ours, theirs = policy_tokenizer.get_vocab(), reference_tokenizer.get_vocab()
        differing = sorted(set(ours.items()) ^ set(theirs.items()), key=lambda item: item[1])
        raise LmforgeError(
            f"train.objective.reference: {path}'s tokenizer differs from the policy's ({len(theirs)} vs "
            f"{len(ours)} tokens; first difference: {differing[0][0]!r} at id {differing[0][1]}); "
            "the reference must score the same token ids"
        )
    return load_model(path, dtype)
