"""`lmforge demo --pretrain`: no download. Generate a corpus of three sources of different
styles (demo/corpus.py: arithmetic prose, Python functions, key-value records), train a
byte-level BPE tokenizer on it with `lmforge tokenizer train`'s function, and pretrain a
fresh `palm-tiny` model on it with lmforge's own `train` pipeline: a streaming mixture
(data.streaming) in two stages with different mixtures, each source holding out documents
for validation. Prints each source's validation perplexity before training, after stage 1
and after stage 2, and the token accounting (tokens drawn, share against the target,
epochs over each source).

    DEMO_DIR/
      demo.json   written first: size and seed (marks the directory as a demo's)
      inputs/     arithmetic.jsonl, code.jsonl, records.jsonl, tokenizer/, demo.yaml
      run/        the training run (metrics.jsonl, loss_curve.png, val_perplexity.png,
                  model/, run.json) and summary.md

--overwrite and --resume as for `lmforge demo` (demo/pipeline.py prepare_demo_dir).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from lmforge.config.loader import RawConfig
from lmforge.demo.corpus import SOURCES, write_corpus
from lmforge.demo.pipeline import _train, demo_inputs, open_demo
from lmforge.errors import LmforgeError
from lmforge.report.plots import read_metrics
from lmforge.tokenizer_train import TokenizerRequest, train_tokenizer
from lmforge.train.data_builders import streaming_data


@dataclass(frozen=True)
class PretrainSize:
    documents: int
    """Documents per source."""
    vocab_size: int
    max_length: int
    global_batch_size: int
    stage_steps: tuple[int, int]
    """Optimizer steps of stage 1 and stage 2."""
    val_documents: int
    """Held-out documents scored per source (max_val_set)."""
    lr: float = 3e-3


SIZES = {
    # a few minutes on a 2-core CPU (README "lmforge demo --pretrain" gives the measured time)
    "full": PretrainSize(
        documents=4000, vocab_size=1024, max_length=256, global_batch_size=8, stage_steps=(250, 250), val_documents=32
    ),
    # seconds, for the test suite: the same pipeline, far too short to learn much
    "smoke": PretrainSize(
        documents=150, vocab_size=400, max_length=64, global_batch_size=4, stage_steps=(3, 3), val_documents=8
    ),
}

VAL_SPLIT = 0.05
PRIORITIES = {"arithmetic": "high", "code": "medium", "records": "low"}
"""Each source's priority (weights 4:2:1): the mix the sources would train in without stages."""
STAGES = [
    # stage 1: prose and records only; stage 2 brings code in, at half the learning rate
    {"name": "prose", "weights": {"arithmetic": 0.7, "records": 0.3}, "lr_scale": 1.0},
    {"name": "code", "weights": {"arithmetic": 0.3, "code": 0.5, "records": 0.2}, "lr_scale": 0.5},
]


def pretrain_config(demo_dir: Path, size: PretrainSize, seed: int) -> RawConfig:
    inputs = demo_dir / "inputs"
    first, second = size.stage_steps
    stages = [{**STAGES[0], "steps": first}, STAGES[1]]
    return RawConfig(
        data={
            "run": {"output_dir": str(demo_dir / "run"), "seed": seed},
            "model": {"preset": "palm-tiny", "tokenizer": str(inputs / "tokenizer")},
            "data": {
                "streaming": True,
                "max_length": size.max_length,
                "datasets": [
                    {
                        "path": str(inputs / f"{name}.jsonl"),
                        "name": name,
                        "format": "text",
                        "priority": PRIORITIES[name],
                        "val_split": VAL_SPLIT,
                        "max_val_set": size.val_documents,
                    }
                    for name in SOURCES
                ],
                "stages": stages,
            },
            "train": {
                "objective": {"name": "ce"},
                "optimizer": {"name": "adamw", "lr": size.lr, "weight_decay": 0.1, "betas": [0.9, 0.95]},
                "schedule": {"name": "cosine", "warmup_steps": max(1, (first + second) // 30), "min_lr_ratio": 0.1},
                "max_grad_norm": 1.0,
                "global_batch_size": size.global_batch_size,
                "micro_batch_size": size.global_batch_size,
                "max_steps": first + second,
                # an evaluation at the end of stage 1, so its effect shows per source
                "eval_every": first // 2 if first % 2 == 0 else first,
                "save_every": first,
                "logging_steps": max(1, (first + second) // 30),
                "precision": "fp32",
            },
        }
    )


def _prepare_inputs(demo_dir: Path, size: PretrainSize, seed: int) -> None:
    inputs = demo_dir / "inputs"
    inputs.mkdir(parents=True)
    paths = write_corpus(inputs, size.documents, seed)
    train_tokenizer(
        TokenizerRequest([str(p) for p in paths.values()], size.vocab_size, inputs / "tokenizer", show_progress=True)
    )


def with_first_evaluation(config, tokenizer, prompt_format):
    """The streaming data, evaluated once before the first step too (the 'before' column)."""
    data = streaming_data(config, tokenizer, prompt_format)
    data.trainer_arguments = {**data.trainer_arguments, "eval_on_start": True}
    return data


def perplexities(run_dir: Path, stage_end: int) -> dict[str, dict[str, float]]:
    """Per source, validation perplexity before training (step 0), at the end of stage 1 and
    at the end (the last evaluation row)."""
    rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if "eval_loss" in r]
    if not rows:
        raise LmforgeError(f"{run_dir / 'metrics.jsonl'}: no validation rows; the run did not evaluate")
    points = {"before": rows[0], "after stage 1": next((r for r in rows if r["step"] == stage_end), None)}
    points["after stage 2"] = rows[-1]
    return {
        name: {label: row[f"eval/{name}/perplexity"] for label, row in points.items() if row is not None}
        for name in SOURCES
    }


def _tables(ppl: dict[str, dict[str, float]], mix: dict) -> tuple[Table, Table]:
    labels = list(next(iter(ppl.values())))
    perplexity = Table(title="validation perplexity per held-out source")
    perplexity.add_column("source")
    for label in labels:
        perplexity.add_column(label, justify="right")
    for name, values in ppl.items():
        perplexity.add_row(name, *(f"{values[label]:.2f}" for label in labels))
    accounting = Table(title="token accounting (the whole run)")
    for column in ("source", "tokens", "share", "target", "epochs"):
        accounting.add_column(column, justify="left" if column == "source" else "right")
    for name, row in mix["sources"].items():
        accounting.add_row(
            name, str(row["tokens"]), f"{row['share']:.1%}", f"{row['target']:.1%}", f"{row['epochs']:.2f}"
        )
    return perplexity, accounting


def _summary(size_name: str, ppl: dict, mix: dict, seconds: dict[str, float], train_runtime: float | None) -> str:
    labels = list(next(iter(ppl.values())))
    head = "| source | " + " | ".join(labels) + " |\n|---|" + "---|" * len(labels)
    rows = "\n".join(
        f"| {name} | " + " | ".join(f"{v[label]:.2f}" for label in labels) + " |" for name, v in ppl.items()
    )
    mix_rows = "\n".join(
        f"| {name} | {r['tokens']} | {r['share']:.1%} | {r['target']:.1%} | {r['epochs']:.2f} |"
        for name, r in mix["sources"].items()
    )
    runtime = f"{train_runtime:.0f} s" if train_runtime is not None else "?"
    return f"""# lmforge demo --pretrain ({size_name})

palm-tiny pretrained from scratch on three generated sources in two stages
({", ".join(f"{s['name']}: {s['weights']}" for s in STAGES)}).

Validation perplexity on each source's held-out documents:

{head}
{rows}

Token accounting:

| source | tokens | share | target | epochs |
|---|---|---|---|---|
{mix_rows}

Wall time: {seconds["total"]:.0f} s (corpus + tokenizer {seconds["prepare"]:.0f} s, training run
{seconds["train"]:.0f} s, of which the training loop {runtime}).

![validation perplexity](val_perplexity.png) ![loss curve](loss_curve.png)
"""


def run_pretrain_demo(
    output_dir: str | None = None, size: str = "full", seed: int = 0, overwrite: bool = False, resume: bool = False
) -> dict:
    spec = SIZES[size]
    # the marker's size names the pretraining demo, so `lmforge demo --resume` never mixes the two
    demo_dir, resuming, console, clock = open_demo(
        output_dir, "demo-pretrain", f"{size} --pretrain", seed, overwrite, resume
    )
    config = demo_inputs(demo_dir, lambda: _prepare_inputs(demo_dir, spec, seed), pretrain_config(demo_dir, spec, seed))
    clock["prepare"] = time.perf_counter()

    result = _train(config, resuming, with_first_evaluation)
    clock["train"] = time.perf_counter()
    ppl = perplexities(result.run_dir, spec.stage_steps[0])
    mix = result.metrics["data_mix"]
    seconds = {
        "prepare": clock["prepare"] - clock["start"],
        "train": clock["train"] - clock["prepare"],
        "total": clock["train"] - clock["start"],
    }
    train_runtime = result.metrics.get("train_runtime")
    (result.run_dir / "summary.md").write_text(_summary(size, ppl, mix, seconds, train_runtime), encoding="utf-8")
    for table in _tables(ppl, mix):
        console.print(table)
    console.print(
        f"wall time {seconds['total']:.0f} s (training loop {train_runtime or 0:.0f} s); summary: "
        f"{result.run_dir / 'summary.md'}; plots: {result.run_dir / 'val_perplexity.png'}, "
        f"{result.run_dir / 'loss_curve.png'}"
    )
    return {
        "perplexity": ppl,
        "data_mix": mix,
        "seconds": seconds,
        "train_runtime": train_runtime,
        "run_dir": str(result.run_dir),
        "config": json.loads(json.dumps(config.model_dump(mode="json"))),
    }
