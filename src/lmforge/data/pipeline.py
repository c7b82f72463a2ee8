"""The data pipeline: read each dataset in its format, filter, remove exact and near
duplicates within and across datasets, split train/val/test (deterministic by seed), keep
held-out near-duplicates out of train, cap, tokenize with label masks, mix by weight (per
stage), optionally pack (whole examples, or plain text split across full rows), and report
what happened to every record."""

from __future__ import annotations

import itertools
import logging
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset

from lmforge.data.clean import DedupSettings, Filters, Fingerprints, deduplicate, drop_reason, leak_guard
from lmforge.data.conversation import ROLE_IDS, Conversation, Segment
from lmforge.data.decontaminate import NgramIndex
from lmforge.data.decontaminate import decontaminate as decontaminate_conversations
from lmforge.data.formats import PromptFormat
from lmforge.data.mixing import Stage, check_mix, mix
from lmforge.data.oasst import MESSAGE_FORMATS
from lmforge.data.packing import PackingReport, check_plain_text, pack_rows, pack_split
from lmforge.data.records import RecordDropped
from lmforge.data.registry import GROUPERS, TRANSFORMS, check_format, detect_format
from lmforge.data.sources import Located, read_records
from lmforge.data.tokenize import encode_conversations, fit_length
from lmforge.errors import LmforgeError

log = logging.getLogger("lmforge.data")


@dataclass
class DatasetSpec:
    """Plain arguments for one dataset (the builder does not see the config object)."""

    path: str
    format: str = "auto"
    val_split: float = 0.05
    test_split: float = 0.0
    max_train_set: int | None = None
    max_val_set: int | None = None
    name: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    subset: str | None = None
    split: str = "train"
    lang: str | None = None
    on_bad_record: str = "error"
    encoding_errors: str = "strict"
    weight: float | None = None
    min_chars: int | None = None
    max_chars: int | None = None

    def __post_init__(self) -> None:
        self.name = self.name or Path(self.path).name

    @property
    def filters(self) -> Filters:
        languages = frozenset(code.strip() for code in (self.lang or "").split(",") if code.strip())
        return Filters(languages, self.min_chars, self.max_chars)


@dataclass
class DatasetReport:
    path: str
    format: str = ""
    detected: bool = False
    records: int = 0
    """Records read from the source."""
    examples: int = 0
    """Conversations the records became (an Open-Assistant tree may give several)."""
    dropped: Counter = field(default_factory=Counter)
    """Removals by reason: bad_record, language, empty_response, contaminated, duplicate, near_duplicate,
    held_out_duplicate, too_long, ... (format filters add their own)."""
    truncated: int = 0
    train: int = 0
    val: int = 0
    test: int = 0
    train_tokens: int = 0
    trained_tokens: int = 0
    max_tokens: int = 0
    name: str = ""
    weight: float | None = None
    mixed: dict[str, int] = field(default_factory=dict)
    """Training rows this dataset gives each stage (repeats included)."""
    repeated: dict[str, int] = field(default_factory=dict)
    bad_records: list[str] = field(default_factory=list)
    """The first few skipped records' locations and problems."""
    messages: Counter = field(default_factory=Counter)
    """Open-Assistant only: what became of every message read — kept, or removed by reason
    (oasst.py lists them); messages read is the sum, threads built is `examples`."""

    @property
    def mean_tokens(self) -> float:
        return self.train_tokens / self.train if self.train else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.__dict__,
            "dropped": dict(self.dropped),
            "messages": dict(self.messages),
            "mean_tokens": round(self.mean_tokens, 2),
        }


@dataclass
class Splits:
    train: list[Conversation] = field(default_factory=list)
    val: list[Conversation] = field(default_factory=list)
    test: list[Conversation] = field(default_factory=list)


@dataclass
class StageData:
    name: str
    rows: list[dict[str, Any]]
    packing: PackingReport | None = None


@dataclass
class TokenizedData:
    train: Dataset
    """Every stage's rows in stage order (one stage without data.stages)."""
    val: Dataset | None
    test_conversations: list[Conversation]
    val_conversations: list[Conversation]
    reports: list[DatasetReport]
    cot_fraction: float
    stages: list[StageData] = field(default_factory=list)
    samples: list[list[dict[str, Any]]] = field(default_factory=list)
    """The first few tokenized training examples of each dataset (unpacked), for reports."""
    val_packing: PackingReport | None = None
    """data.packing: split: the validation examples split across full rows as training's are."""

    @property
    def packing(self) -> PackingReport | None:
        reports = [s.packing for s in self.stages if s.packing]
        if not reports:
            return None
        counts = (sum(getattr(r, f) for r in reports) for f in ("examples", "rows", "tokens", "slots"))
        return PackingReport(*counts, split=reports[0].split)


# --------------------------------------------------------------------------- reading


MAX_BAD_SHOWN = 5
ENCODE_BATCH = 256  # conversations per tokenizer call
SAMPLES_KEPT = 2


def load_conversations(spec: DatasetSpec, report: DatasetReport) -> list[Conversation]:
    """Records -> conversations in the dataset's format (named, or detected from the first
    record), counting records, skipped bad records and format-filter drops."""

    def bad(where: str, problem: str) -> None:
        report.dropped["bad_record"] += 1
        if len(report.bad_records) < MAX_BAD_SHOWN:
            report.bad_records.append(f"{where}: {problem}")

    def unreadable(where: str, problem: str) -> None:
        # a record the reader could not parse is still a record read, so that
        # records - dropped = examples holds
        report.records += 1
        bad(where, problem)

    skip = spec.on_bad_record == "skip"
    located = _counted(
        read_records(spec.path, unreadable if skip else None, spec.encoding_errors, spec.subset, spec.split), report
    )
    first = next(located, None)
    if first is None:
        return []
    fmt = spec.format
    if fmt == "auto":
        fmt = detect_format(*first)
        report.detected = True
        log.info("%s: detected format %s", spec.path, fmt)
    report.format = fmt
    located = itertools.chain([first], located)
    counts = {"messages": report.messages} if fmt in MESSAGE_FORMATS else {}  # message fates
    if fmt in GROUPERS:
        located = GROUPERS[fmt](located, bad if skip else None, **counts)
    transform = TRANSFORMS[fmt]
    conversations: list[Conversation] = []
    for record, where in located:
        try:
            made = transform(record, where, spec.options, **counts)
        except RecordDropped as dropped:
            report.dropped[dropped.reason] += 1
            continue
        except LmforgeError as exc:
            if not skip:
                raise
            bad(where, str(exc).removeprefix(f"{where}: "))
            continue
        conversations.extend(made if isinstance(made, list) else [made])
    report.examples = len(conversations)
    return conversations


def _counted(located: Iterator[Located], report: DatasetReport) -> Iterator[Located]:
    for item in located:
        report.records += 1
        yield item


def apply_filters(conversations: list[Conversation], filters: Filters, report: DatasetReport) -> list[Conversation]:
    kept = []
    for conversation in conversations:
        reason = drop_reason(conversation, filters)
        if reason:
            report.dropped[reason] += 1
        else:
            kept.append(conversation)
    return kept


# --------------------------------------------------------------------------- splitting


def split_conversations(
    conversations: list[Conversation], spec: DatasetSpec, seed: int, cap_train: bool = True
) -> Splits:
    """Shuffle with the seed, then carve test and val off the front: deterministic."""
    order = list(range(len(conversations)))
    random.Random(seed).shuffle(order)
    n = len(order)
    n_test = int(round(n * spec.test_split))
    n_val = int(round(n * spec.val_split))
    if spec.max_val_set is not None:
        n_val = min(n_val, spec.max_val_set)
    test = [conversations[i] for i in order[:n_test]]
    val = [conversations[i] for i in order[n_test : n_test + n_val]]
    train = [conversations[i] for i in order[n_test + n_val :]]
    if cap_train and spec.max_train_set is not None:
        train = train[: spec.max_train_set]
    return Splits(train, val, test)


# --------------------------------------------------------------------------- tokenizing


def tokenize_conversations(
    conversations: list[Conversation],
    prompt_format: PromptFormat,
    tokenizer,
    max_length: int | None,
    overlength: str,
    report: DatasetReport,
    candidates: bool = False,
) -> list[dict[str, Any]]:
    """Rows of token ids, labels and token roles (`max_length` None: no limit, for
    examples that split packing cuts across rows). With `candidates`, a record's rejected
    responses (`pairs`: metadata['rejected'], best first) are encoded after the same prompt
    into `rejected_input_ids` / `rejected_labels`; when any of an example's responses does
    not fit `max_length`, the whole example is dropped (a ranking is not cut)."""
    kept = [c for c in conversations if drop_reason(c, Filters()) != "empty_response"]
    if len(kept) < len(conversations):
        report.dropped["empty_response"] += len(conversations) - len(kept)
    encoded = [
        e
        for start in range(0, len(kept), ENCODE_BATCH)
        for e in encode_conversations(kept[start : start + ENCODE_BATCH], prompt_format, tokenizer)
    ]
    rows = []
    for conversation, example in zip(kept, encoded):
        fitted, reason = fit_length(example, max_length, overlength)
        rejected = []
        if fitted is not None and candidates:
            alternatives = [
                Conversation((*conversation.prompt_segments(), Segment("assistant", text)), conversation.source)
                for text in conversation.metadata.get("rejected", ())
            ]
            for alternative in encode_conversations(alternatives, prompt_format, tokenizer) if alternatives else []:
                fitted_alternative, reason = fit_length(alternative, max_length, overlength)
                if fitted_alternative is None:
                    fitted = None
                    break
                rejected.append(fitted_alternative)
        if fitted is None:
            report.dropped[reason] += 1
            continue
        report.truncated += int(max_length is not None and len(example.input_ids) > max_length)
        row = fitted.as_row()
        if candidates:
            row["rejected_input_ids"] = [r.input_ids for r in rejected]
            row["rejected_labels"] = [r.labels for r in rejected]
        rows.append(row)
    return rows


def augmented_rows(
    conversations: list[Conversation],
    formats: list[PromptFormat],
    rng: random.Random,
    tokenizer,
    max_length: int | None,
    overlength: str,
    report: DatasetReport,
) -> list[dict[str, Any]]:
    """Format augmentation: each conversation rendered in a format drawn from `formats`."""
    rows = []
    for conversation in conversations:
        fmt = rng.choice(formats)
        rows += tokenize_conversations([conversation], fmt, tokenizer, max_length, overlength, report)
    return rows


def _count_tokens(rows: list[dict[str, Any]], report: DatasetReport) -> None:
    report.train_tokens = sum(len(r["input_ids"]) for r in rows)
    report.trained_tokens = sum(sum(1 for label in r["labels"][1:] if label != -100) for r in rows)
    report.max_tokens = max((len(r["input_ids"]) for r in rows), default=0)


# --------------------------------------------------------------------------- the whole story


def build_datasets(
    specs: list[DatasetSpec],
    prompt_format: PromptFormat,
    tokenizer,
    max_length: int,
    overlength: str,
    seed: int,
    dedup: DedupSettings = DedupSettings(),
    stages: list[Stage] = (),
    mix_size: int | None = None,
    packing: bool | str = False,
    augment: list[PromptFormat] = (),
    candidates: bool = False,
    decontaminate: NgramIndex | None = None,
) -> TokenizedData:
    """`decontaminate`: drop examples sharing an n-gram with these evaluation sets (after
    the filters, before deduplication, as `lmforge data prepare` does).

    `packing`: False, True (whole examples, best fit; validation stays unpacked, under
    `overlength`) or "split" (plain text only: the training examples, and the validation
    examples in rows of their own, cut across full rows, so no example is over-long and
    `overlength` does not apply)."""
    if not specs:
        raise LmforgeError("data.datasets: no datasets given")
    if any(f.name == "chat_template" for f in augment) and not getattr(tokenizer, "chat_template", None):
        raise LmforgeError("data.format_augmentation: chat_template needs a tokenizer with a chat_template")
    for index, spec in enumerate(specs):
        check_format(spec.format, f"data.datasets[{index}].format")
    names = [spec.name for spec in specs]
    check_mix(names, [spec.weight for spec in specs], list(stages))
    reports = [DatasetReport(spec.path, name=spec.name, weight=spec.weight) for spec in specs]

    # read and filter, then deduplicate across datasets (before any split)
    loaded = [
        apply_filters(load_conversations(spec, report), spec.filters, report) for spec, report in zip(specs, reports)
    ]
    if decontaminate is not None:
        for index, report in enumerate(reports):
            loaded[index], contaminated = decontaminate_conversations(loaded[index], decontaminate)
            if contaminated:
                report.dropped["contaminated"] += contaminated
    fingerprints = Fingerprints(dedup)
    if dedup.exact or dedup.near:
        loaded, removed = deduplicate(loaded, fingerprints)
        for report, counts in zip(reports, removed):
            report.dropped.update(counts)

    # split, then keep every held-out example's (near-)duplicates out of train
    splits = [split_conversations(c, spec, seed + i, cap_train=False) for i, (c, spec) in enumerate(zip(loaded, specs))]
    held_out = [c for s in splits for c in (*s.val, *s.test)]
    for spec, split, report in zip(specs, splits, reports):
        split.train, leaked = leak_guard(split.train, held_out, fingerprints)
        if leaked:
            report.dropped["held_out_duplicate"] += leaked
        if spec.max_train_set is not None:
            split.train = split.train[: spec.max_train_set]

    length = None if packing == "split" else max_length
    train_rows: list[list[dict[str, Any]]] = []
    val_rows: list[dict[str, Any]] = []
    for index, (spec, split, report) in enumerate(zip(specs, splits, reports)):
        if augment and candidates:
            raise LmforgeError(
                "data.format_augmentation: preference objectives train on each prompt's responses side "
                "by side in one format; leave format augmentation off"
            )
        if augment:
            rows = augmented_rows(
                split.train,
                list(augment),
                random.Random(f"{seed}:{index}:augment"),
                tokenizer,
                length,
                overlength,
                report,
            )
        else:
            rows = tokenize_conversations(split.train, prompt_format, tokenizer, length, overlength, report, candidates)
        val = tokenize_conversations(split.val, prompt_format, tokenizer, length, overlength, report)
        if packing == "split":
            check_plain_text([*rows, *val], f"data.datasets[{index}] ({spec.path}, format {report.format})")
        for row in rows:
            row["dataset"] = index
        report.train, report.val, report.test = len(rows), len(val), len(split.test)
        _count_tokens(rows, report)
        if not rows:
            dropped = ", ".join(f"{k}: {v}" for k, v in report.dropped.items()) or "none"
            raise LmforgeError(
                f"data.datasets[{index}] ({spec.path}): no training examples left after filtering "
                f"({report.records} records read; dropped {dropped}; max_length {max_length})"
            )
        train_rows.append(rows)
        val_rows += val

    val_packing = None
    if packing == "split" and val_rows:  # validation looks like training, as a stream's does
        val_rows, val_packing = pack_split(val_rows, max_length)
    stage_data = _mix_stages(train_rows, specs, reports, list(stages), mix_size, seed, max_length, packing)
    all_rows = [dict(row) for stage in stage_data for row in stage.rows]
    if packing:  # a packed row's own id (NEFTune's per-row seed); its examples keep theirs per token
        for row_id, row in enumerate(all_rows):
            row["example_id"] = row_id
    kept = [row for rows in train_rows for row in rows]
    cot = sum(ROLE_IDS["rationale"] in r["token_roles"] for r in kept)
    return TokenizedData(
        train=Dataset.from_list(all_rows),
        val=Dataset.from_list(val_rows) if val_rows else None,
        test_conversations=[c for s in splits for c in s.test],
        val_conversations=[c for s in splits for c in s.val],
        reports=reports,
        cot_fraction=cot / len(kept) if kept else 0.0,
        stages=stage_data,
        samples=[rows[:SAMPLES_KEPT] for rows in train_rows],
        val_packing=val_packing,
    )


def _mix_stages(
    train_rows: list[list[dict[str, Any]]],
    specs: list[DatasetSpec],
    reports: list[DatasetReport],
    stages: list[Stage],
    mix_size: int | None,
    seed: int,
    max_length: int,
    packing: bool | str,
) -> list[StageData]:
    weighted = specs[0].weight is not None
    given = bool(stages)
    if not given:
        stages = [Stage("train", {s.name: s.weight for s in specs} if weighted else {}, mix_size)]
    out = []
    next_id = 0
    for index, stage in enumerate(stages):
        key = f"data.stages[{index}].weights" if given else "data.datasets[*].weight"
        weights = [stage.weights.get(s.name, 0.0) for s in specs] if stage.weights else None
        rows, taken, repeated = mix(train_rows, weights, stage.mix_size, seed + 7919 * (index + 1), key)
        for report, count, extra in zip(reports, taken, repeated):
            report.mixed[stage.name] = count
            if extra:
                report.repeated[stage.name] = extra
        # every example's id, before any packing: collate-time noise is drawn per example from
        # it, so an example is corrupted alike packed or not (a repeated row is its own example)
        rows = [{**row, "example_id": next_id + i} for i, row in enumerate(rows)]
        next_id += len(rows)
        packed = None
        if packing:
            rows, packed = (pack_split if packing == "split" else pack_rows)(rows, max_length)
        out.append(StageData(stage.name, rows, packed))
    return out
