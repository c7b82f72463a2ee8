"""`lmforge demo --bootstrap`'s rounds: Memphis-CoT's loop (seed 000) scaled down to the demo,
with the finetuning method selectable (rank, dpo, or ce = rejection sampling) for
experiments/bootstrap.py, and the per-round table the demo prints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from rich.table import Table

from lmforge.config.loader import RawConfig, validate
from lmforge.demo.pipeline import PROMPT_FORMAT, DemoSize, Score, held_out_accuracy


BOOTSTRAP_METHODS = {
    "rank": {"objective": {"name": "rank", "weight": 5.0}, "lr": 1e-5},
    "dpo": {"objective": {"name": "dpo", "beta": 0.5}, "lr": 1e-5},
    "ce": {"objective": {"name": "ce"}, "lr": 3e-5},
}
"""How a round finetunes: `rank` (seed 000: CE on the gold response + 5 x PRO over (correct,
incorrect) pairs), `dpo` (the same pairs) or `ce` (rejection-sampling SFT on the unique
correct samples), each at the learning rate chosen for it on a validation split
(experiments/bootstrap.py)."""


def bootstrap_config(
    demo_dir: Path,
    model_dir: Path,
    size: DemoSize,
    seed: int,
    method: str = "rank",
    output_dir: Path | None = None,
    settings: dict | None = None,
) -> RawConfig:
    """Memphis-CoT's loop scaled down: the first `bootstrap_questions` training questions,
    `bootstrap_samples` samples each, one epoch of `method`'s finetuning per round
    (`settings`: its objective and lr, default BOOTSTRAP_METHODS[method])."""
    settings = settings or BOOTSTRAP_METHODS[method]
    return RawConfig(
        data={
            "run": {"output_dir": str(output_dir or demo_dir / "bootstrap"), "seed": seed},
            "model": {"name_or_path": str(model_dir)},
            "data": {
                "datasets": [
                    {"path": str(demo_dir / "inputs" / "train.jsonl"), "max_train_set": size.bootstrap_questions}
                ],
                "prompt_format": PROMPT_FORMAT,
                "max_length": 128,
            },
            "train": {
                "objective": settings["objective"],
                "optimizer": {"name": "adamw", "lr": settings["lr"], "weight_decay": 0.0},
                "schedule": {"name": "cosine", "warmup_ratio": 0.1},
                "global_batch_size": 16,
                "micro_batch_size": 16,
                "epochs": 1,
                "logging_steps": 5,
            },
            "bootstrap": {
                "rounds": size.bootstrap_rounds,
                "samples": size.bootstrap_samples,
                "temperature": 0.7,
                "top_p": 0.9,
                "max_new_tokens": 48,
                "backend": "transformers",
                "generation_batch_size": 128,
            },
        }
    )


def round_row(round_index: int, accuracy: Score, stats: dict) -> dict:
    """One round of the per-round table: held-out accuracy after the round; pass@1, pass@N,
    pairs (or unique correct samples) of the round's samples, drawn from the model entering
    the round; the round's optimizer steps."""
    pass_n = next(k for k in stats if k.startswith("pass@") and k != "pass@1")
    kind = next(k for k in ("pairs", "groups", "unique_correct") if k in stats)
    return {
        "round": round_index,
        "accuracy": accuracy.accuracy,
        "correct": accuracy.correct,
        "total": accuracy.total,
        "pass@1": stats["pass@1"],
        "pass@N": stats[pass_n],
        "samples": int(pass_n.split("@")[1]),
        "pairs": stats[kind],
        "kind": kind,
        "optimizer_steps": stats.get("optimizer_steps", 0),
    }


def run_bootstrap_rounds(
    demo_dir: Path,
    model_dir: Path,
    spec: DemoSize,
    seed: int,
    score_path: Path,
    console,
    resuming: bool = False,
    method: str = "rank",
    root: Path | None = None,
    settings: dict | None = None,
) -> list[dict]:
    """The demo's bootstrap rounds from `model_dir` into `root` (default DEMO_DIR/bootstrap),
    each round's model scored on `score_path`: one round_row per round. When `resuming`,
    finished rounds are scored again and an unfinished bootstrap continues."""
    from lmforge.bootstrap.loop import STATE_FILE, run_bootstrap

    rounds = []
    root = root or demo_dir / "bootstrap"

    def report(round_index: int, model: Path, stats: dict) -> None:
        row = round_row(round_index, held_out_accuracy(model, score_path), stats)
        rounds.append(row)
        built = "correct samples" if "unique_correct" in stats else "pairs"
        console.print(
            f"after bootstrap round {round_index}: strict exact match {row['accuracy']:.1%} "
            f"({row['pairs']} {built} from {stats['questions']} questions, {row['optimizer_steps']} optimizer "
            f"steps; the round's samples: pass@1 {row['pass@1']:.1%}, pass@{row['samples']} {row['pass@N']:.1%})"
        )

    state = json.loads((root / STATE_FILE).read_text(encoding="utf-8")) if (root / STATE_FILE).is_file() else None
    continuing = resuming and state is not None
    if resuming and state is None and root.exists():
        shutil.rmtree(root)  # killed before its first record: inside our own directory
    if continuing:  # rounds finished earlier: scored again, in order
        for stats_path in sorted(root.glob("round-*/stats.json"), key=lambda p: int(p.parent.name.split("-")[1])):
            stats = json.loads(stats_path.read_text(encoding="utf-8"))
            report(stats["round"], Path(stats["model_dir"]), stats)
        if state.get("status") == "finished":
            return rounds
    config = validate(bootstrap_config(demo_dir, model_dir, spec, seed, method, root, settings))
    run_bootstrap(config, on_round_end=report, resume=continuing)
    return rounds


def bootstrap_table(start: Score, rounds: list[dict]) -> Table:
    """Per round: held-out accuracy after it, and its samples' pass@1 / pass@N on the training
    questions, pairs and optimizer steps."""
    n = rounds[0]["samples"] if rounds else "N"
    built = {"unique_correct": "correct", "groups": "groups"}.get(rounds[0]["kind"], "pairs") if rounds else "pairs"
    table = Table(
        title=f"bootstrap rounds: strict exact match on {start.total} held-out problems after each round; "
        f"pass@1 / pass@{n} of the round's samples on its training questions; optimizer steps"
    )
    for name in ("round", "held-out", "train pass@1", f"train pass@{n}", built, "steps"):
        table.add_column(name, justify="right")
    table.add_row("0 (SFT)", f"{start.accuracy:.1%}", "", "", "", "")
    for row in rounds:
        table.add_row(
            str(row["round"]),
            f"{row['accuracy']:.1%}",
            f"{row['pass@1']:.1%}",
            f"{row['pass@N']:.1%}",
            str(row["pairs"]),
            str(row["optimizer_steps"]),
        )
    return table
