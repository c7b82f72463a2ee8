"""The training data a run's Trainer gets, by what its objective needs: one sequence per
example (`sft_data`: label masks, packing, collate-time masking noise, NEFTune seeds) or
each record's ranked responses side by side (`preference_data`). Both tokenize once per
run (`tokenized_once`, shared over processes) and report what they kept and dropped."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import TrainerCallback

from lmforge.config import Config
from lmforge.data.cache import data_fingerprint, load_tokenized, save_tokenized
from lmforge.data.collate import CandidateCollator, PadCollator
from lmforge.data.formats import PromptFormat
from lmforge.data.from_config import build_from_config, dataset_specs
from lmforge.data.packing import PackedCollator
from lmforge.data.pipeline import TokenizedData
from lmforge.data.sources import file_sha256
from lmforge.errors import LmforgeError
from lmforge.objectives.forward import NoiseSeeds
from lmforge.objectives.registry import OBJECTIVES
from lmforge.objectives.remask import MASK_TOKEN, NoiseEpoch, NoisyCollator, RegularizationNoise
from lmforge.objectives.spec import CANDIDATES
from lmforge.train.distributed import on_main, process_state


def mask_token_id(tokenizer) -> int:
    return tokenizer.mask_token_id if tokenizer.mask_token is not None else tokenizer.convert_tokens_to_ids(MASK_TOKEN)


def build_noise(objective: dict[str, Any], tokenizer, seed: int) -> RegularizationNoise | None:
    """The collate-time corruption a masking objective trains on (None for CE/MixCE)."""
    name = objective["name"]
    if not OBJECTIVES[name].masking:
        return None
    return RegularizationNoise(
        mask_token_id(tokenizer),
        objective["p_in"],
        objective.get("p_label", 0.0),
        objective.get("p_answer_only", 0.0),
        cot_rules=name != "remask",
        seed=seed,
    )


@dataclass
class PreparedData:
    """What the Trainer needs from a data builder, and what the run records about it."""

    train: Dataset
    val: Dataset | None
    collator: Callable
    eval_collator: Callable
    cot: bool
    """Most training examples have a rationale: the saved model answers rationale-first."""
    file_hashes: dict[str, str]
    summary: dict[str, Any]
    callbacks: list[TrainerCallback] = field(default_factory=list)
    tokenized: TokenizedData | None = None
    sequential: bool = False
    """Train in the dataset's order (multi-stage mixes) instead of a random order."""
    trainer_arguments: dict[str, Any] = field(default_factory=dict)
    """TrainingArguments this data needs (a stream: ignore_data_skip)."""
    final_metrics: Callable[[int], dict[str, Any]] | None = None
    """Called with the last global step: what the run summary adds about the data."""


DataBuilder = Callable[[Config, Any, PromptFormat], PreparedData]


def local_file_hashes(paths: list[str]) -> dict[str, str]:
    return {path: file_sha256(path) if Path(path).is_file() else "not a local file" for path in paths}


def tokenized_once(
    config: Config, tokenizer, prompt_format: PromptFormat, candidates: bool = False
) -> tuple[TokenizedData, dict[str, str]]:
    """The tokenized data and the data files' hashes. With several processes the main
    process builds it and caches it in the run directory by content hash; the others load
    that cache. (Their file hashes stay empty: only the main process writes run.json.)"""
    state = process_state()
    paths = [spec.path for spec in dataset_specs(config.data)]
    if state.num_processes == 1:
        return (
            build_from_config(config.data, config.run.seed, prompt_format, tokenizer, candidates),
            local_file_hashes(paths),
        )
    built: dict[str, Any] = {}

    def build_and_cache() -> str:
        built["data"] = build_from_config(config.data, config.run.seed, prompt_format, tokenizer, candidates)
        built["hashes"] = local_file_hashes(paths)
        key = data_fingerprint(
            {**config.data.model_dump(mode="json"), "candidates": candidates},
            config.run.seed,
            prompt_format.name,
            tokenizer,
            built["hashes"],
        )
        return str(save_tokenized(built["data"], config.output_path, key))

    cached = on_main(state, build_and_cache)
    if state.is_main_process:
        return built["data"], built["hashes"]
    return load_tokenized(Path(cached)), {}


def _print_data_reports(data: TokenizedData) -> None:
    for report in data.reports:
        dropped = ", ".join(f"{k} {v}" for k, v in report.dropped.items()) or "none"
        print(
            f"[lmforge] {report.path}: {report.records} records ({report.format}"
            f"{', detected' if report.detected else ''}); train {report.train}, "
            f"val {report.val}, test {report.test}; dropped: {dropped}; truncated {report.truncated}"
        )
    if data.packing:
        print(f"[lmforge] {data.packing.describe()}")
    if data.val_packing:
        print(f"[lmforge] validation {data.val_packing.describe()}")


def sft_data(config: Config, tokenizer, prompt_format: PromptFormat) -> PreparedData:
    """Conversations from data.datasets, tokenized with label masks, padded per batch;
    masking objectives add their collate-time noise to training batches, NEFTune its
    per-example seeds."""
    data, file_hashes = tokenized_once(config, tokenizer, prompt_format)
    _print_data_reports(data)
    if config.train.objective.name == "remask_cot" and data.cot_fraction == 0.0:
        raise LmforgeError(
            "train.objective.name: remask_cot needs CoT examples (question/rationale/answer), "
            "but no training example has a rationale segment; use remask instead"
        )
    collator = PadCollator(tokenizer.pad_token_id)
    packed = PackedCollator(tokenizer.pad_token_id)
    train_collator = packed if config.data.packing else collator
    # data.packing: split packs validation too (no attention mask, positions restarting per
    # piece). Each piece's first label is -100, so no token is predicted from another
    # document's tokens; but where a document continues from the row before, its first token
    # there goes unscored and the tokens after it lose the context before the cut, as in
    # training and in a stream's validation.
    eval_collator = packed if config.data.packing == "split" else collator
    noise = build_noise(config.train.objective.model_dump(), tokenizer, config.run.seed)
    if noise:
        train_collator = NoisyCollator(train_collator, noise)
    seeds = NoiseSeeds(config.run.seed) if config.train.neftune_alpha else None
    if seeds:
        train_collator = NoisyCollator(train_collator, seeds)
    epoch_noise = [step for step in (noise, seeds) if step is not None]
    return PreparedData(
        train=data.train,
        val=data.val,
        collator=train_collator,
        eval_collator=eval_collator,
        cot=data.cot_fraction >= 0.5,
        file_hashes=file_hashes,
        summary={"data": [r.as_dict() for r in data.reports]},
        callbacks=[NoiseEpoch(*epoch_noise)] if epoch_noise else [],
        tokenized=data,
        # stages are laid out one after the other (each shuffled within itself): keep that order
        sequential=bool(config.data.stages),
    )


def named_format(spec) -> str:
    """A dataset's format, detected from its first record when it says `auto`."""
    if spec.format != "auto":
        return spec.format
    from lmforge.data.registry import detect_format
    from lmforge.data.sources import read_records

    try:
        first = next(iter(read_records(spec.path)), None)
        return detect_format(*first) if first is not None else "empty"
    except LmforgeError:  # unreadable or undetectable: the data loader reports that itself
        return spec.format


def preference_data(config: Config, tokenizer, prompt_format: PromptFormat) -> PreparedData:
    """Each record's chosen response with its rejected ones (`pairs` records), side by side
    in one batch (CandidateCollator); validation scores the chosen responses by
    cross-entropy. SPIN's rejected responses come later, from the model (run_training)."""
    spec = OBJECTIVES[config.train.objective.name]
    if config.data.packing:
        raise LmforgeError(
            f"data.packing: {spec.name} compares each prompt's responses, which packing would split "
            "over rows; set data.packing: false"
        )
    data, file_hashes = tokenized_once(config, tokenizer, prompt_format, candidates=True)
    _print_data_reports(data)
    if not spec.self_generated:
        for index, dataset in enumerate(dataset_specs(config.data)):
            rows = [r for r in data.train if r["dataset"] == index]
            without = sum(not r["rejected_input_ids"] for r in rows)
            if without:
                raise LmforgeError(
                    f"train.objective.name: {spec.name} trains on ranked responses, but {without} of {len(rows)} "
                    f"training examples of data.datasets[{index}] ({dataset.path}, format {named_format(dataset)}) "
                    "have no rejected response; give it pairs records (prompt, chosen, rejected)"
                )
    collator = CandidateCollator(tokenizer.pad_token_id)
    return PreparedData(
        train=data.train,
        val=data.val,
        collator=collator,
        eval_collator=PadCollator(tokenizer.pad_token_id),
        cot=data.cot_fraction >= 0.5,
        file_hashes=file_hashes,
        summary={"data": [r.as_dict() for r in data.reports]},
        tokenized=data,
        sequential=bool(config.data.stages),
    )


STREAM_HASH_LIMIT = 256 * 2**20


def stream_file_hashes(paths: list[str]) -> dict[str, str]:
    """Hashes of the streamed files, but a streamed corpus may be far larger than memory
    and reading it twice costs hours: files over 256 MiB are recorded by size."""
    hashes = {}
    for path in paths:
        file = Path(path)
        if file.is_file() and file.stat().st_size > STREAM_HASH_LIMIT:
            hashes[path] = f"not hashed (streamed, {file.stat().st_size} bytes)"
        else:
            hashes.update(local_file_hashes([path]))
    return hashes


def streaming_data(config: Config, tokenizer, prompt_format: PromptFormat) -> PreparedData:
    """data.streaming: an endless stream of packed plain-text rows mixed by weight and by
    stage (data/streaming.py, data/mixture.py), its position saved in every checkpoint, its
    token accounting in the training log and the run summary. Validation: one set per
    source that holds documents out (val_split), scored as eval/<source>/loss and
    perplexity (the Trainer's evaluate takes the dict) and plotted in val_perplexity.png."""
    from lmforge.data.mixture import (
        build_stream,
        check_sources,
        forecast,
        mixture_plan,
        sample_source,
        validation_rows,
    )
    from lmforge.eval.generate import progress_bar
    from lmforge.train.stream_callbacks import StreamAccounting, StreamPosition, ValidationPlot

    train = config.train
    spec = OBJECTIVES[train.objective.name]
    if spec.data == CANDIDATES or spec.masking:
        raise LmforgeError(
            f"train.objective.name: {spec.name} needs prompts and responses; data.streaming trains "
            "plain text (use ce or mixce)"
        )
    if train.neftune_alpha:
        raise LmforgeError("train.neftune_alpha: NEFTune noise is seeded per example; streamed rows have none")
    if train.dataloader_workers:
        raise LmforgeError(
            "train.dataloader_workers: a stream is read in the training process (its position is checkpointed); set 0"
        )
    plan = mixture_plan(config.data, train.max_steps, train.global_batch_size)
    stream = build_stream(plan, tokenizer, config.run.seed, config.data.fill, config.data.isolate_documents)
    samples = [sample_source(source, stream) for source in plan.sources]
    check_sources(plan, samples, config.data.fill)
    plan_summary = forecast(plan, samples)
    if process_state().is_main_process:
        for source in plan_summary["sources"]:
            epochs = f"{source['epochs']:.3g}" if source["epochs"] is not None else "?"
            print(
                f"[lmforge] stream {source['name']}: {source['tokens']} tokens planned "
                f"({source['share']:.1%}), {epochs} epochs of {source['path']}"
            )
    main = process_state().is_main_process
    with progress_bar("validation documents", sum(plan.val_documents), show=main) as advance:
        held_out = validation_rows(plan, stream, config.data.isolate_documents, advance)
    val = {name: Dataset.from_list(rows) for name, rows in held_out.items()} or None
    if main and val:
        for name, rows in held_out.items():
            tokens = sum(len(row["input_ids"]) for row in rows)
            print(f"[lmforge] stream {name}: validation {len(rows)} rows, {tokens} tokens of held-out documents")
    accounting = StreamAccounting(stream, plan)
    pad = tokenizer.pad_token_id
    return PreparedData(
        train=stream,
        val=val,
        collator=PackedCollator(pad),
        # validation rows are packed like training rows (position ids restart per document)
        eval_collator=PackedCollator(pad),
        cot=False,
        file_hashes=stream_file_hashes([source.path for source in plan.sources]),
        summary={"data": [], "streaming": plan_summary},
        callbacks=[accounting, StreamPosition(stream, plan.global_batch), *([ValidationPlot()] if val else [])],
        # the stream resumes from its own saved position: replaying consumed batches would skip data
        trainer_arguments={"ignore_data_skip": True},
        final_metrics=accounting.final_metrics,
    )


def default_data_builder(config: Config) -> DataBuilder:
    if config.data.streaming:
        return streaming_data
    return preference_data if OBJECTIVES[config.train.objective.name].data == CANDIDATES else sft_data
