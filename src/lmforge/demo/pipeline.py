"""`lmforge demo`: no download. Generate arithmetic word problems, train a small BPE
tokenizer and a tiny Llama on them with lmforge's own `train` pipeline, and report strict
exact-match accuracy of the generated final answer on held-out problems before and after,
scored by `lmforge eval`'s evaluator (the same number `lmforge eval MODEL --task TEST.jsonl
--max-new-tokens 96` reports as exact_match_strict).

    DEMO_DIR/
      demo.json written first: the size and seed (marks the directory as a demo's)
      inputs/   train.jsonl, test.jsonl, demo.yaml (the config used), init_model/
      run/      the training run (config.yaml, metrics.jsonl, loss_curve.png, model/),
                plus summary.md and test_predictions.jsonl (the evaluator's per-item samples)
      bootstrap/  with --bootstrap: the rounds (the SFT before them is shorter: bootstrap_sft_steps)

An existing --output-dir is an error unless `overwrite` (delete a demo directory there and
start again) or `resume` (continue one of the same size and seed: finished inputs,
training and bootstrap rounds are kept, an unfinished training or bootstrap resumes; the
scores are computed again).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from types import SimpleNamespace

from rich.console import Console
from rich.table import Table

from lmforge import rundir
from lmforge.config import Config, dump_config
from lmforge.config.loader import RawConfig, validate
from lmforge.data.formats import get_format
from lmforge.demo.arithmetic import Difficulty, make_splits
from lmforge.demo.tokenizer import train_bpe_tokenizer
from lmforge.errors import LmforgeError
from lmforge.eval.evaluate import EvalOptions, evaluate_task
from lmforge.eval.generate import load_model_dir
from lmforge.eval.tasks import load_task
from lmforge.models.loading import build_model
from lmforge.train.pipeline import run_training


@dataclass(frozen=True)
class DemoSize:
    """Settings found by a sweep on a 2-core CPU (hidden 128-256, 2-4 layers, problem
    difficulty, batch x steps): shallow models win because they get more steps in the
    budget, and operands up to 10 (results up to 30) are learnable in ~2 minutes."""

    n_train: int
    n_test: int
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    max_steps: int
    global_batch_size: int
    micro_batch_size: int
    lr: float
    bootstrap_sft_steps: int | None = None
    """SFT steps with --bootstrap (None: max_steps): a shorter SFT leaves the bootstrap room
    to improve (full: ~40% on a validation split of held-out problems, experiments/bootstrap.py)."""
    bootstrap_questions: int = 256
    """Training questions sampled each round (the first of train.jsonl)."""
    bootstrap_rounds: int = 2
    bootstrap_samples: int = 4


BOOTSTRAP_SFT_STEPS = 400
"""Calibrated on a validation split of held-out problems (another seed; experiments/bootstrap.py)."""

SIZES = {
    "full": DemoSize(
        n_train=20000,
        n_test=200,
        vocab_size=512,
        hidden_size=128,
        num_layers=2,
        num_heads=4,
        max_steps=1200,
        global_batch_size=32,
        micro_batch_size=32,
        lr=3e-3,
        bootstrap_sft_steps=BOOTSTRAP_SFT_STEPS,
        bootstrap_questions=1024,
        bootstrap_rounds=3,
    ),
    # seconds-long variant for the test suite: same pipeline, far too small to learn much
    "smoke": DemoSize(
        n_train=300,
        n_test=16,
        vocab_size=300,
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        max_steps=6,
        global_batch_size=16,
        micro_batch_size=8,
        lr=3e-3,
        bootstrap_questions=16,
        bootstrap_rounds=1,
    ),
}


DEMO_FILE = "demo.json"
DIFFICULTY = Difficulty(max_operand=10, max_value=30)
PROMPT_FORMAT = "remask"
MAX_NEW_TOKENS = 96
"""Generation limit when scoring held-out problems (a demo rationale is ~40 tokens)."""


def sft_steps(size: DemoSize, bootstrap: bool) -> int:
    return size.bootstrap_sft_steps if bootstrap and size.bootstrap_sft_steps else size.max_steps


def demo_config(demo_dir: Path, size: DemoSize, seed: int, bootstrap: bool = False) -> RawConfig:
    """The SFT run's config; with `bootstrap` it trains bootstrap_sft_steps."""
    inputs = demo_dir / "inputs"
    steps = sft_steps(size, bootstrap)
    return RawConfig(
        data={
            "run": {"output_dir": str(demo_dir / "run"), "seed": seed},
            "model": {"name_or_path": str(inputs / "init_model")},
            "data": {
                "datasets": [{"path": str(inputs / "train.jsonl"), "format": "cot", "val_split": 0.02}],
                "prompt_format": PROMPT_FORMAT,
                "max_length": 128,
                "overlength": "drop",
            },
            "train": {
                "objective": {"name": "ce"},
                "optimizer": {"name": "adamw", "lr": size.lr, "weight_decay": 0.01, "betas": [0.9, 0.98]},
                "schedule": {"name": "cosine", "warmup_steps": min(40, steps // 4), "min_lr_ratio": 0.1},
                "global_batch_size": size.global_batch_size,
                "micro_batch_size": size.micro_batch_size,
                "max_steps": steps,
                "eval_every": max(1, steps // 4),
                # four checkpoints, so `lmforge sweep` works on a demo run
                "save_every": max(1, steps // 4),
                "save_total_limit": 4,
                "logging_steps": max(1, steps // 30),
            },
        }
    )


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def _prepare_inputs(demo_dir: Path, size: DemoSize, seed: int) -> None:
    """Problems, tokenizer and the untrained model, saved like any user's inputs."""
    inputs = demo_dir / "inputs"
    inputs.mkdir(parents=True)
    train, test = make_splits(size.n_train, size.n_test, seed, DIFFICULTY)
    _write_jsonl(inputs / "train.jsonl", train)
    _write_jsonl(inputs / "test.jsonl", test)
    remask = get_format(PROMPT_FORMAT)
    texts = (f"{p['question']}\n{p['rationale']}\n{p['answer']}" for p in train)
    tokenizer = train_bpe_tokenizer(texts, size.vocab_size, extra_special_tokens=remask.special_tokens(None))
    model = build_model(
        "llama",
        {
            "hidden_size": size.hidden_size,
            "num_layers": size.num_layers,
            "num_heads": size.num_heads,
            "max_position_embeddings": 256,
            "intermediate_size": 4 * size.hidden_size,
        },
        tokenizer,
        seed=seed,
    )
    model.save_pretrained(inputs / "init_model")
    tokenizer.save_pretrained(inputs / "init_model")


@dataclass(frozen=True)
class Score:
    """Strict exact match on the held-out file: `accuracy` is evaluate_task's
    exact_match_strict, `samples` its per-item samples (gold, strict, correct_strict, output, ...)."""

    accuracy: float
    correct: int
    total: int
    samples: list[dict]


def held_out_accuracy(model_dir: Path, test_path: Path) -> Score:
    """Held-out accuracy through `lmforge eval`'s evaluator: 0 shots, the model's own prompt
    format (from its lmforge.json)."""
    model, tokenizer, meta = load_model_dir(model_dir)
    if not meta.get("prompt_format"):
        # the untrained starting model has no lmforge.json yet: prompt it as it will be trained
        # (`lmforge eval` would prompt such a directory in the plain style)
        meta = {"prompt_format": PROMPT_FORMAT, "cot": True}
    task = load_task(str(test_path))
    result = evaluate_task(
        model, tokenizer, meta, task, EvalOptions(max_new_tokens=MAX_NEW_TOKENS, batch_size=64, show_progress=True)
    )
    correct = sum(bool(s["correct_strict"]) for s in result.samples)
    return Score(result.metrics["exact_match_strict"], correct, len(result.samples), result.samples)


def _summary(size_name: str, before: Score, after: Score, seconds: dict[str, float], metrics: dict) -> str:
    rows = "\n".join(
        f"| {s['gold']} | `{(s['strict'] or '').strip()}` | {'yes' if s['correct_strict'] else 'no'} |"
        for s in after.samples[:8]
    )
    return f"""# lmforge demo ({size_name})

Strict exact match of the generated final answer on {after.total} held-out arithmetic word problems:

| model | accuracy |
|---|---|
| untrained | {before.accuracy:.1%} ({before.correct}/{before.total}) |
| after SFT | {after.accuracy:.1%} ({after.correct}/{after.total}) |

Validation loss {metrics.get("eval_loss", float("nan")):.4f} (perplexity {metrics.get("eval_perplexity", float("nan")):.3f}).

Wall time: {seconds["total"]:.0f} s (data + tokenizer + model {seconds["prepare"]:.0f} s, evaluation before
{seconds["before"]:.0f} s, training {seconds["train"]:.0f} s, evaluation after {seconds["after"]:.0f} s).

![loss curve](loss_curve.png)

First test problems after training:

| gold | predicted | correct |
|---|---|---|
{rows}
"""


def prepare_demo_dir(demo_dir: Path, size: str, seed: int, overwrite: bool, resume: bool) -> bool:
    """Ready `demo_dir`; True when it continues an earlier demo there. A directory without
    demo.json (or an older demo's inputs/demo.yaml) is never deleted."""
    rundir.check_resume_overwrite(resume, overwrite)
    marker = demo_dir / DEMO_FILE
    if resume:
        if not marker.is_file():
            raise LmforgeError(f"{demo_dir}: --resume given but there is no demo here ({DEMO_FILE}) to continue")
        earlier = json.loads(marker.read_text(encoding="utf-8"))
        if (earlier.get("size"), earlier.get("seed")) != (size, seed):
            raise LmforgeError(
                f"{demo_dir}: the demo there ran with --size {earlier.get('size')} --seed "
                f"{earlier.get('seed')}; --resume continues it only with the same (or pass --overwrite "
                "to start again)"
            )
        return True
    if not rundir.is_empty_or_missing(demo_dir):
        ours = marker.is_file() or (demo_dir / "inputs" / "demo.yaml").is_file()
        if not ours:
            raise rundir.foreign(demo_dir, "demo", "--output-dir")
        if not overwrite:
            raise rundir.occupied(
                demo_dir,
                "a demo",
                None if marker.is_file() else f"--resume needs {DEMO_FILE}, which an older lmforge did not write",
            )
        shutil.rmtree(demo_dir)
    demo_dir.mkdir(parents=True, exist_ok=True)
    rundir.write_json_atomic(marker, {"size": size, "seed": seed})
    return False


def _train(config, resuming: bool, data_builder=None):
    """The demo's training run (`data_builder`: run_training's, default by the config); when
    resuming, a finished run is kept, an unfinished one continues from its latest
    checkpoint, anything else there starts again."""
    run_dir = config.output_path
    if resuming:
        existing = rundir.read_run(run_dir)
        if existing is not None and existing.get("status") == "finished":
            return SimpleNamespace(
                run_dir=run_dir, model_dir=run_dir / rundir.MODEL_DIR, metrics=existing.get("final_metrics") or {}
            )
        if existing is not None and rundir.latest_checkpoint(run_dir) is not None:
            return run_training(config, resume=True, data_builder=data_builder).require_finished()
        if run_dir.exists():
            shutil.rmtree(run_dir)  # inside our own demo directory
    return run_training(config, data_builder=data_builder).require_finished()


def open_demo(
    output_dir: str | None, name: str, size: str, seed: int, overwrite: bool, resume: bool
) -> tuple[Path, bool, Console, dict[str, float]]:
    """The demo directory (default runs/<name>-<timestamp>) made ready: (directory, whether
    it resumes, the console, the clock started). `size` is the marker's size label."""
    if resume and output_dir is None:
        raise LmforgeError("--resume needs --output-dir: the demo directory to continue")
    demo_dir = Path(output_dir or f"runs/{name}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}")
    resuming = prepare_demo_dir(demo_dir, size, seed, overwrite, resume)
    console = Console()
    clock = {"start": time.perf_counter()}
    title = "lmforge " + name.replace("-", " --", 1)  # demo-pretrain -> lmforge demo --pretrain
    console.print(f"[bold]{title}[/bold] -> {demo_dir}" + (" (resumed)" if resuming else ""))
    return demo_dir, resuming, console, clock


def demo_inputs(demo_dir: Path, prepare: Callable[[], None], raw: RawConfig) -> Config:
    """The demo's generated inputs (made again unless demo.yaml, written last, says they are
    complete) and its validated config."""
    if not (demo_dir / "inputs" / "demo.yaml").is_file():
        shutil.rmtree(demo_dir / "inputs", ignore_errors=True)
        prepare()
    config = validate(raw)
    (demo_dir / "inputs" / "demo.yaml").write_text(dump_config(config), encoding="utf-8")
    return config


def demo_sft_config(demo_dir: Path, spec: DemoSize, seed: int, bootstrap: bool = False) -> Config:
    """The demo's inputs (generated unless complete) and its SFT config (shorter with `bootstrap`)."""
    return demo_inputs(
        demo_dir, lambda: _prepare_inputs(demo_dir, spec, seed), demo_config(demo_dir, spec, seed, bootstrap)
    )


def sft_start_model(demo_dir: Path, spec: DemoSize, seed: int, resuming: bool = False) -> Path:
    """`lmforge demo --bootstrap`'s SFT model (trained unless finished there): the starting
    model of its bootstrap, and of experiments/bootstrap.py's methods."""
    return _train(demo_sft_config(demo_dir, spec, seed, bootstrap=True), resuming).model_dir


def run_demo(
    output_dir: str | None = None,
    size: str = "full",
    seed: int = 0,
    bootstrap: bool = False,
    overwrite: bool = False,
    resume: bool = False,
) -> dict:
    spec = SIZES[size]
    # the marker's size names a bootstrap demo (its SFT is shorter), so --resume never mixes the two
    label = f"{size} --bootstrap" if bootstrap else size
    demo_dir, resuming, console, clock = open_demo(output_dir, "demo", label, seed, overwrite, resume)
    config = demo_sft_config(demo_dir, spec, seed, bootstrap)
    clock["prepare"] = time.perf_counter()

    test_path = demo_dir / "inputs" / "test.jsonl"
    before = held_out_accuracy(demo_dir / "inputs" / "init_model", test_path)
    console.print(f"untrained model: strict exact match {before.accuracy:.1%} ({before.correct}/{before.total})")
    clock["before"] = time.perf_counter()

    result = _train(config, resuming)
    clock["train"] = time.perf_counter()

    after = held_out_accuracy(result.model_dir, test_path)
    clock["after"] = time.perf_counter()
    console.print(f"after SFT: strict exact match {after.accuracy:.1%} ({after.correct}/{after.total})")

    seconds = {
        "prepare": clock["prepare"] - clock["start"],
        "before": clock["before"] - clock["prepare"],
        "train": clock["train"] - clock["before"],
        "after": clock["after"] - clock["train"],
        "total": clock["after"] - clock["start"],
    }
    (result.run_dir / "summary.md").write_text(_summary(size, before, after, seconds, result.metrics), encoding="utf-8")
    _write_jsonl(result.run_dir / "test_predictions.jsonl", after.samples)

    rounds = []
    if bootstrap:
        from lmforge.demo.bootstrap_rounds import bootstrap_table, run_bootstrap_rounds

        rounds = run_bootstrap_rounds(demo_dir, result.model_dir, spec, seed, test_path, console, resuming)

    table = Table(title=f"strict exact match on {after.total} held-out problems")
    table.add_column("model")
    table.add_column("accuracy", justify="right")
    table.add_row("untrained", f"{before.accuracy:.1%}")
    table.add_row(f"after SFT ({sft_steps(spec, bootstrap)} steps)", f"{after.accuracy:.1%}")
    console.print(table)
    if bootstrap:
        console.print(bootstrap_table(after, rounds))
    total = time.perf_counter() - clock["start"]
    console.print(
        f"wall time {total:.0f} s; summary: {result.run_dir / 'summary.md'}; "
        f"loss curve: {result.run_dir / 'loss_curve.png'}"
    )
    console.print(
        f'try it: lmforge generate {result.model_dir} --prompt "Tom has 3 apples. He buys 4 more. '
        'How many apples does Tom have now?"'
    )
    return {
        "before": before.accuracy,
        "after": after.accuracy,
        "rounds": rounds,
        "seconds": seconds,
        "run_dir": str(result.run_dir),
    }
