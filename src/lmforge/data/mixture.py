"""A streaming mixture from the config: its sources and weights, its stages with their step
budgets, the checks that can be made before training, the token forecast `lmforge data
inspect` prints, and the accounting of what the stream has drawn (the columns of seed
003's MPT table: tokens per source, their share against the target weight, epochs).

Weights: a dataset's `weight`, or its `priority` (high, medium, low = weights 4, 2, 1 before
normalization, so high-priority data is drawn twice as often as medium and four times as
often as low); without either every dataset weighs the same. Stage weights name datasets.

Stage budgets: `tokens` (rounded up to whole optimizer steps of train.global_batch_size x
data.max_length tokens) or `steps`; every stage but the last needs one, the last runs the
steps left to train.max_steps. train.schedule spans the whole run; a stage's lr_scale
multiplies it during that stage's steps.

Validation (one set per source): a dataset's `val_split` is the share of its documents held
out by a hash of their text, or of their token ids for tokenized shards
(stream_reader.held_out); training never reads them. With data.streaming a dataset holds
nothing out unless it sets val_split (the in-memory path's 5% default would take 5% of a
corpus from training for a validation set that uses only the first few hundred of them). Each source's validation set is its first `max_val_set`
held-out documents (default 256), packed into rows as training packs them.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge.data.mixing import PRIORITY_WEIGHTS, Stage, check_mix  # noqa: F401 (PRIORITY_WEIGHTS: re-exported)
from lmforge.data.shards import is_token_shards
from lmforge.data.stream_reader import read_documents
from lmforge.data.streaming import PackedTextStream, StreamStage, TextSource, pack_documents
from lmforge.errors import LmforgeError

log = logging.getLogger("lmforge.data")

STREAM_FORMATS = ("auto", "text")
VAL_DOCUMENTS = 256
"""Held-out documents per source in its validation set when max_val_set is not given."""


@dataclass(frozen=True)
class StagePlan:
    name: str
    weights: tuple[float, ...]
    """Normalized, one per source."""
    steps: int
    lr_scale: float = 1.0


@dataclass(frozen=True)
class MixturePlan:
    sources: list[TextSource]
    stages: list[StagePlan]
    max_length: int
    global_batch: int
    """Rows per optimizer step, over all processes and accumulation steps."""
    val_documents: tuple[int, ...] = ()
    """Per source, the held-out documents its validation set takes (0: none held out)."""

    @property
    def tokens_per_step(self) -> int:
        return self.global_batch * self.max_length

    @property
    def max_steps(self) -> int:
        return sum(stage.steps for stage in self.stages)

    def stream_stages(self) -> list[StreamStage]:
        return [StreamStage(s.name, s.weights, s.steps * self.global_batch) for s in self.stages]

    def stage_at_step(self, step: int) -> int:
        """The stage of the optimizer step with 0-based index `step`."""
        end = 0
        for index, stage in enumerate(self.stages):
            end += stage.steps
            if step < end:
                return index
        return len(self.stages) - 1

    def target_shares(self, steps: int) -> list[float]:
        """Each source's share of the tokens of the first `steps` steps, by the weights."""
        done, totals = 0, [0.0] * len(self.sources)
        for stage in self.stages:
            span = max(0, min(stage.steps, steps - done))
            done += stage.steps
            totals = [t + span * w for t, w in zip(totals, stage.weights)]
        whole = sum(totals)
        return [t / whole if whole else 0.0 for t in totals]


def mixture_plan(data_config, max_steps: int | None, global_batch: int) -> MixturePlan:
    """The sources and stages of `data.streaming`, checked; errors name the config key."""
    if max_steps is None:
        raise LmforgeError("train.max_steps: data.streaming needs a step count (a stream has no length); set it")
    entries = data_config.datasets
    if not entries:
        raise LmforgeError("data.datasets: no datasets given")
    names = [entry.name or Path(entry.path).name for entry in entries]
    check_mix(names, [e.weight for e in entries], [Stage(s.name, s.weights) for s in data_config.stages])
    for index, entry in enumerate(entries):
        if entry.format not in STREAM_FORMATS:
            raise LmforgeError(
                f"data.datasets[{index}].format: data.streaming trains plain-text documents (format text), "
                f"not {entry.format}"
            )
        folder = Path(entry.path)
        if folder.is_dir() and not is_token_shards(folder) and any(folder.glob("*/*.ds")):
            raise LmforgeError(
                f"data.datasets[{index}].path: {entry.path} holds a folder of tokenized shards per source; "
                f"give one of them ({', '.join(sorted({p.parent.name for p in folder.glob('*/*.ds')}))})"
            )
    weights = [e.weight if e.weight is not None else 1.0 for e in entries]
    sources = [
        TextSource(
            entry.path,
            weight,
            entry.options.text_field,
            name,
            f"data.datasets[{index}]",
            entry.subset,
            entry.split,
            entry.encoding_errors,
            entry.val_split,
        )
        for index, (entry, name, weight) in enumerate(zip(entries, names, weights))
    ]
    val_documents = tuple(
        (entry.max_val_set if entry.max_val_set is not None else VAL_DOCUMENTS) if entry.val_split else 0
        for entry in entries
    )
    tokens_per_step = global_batch * data_config.max_length
    if not data_config.stages:
        stages = [StagePlan("train", _normalized(weights), max_steps)]
    else:
        stages, used = [], 0
        last = len(data_config.stages) - 1
        for index, stage in enumerate(data_config.stages):
            key = f"data.stages[{index}]"
            if index == last:
                if stage.tokens is not None or stage.steps is not None:
                    raise LmforgeError(
                        f"{key}.{'tokens' if stage.tokens is not None else 'steps'}: the last stage runs the "
                        "steps left to train.max_steps; leave its budget out"
                    )
                steps = max_steps - used
                if steps <= 0:
                    raise LmforgeError(
                        f"{key}: the stages before it take {used} steps, train.max_steps is {max_steps}; "
                        "no step is left for the last stage"
                    )
            elif stage.tokens is not None:
                steps = math.ceil(stage.tokens / tokens_per_step)
            elif stage.steps is not None:
                steps = stage.steps
            else:
                raise LmforgeError(f"{key}: give this stage a budget (tokens or steps); only the last may leave it out")
            used += steps
            stage_weights = [stage.weights.get(name, 0.0) for name in names]
            stages.append(StagePlan(stage.name, _normalized(stage_weights), steps, stage.lr_scale))
    return MixturePlan(sources, stages, data_config.max_length, global_batch, val_documents)


def _normalized(weights: list[float]) -> tuple[float, ...]:
    total = sum(weights)
    return tuple(w / total for w in weights)


def build_stream(plan: MixturePlan, tokenizer, seed: int, fill: str, isolate: bool) -> PackedTextStream:
    """The endless training stream of `plan`, snapshotting its state at every optimizer step."""
    return PackedTextStream(
        plan.sources,
        tokenizer,
        plan.max_length,
        seed=seed,
        fill=fill,
        isolate=isolate,
        repeat=True,
        stages=plan.stream_stages(),
        snapshot_every=plan.global_batch,
    )


# --------------------------------------------------------------------------- checks, forecast


@dataclass
class SourceSample:
    documents: int
    tokens: int
    bytes_read: int | None
    """Bytes of the file the sampled documents span (seekable files)."""
    complete: bool
    """The sample is the whole source."""

    def estimated_tokens(self, size: int | None) -> int | None:
        if self.complete:
            return self.tokens
        if size and self.bytes_read:
            return round(self.tokens * size / self.bytes_read)
        return None


def sample_source(source: TextSource, stream: PackedTextStream, documents: int = 200) -> SourceSample:
    """Tokens of the first `documents` documents (bos + text + eos each)."""
    texts, after = [], None
    for text, position in read_documents(source.documents, source.documents.start()):
        texts.append(text)
        after = position
        if len(texts) == documents:
            break
    complete = len(texts) < documents
    tokens = sum(len(ids) for ids in stream.encode(source, texts))
    return SourceSample(len(texts), tokens, after.offset if after else None, complete)


def check_sources(plan: MixturePlan, samples: list[SourceSample], fill: str) -> None:
    """Every drawn source holds a document, and, when a row is filled from one source, at
    least one row's worth of tokens (else that row would repeat the source)."""
    drawn = [any(stage.weights[i] > 0 for stage in plan.stages) for i in range(len(plan.sources))]
    for source, sample, used in zip(plan.sources, samples, drawn):
        if not used:
            continue
        if sample.documents == 0:
            held = f" but the ones its val_split {source.holdout:g} holds out" if source.holdout else ""
            raise LmforgeError(f"{source.key}.path: {source.path} holds no documents{held}")
        if fill == "source" and sample.complete and sample.tokens < plan.max_length:
            raise LmforgeError(
                f"{source.key}.path: {source.path} holds {sample.tokens} tokens, fewer than one row of "
                f"data.max_length {plan.max_length}; with data.fill: source each of its rows would repeat it "
                "(add data, or set data.fill: mix)"
            )


def forecast(plan: MixturePlan, samples: list[SourceSample]) -> dict[str, Any]:
    """What training will draw from each source: tokens, share, epochs (tokens drawn over
    the source's estimated tokens: from the whole source when it was read to its end, or
    tokens per byte of the sample times the file size), per stage and in all."""
    total_steps = plan.max_steps
    planned = [0.0] * len(plan.sources)
    stages = []
    for stage in plan.stages:
        tokens = stage.steps * plan.tokens_per_step
        stages.append({"name": stage.name, "steps": stage.steps, "tokens": tokens, "lr_scale": stage.lr_scale})
        planned = [p + tokens * w for p, w in zip(planned, stage.weights)]
    total = total_steps * plan.tokens_per_step
    sources = []
    for source, sample, tokens, share in zip(plan.sources, samples, planned, plan.target_shares(total_steps)):
        estimate = sample.estimated_tokens(source.documents.size())
        sources.append(
            {
                "name": source.label,
                "path": source.path,
                "bytes": source.documents.size(),
                "estimated_tokens": estimate,
                "tokens": round(tokens),
                "share": round(share, 4),
                "epochs": round(tokens / estimate, 3) if estimate else None,
            }
        )
    return {
        "steps": total_steps,
        "tokens_per_step": plan.tokens_per_step,
        "tokens": total,
        "stages": stages,
        "sources": sources,
    }


def forecast_text(summary: dict[str, Any]) -> str:
    """The forecast as a table (lmforge data inspect)."""
    header = ("source", "bytes", "est. tokens", "tokens", "share", "epochs")
    table = [header]
    for s in summary["sources"]:
        table.append(
            (
                s["name"],
                s["bytes"] if s["bytes"] is not None else "?",
                s["estimated_tokens"] if s["estimated_tokens"] is not None else "?",
                s["tokens"],
                f"{s['share']:.1%}",
                f"{s['epochs']:.3g}" if s["epochs"] is not None else "?",
            )
        )
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    lines = [
        "  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w) for i, (v, w) in enumerate(zip(row, widths)))
        for row in table
    ]
    lines.append(
        f"forecast: {summary['steps']} steps x {summary['tokens_per_step']} tokens = {summary['tokens']} tokens"
        " (est. tokens: whole source, or the first documents' tokens per byte x file size; ?: unknown)"
    )
    for stage in summary["stages"]:
        lines.append(
            f"stage {stage['name']}: {stage['steps']} steps, {stage['tokens']} tokens, lr x {stage['lr_scale']:g}"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- validation


def validation_rows(plan: MixturePlan, stream: PackedTextStream, isolate: bool, progress=None) -> dict[str, list]:
    """Per source that holds documents out, its validation rows: its first held-out documents
    (plan.val_documents), tokenized and packed as the stream packs training rows. `progress`
    is called with the number of documents read (for a progress bar)."""
    sets = {}
    for source, wanted in zip(plan.sources, plan.val_documents):
        if not wanted:
            continue
        held = source.held_out_side()
        texts = []
        for text, _ in read_documents(held.documents, held.documents.start()):
            texts.append(text)
            if progress is not None:
                progress(1)
            if len(texts) == wanted:
                break
        if not texts:
            raise LmforgeError(
                f"{source.key}.val_split: {source.path} has no document in the {source.holdout:g} share it holds "
                "out for validation (raise val_split, or set it to 0)"
            )
        sets[source.label] = pack_documents(stream.encode(source, texts), plan.max_length, isolate)
    return sets


# --------------------------------------------------------------------------- accounting


def accounting(plan: MixturePlan, state: dict[str, Any], steps: int) -> dict[str, Any]:
    """What the stream drew in its first `steps` steps (`state`: the stream's state there):
    per source, tokens, their share of all drawn tokens, the target share by the weights,
    and epochs over the source (passes completed plus the fraction of the current one:
    its byte offset over the file size, or records over the records of a completed pass;
    left at the completed passes when neither is known)."""
    drawn = [s["tokens"] for s in state["sources"]]
    total = sum(drawn)
    per_source = {}
    for source, saved, target in zip(plan.sources, state["sources"], plan.target_shares(steps)):
        per_source[source.label] = {
            "tokens": saved["tokens"],
            "share": round(saved["tokens"] / total, 4) if total else 0.0,
            "target": round(target, 4),
            "epochs": round(_epochs(source, saved), 4),
        }
    return {"stage": plan.stages[plan.stage_at_step(max(steps - 1, 0))].name, "sources": per_source}


def _epochs(source: TextSource, saved: dict[str, Any]) -> float:
    size = source.documents.size()
    if saved["offset"] is not None and size:
        return saved["epoch"] + saved["offset"] / size
    if saved["records_per_epoch"]:
        return saved["epoch"] + saved["records"] / saved["records_per_epoch"]
    return float(saved["epoch"])


def log_keys(report: dict[str, Any]) -> dict[str, Any]:
    """The accounting flattened for a training log line: mix/<source>/<column>."""
    keys: dict[str, Any] = {"mix/stage": report["stage"]}
    for name, columns in report["sources"].items():
        keys.update({f"mix/{name}/{column}": value for column, value in columns.items()})
    return keys


# --------------------------------------------------------------------------- lmforge data inspect / preview


@dataclass
class StreamInspection:
    """What `lmforge data inspect` shows for data.streaming instead of building the data in
    memory: the forecast, and the stream's first rows (preview)."""

    plan: MixturePlan
    stream: PackedTextStream
    samples: list[SourceSample]
    streaming = True
    reports = ()  # no per-dataset build reports: the stream is not built ahead

    @classmethod
    def from_config(cls, config, tokenizer) -> StreamInspection:
        data = config.data
        plan = mixture_plan(data, config.train.max_steps, config.train.global_batch_size)
        stream = build_stream(plan, tokenizer, config.run.seed, data.fill, data.isolate_documents)
        samples = [sample_source(source, stream) for source in plan.sources]
        check_sources(plan, samples, data.fill)
        return cls(plan, stream, samples)

    def summary(self) -> dict[str, Any]:
        return {"forecast": forecast(self.plan, self.samples)}

    def first_rows(self, n: int) -> list[dict[str, Any]]:
        rows = []
        for row in self.stream:
            rows.append(row)
            if len(rows) == n:
                break
        return rows
