"""`lmforge data inspect` and `lmforge data preview`: what the data pipeline made of a
config, without a model. Inspect: per dataset, records read, drops by reason, duplicates,
split sizes, token counts and lengths, and two rendered examples with the trained-on span
marked. Preview: exactly what the model will see, example by example.

Trained-on text is marked ⟦like this⟧ in plain-text output."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lmforge.data.conversation import ROLE_IDS
from lmforge.data.packing import PackingReport
from lmforge.data.pipeline import TokenizedData
from lmforge.data.tokenize import IGNORE_INDEX

OPEN, CLOSE = "⟦", "⟧"
ROLE_NAMES = {code: name for name, code in ROLE_IDS.items()} | {-1: "padding"}
DUPLICATE_REASONS = ("duplicate", "near_duplicate", "held_out_duplicate")


def format_tokens(config, tokenizer) -> list[str]:
    """The special tokens of every format a training example may be rendered in: the prompt
    format's, then the format-augmentation formats' (what training adds, less the
    objective's mask token, which the data layer does not know)."""
    from lmforge.data.formats import get_format

    names = [config.data.prompt_format, *config.data.format_augmentation]
    return list(dict.fromkeys(token for name in names for token in get_format(name).special_tokens(tokenizer)))


def prepare(config, special_tokens: Callable[[Any, Any], list[str]] = format_tokens):
    """The tokenizer and the built data of a config: the same data `lmforge train` would train
    on. `special_tokens(config, tokenizer)` names the tokens to add, in order; the CLI passes
    training's own list (train.pipeline.needed_special_tokens), so the tokenizer is the one
    training prepares, token for token and id for id."""
    from lmforge.data.formats import get_format
    from lmforge.data.from_config import build_from_config
    from lmforge.models.loading import load_tokenizer
    from lmforge.models.tokens import add_tokenizer_tokens

    model = config.model
    tokenizer = load_tokenizer(
        model.tokenizer or model.name_or_path,
        model.trust_remote_code,
        key="model.tokenizer" if model.tokenizer else "model.name_or_path",
    )
    add_tokenizer_tokens(tokenizer, special_tokens(config, tokenizer))
    if config.data.streaming:  # a stream is forecast, not built (data/mixture.py)
        from lmforge.data.mixture import StreamInspection

        return tokenizer, StreamInspection.from_config(config, tokenizer)
    prompt_format = get_format(config.data.prompt_format)
    return tokenizer, build_from_config(config.data, config.run.seed, prompt_format, tokenizer)


def segments(row: dict[str, Any], tokenizer) -> list[dict[str, Any]]:
    """Consecutive tokens of one role and trained-ness, decoded: [{role, text, trained}]."""
    out: list[dict[str, Any]] = []
    run: list[int] = []
    key = None
    roles = row.get("token_roles") or [0] * len(row["input_ids"])
    for position, (token, label, role) in enumerate(zip(row["input_ids"], row["labels"], roles)):
        trained = label != IGNORE_INDEX and position > 0
        if (role, trained) != key and run:
            out.append({"role": ROLE_NAMES.get(key[0], str(key[0])), "text": tokenizer.decode(run), "trained": key[1]})
            run = []
        key = (role, trained)
        run.append(token)
    if run:
        out.append({"role": ROLE_NAMES.get(key[0], str(key[0])), "text": tokenizer.decode(run), "trained": key[1]})
    return out


def marked_text(parts: list[dict[str, Any]]) -> str:
    """The text with each run of trained parts wrapped in ⟦…⟧."""
    out, inside = [], False
    for part in parts:
        if part["trained"] != inside:
            out.append(OPEN if part["trained"] else CLOSE)
            inside = part["trained"]
        out.append(part["text"])
    return "".join(out) + (CLOSE if inside else "")


def inspect_json(data: TokenizedData, tokenizer, examples: int = 2) -> dict[str, Any]:
    if getattr(data, "streaming", False):
        return data.summary()
    datasets = []
    for index, report in enumerate(data.reports):
        entry = report.as_dict()
        entry["duplicates_removed"] = sum(report.dropped.get(r, 0) for r in DUPLICATE_REASONS)
        entry["examples"] = [marked_text(segments(row, tokenizer)) for row in data.samples[index][:examples]]
        entry["messages"] = message_counts(report.messages, report.examples)
        datasets.append(entry)
    summary: dict[str, Any] = {
        "datasets": datasets,
        "stages": [{"name": s.name, "rows": len(s.rows)} for s in data.stages],
        "train_rows": len(data.train),
        "val_rows": len(data.val) if data.val else 0,
        "cot_fraction": round(data.cot_fraction, 4),
    }
    for key, report in (("packing", data.packing), ("val_packing", data.val_packing)):
        if report:
            summary[key] = {
                "mode": "split" if report.split else "whole",
                "examples": report.examples,
                "rows": report.rows,
                "tokens": report.tokens,
                "slots": report.slots,
                "efficiency": round(report.efficiency, 4),
            }
    return summary


def message_counts(fates: dict[str, int], threads: int) -> dict[str, Any] | None:
    """Open-Assistant datasets: messages read = kept + removed by each reason, and the
    threads built from the kept ones (None for other formats)."""
    if not fates:
        return None
    removed = {reason: n for reason, n in sorted(fates.items()) if reason != "kept"}
    return {"read": sum(fates.values()), "kept": fates.get("kept", 0), "removed": removed, "threads": threads}


def inspect_text(summary: dict[str, Any]) -> str:
    if "forecast" in summary:
        from lmforge.data.mixture import forecast_text

        return forecast_text(summary["forecast"])
    header = ("dataset", "format", "records", "dropped", "dups", "train", "val", "test", "tokens", "mean", "max")
    table = [header]
    for d in summary["datasets"]:
        dropped = sum(d["dropped"].values()) - d["duplicates_removed"]
        table.append(
            (
                d["name"],
                d["format"] + ("*" if d["detected"] else ""),
                d["records"],
                dropped,
                d["duplicates_removed"],
                d["train"],
                d["val"],
                d["test"],
                d["train_tokens"],
                f"{d['mean_tokens']:.1f}",
                d["max_tokens"],
            )
        )
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    lines = [
        "  ".join(str(v).ljust(w) if i < 2 else str(v).rjust(w) for i, (v, w) in enumerate(zip(row, widths)))
        for row in table
    ]
    lines.append("(* format detected from the fields; tokens, mean and max: training examples)")
    for d in summary["datasets"]:
        lines.append("")
        lines.append(f"== {d['name']} ({d['path']})")
        if d["dropped"]:
            lines.append("dropped: " + ", ".join(f"{k} {v}" for k, v in sorted(d["dropped"].items())))
        if d.get("messages"):
            m = d["messages"]
            removed = "".join(f" + {n} {reason}" for reason, n in m["removed"].items())
            lines.append(f"messages: {m['read']} read = {m['kept']} kept{removed}; threads built: {m['threads']}")
        for problem in d["bad_records"]:
            lines.append(f"bad record: {problem}")
        if d["weight"] is not None or len(d["mixed"]) > 1:
            lines.append(
                "in the mix: "
                + ", ".join(f"{stage} {n}" for stage, n in d["mixed"].items())
                + (f" (repeated: {d['repeated']})" if d["repeated"] else "")
            )
        for number, example in enumerate(d["examples"], start=1):
            lines.append(f"-- example {number} (trained on: {OPEN}…{CLOSE})")
            lines.append(example)
    lines.append("")
    stages = ", ".join(f"{s['name']} {s['rows']}" for s in summary["stages"])
    lines.append(f"training rows: {summary['train_rows']} ({stages}); validation rows: {summary['val_rows']}")
    for key, prefix in (("packing", ""), ("val_packing", "validation ")):
        if key in summary:
            p = summary[key]
            counts = {name: p[name] for name in ("examples", "rows", "tokens", "slots")}
            report = PackingReport(**counts, split=p["mode"] == "split")
            lines.append(f"{prefix}{report.describe()} ({p['tokens']} tokens / {p['slots']} slots)")
    return "\n".join(lines)


def preview_records(data: TokenizedData, tokenizer, n: int, ids: bool) -> list[dict[str, Any]]:
    """The first n training rows in training-mix order, as the model sees them."""
    names = [r.name for r in data.reports]
    records = []
    streamed = getattr(data, "streaming", False)
    for row in data.first_rows(n) if streamed else data.train.select(range(min(n, len(data.train)))):
        parts = segments(row, tokenizer)
        record = {
            "dataset": names[row["dataset"]] if row.get("dataset") is not None else None,
            "text": marked_text(parts),
            "segments": parts,
        }
        if ids:
            record["input_ids"] = row["input_ids"]
            record["labels"] = row["labels"]
            if row.get("position_ids") is not None:
                record["position_ids"] = row["position_ids"]
        records.append(record)
    return records


def preview_text(records: list[dict[str, Any]]) -> str:
    lines = []
    for number, record in enumerate(records, start=1):
        lines.append(f"== example {number} ({record['dataset'] or 'packed row'}; trained on: {OPEN}…{CLOSE})")
        lines.append(record["text"])
        if "input_ids" in record:
            lines.append("input_ids: " + " ".join(map(str, record["input_ids"])))
            lines.append("labels:    " + " ".join(map(str, record["labels"])))
    return "\n".join(lines)
