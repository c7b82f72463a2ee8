"""Does each verified bootstrap round add accuracy? (issue 16, item 2: seed 000's claim)

One command, on the 2-core CPU development machine:

    .venv/bin/python experiments/bootstrap.py [--out DIR] [--seeds 3] [--threads 1] [--methods rank,dpo,ce,gold]

1. The starting model is `lmforge demo --bootstrap`'s SFT model (demo seed 0; a shorter SFT,
   demo/pipeline.py BOOTSTRAP_SFT_STEPS, so that it starts in the 30-60% range), trained
   once into OUT/demo by the demo's own function (sft_start_model).
2. For each method and each seed 0..S-1, the demo's bootstrap (run_bootstrap_rounds, the
   same config as `lmforge demo --bootstrap`: the first 1024 training questions, 4
   samples each, 3 rounds, one epoch per round, batch 16) into
   OUT/<split>/<method>-lr<LR>[-beta<B>]-seed<s>:
     rank  CE on the gold response + 5 x PRO over (correct, incorrect) pairs (seed 000)
     dpo   DPO on the same pairs (reference: the round's starting model)
     ce    rejection-sampling SFT on the unique correct samples (the sampling control)
   and, not a bootstrap (gold_rounds): per round, from the previous round's model,
     gold  one epoch of plain CE (`lmforge train`'s ce objective, run_training) on the GOLD
           responses (the dataset's rationale + answer, the demo SFT's cot format) of the
           same first 1024 training questions, batch 16 (64 optimizer steps a round), the
           rounds' optimizer and schedule, no generation: the control for "more training"
   The seed sets the sampling, the pairing and the training order (gold: only the data
   order, run seed seed * 1009 + round); the starting model is the same for all. Every
   round's model is scored by strict exact match (lmforge eval's evaluator) on the demo's
   200 test problems.
3. Writes results.json, table.md (mean ± sd over seeds per method and round; round 0 is the
   starting model) and accuracy.png into --results (default experiments/results/bootstrap).
   An existing results.json there of the same split and settings keeps the methods not
   given to --methods (so `--methods gold` adds gold's runs to the others'); a (method,
   seed) run whose scores.json exists under OUT is read, not run again.

Nothing is chosen on the test split. `--split validation` scores on 200 other held-out
problems (drawn with VALIDATION_SEED, none in train or test) instead and writes its results
under OUT/validation only. Every choice below was made on validation numbers:

- SFT steps 400 (demo/pipeline.py BOOTSTRAP_SFT_STEPS; the plain demo trains 1200): the
  demo's SFT at 100 / 150 / 200 / 300 / 400 / 500 steps scored 11.7 / 13.3 / 17.3 / 22.3 /
  45.7 / 54.0% on 300 validation problems of this draw (the first 200 are this script's
  split; measured with the demo's functions in a one-off loop, not by this script). 400 is
  the middle of the 30-60% range the issue asks for: room to improve.
- 1024 questions a round, 4 samples, temperature 0.7, top_p 0.9, 48 new tokens, batch 16:
  at 400 steps this gives ~530 (correct, incorrect) pairs (34 optimizer steps) and ~770
  unique correct samples (48 steps) a round, about 25 s a round on one thread.
- Learning rate per method and DPO's beta (demo/bootstrap_rounds.py BOOTSTRAP_METHODS): one round
  from the starting model (45.5% on validation), seed 0, `--split validation --rounds 1
  --seeds 1 --lr METHOD=LR [--dpo-beta B]`, validation strict exact match after the round:

      lr        3e-6   1e-5   3e-5   1e-4   3e-4   1e-3
      rank      49.5   51.5   41.5   34.5   30.0   21.0
      dpo b0.1  49.0   50.0   36.0   24.5   13.5    0.0
      dpo b0.5     -   50.5   42.0      -      -      -
      ce           -   51.5   52.0   49.0   44.0   34.5

      gold      52.0   54.5   55.0   53.0   50.5   40.5

  Chosen (best per method): rank 1e-5, dpo 1e-5 with beta 0.5, ce 3e-5, gold 3e-5 (gold's
  row: `--methods gold --lr gold=LR`, added later, same procedure). One round, one seed and
  200 problems (one problem = 0.5 points) make neighbouring values ties; the clear finding
  is that both pairwise methods collapse at learning rates rejection sampling tolerates.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = ROOT / "experiments" / "results" / "bootstrap"
METHODS = ("rank", "dpo", "ce", "gold")
TITLES = {
    "rank": "CE + PRO (rank)",
    "dpo": "DPO",
    "ce": "rejection-sampling SFT (ce)",
    "gold": "SFT on gold answers (gold, no generation)",
}
GOLD = {"objective": {"name": "ce"}, "lr": 3e-5}
"""The `gold` control's finetuning (lr chosen on validation, see the docstring)."""
DEMO_SEED = 0
VALIDATION_SEED = 7_000_001
"""Draws the validation problems (the test split uses demo seed + 1_000_003)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/experiments/bootstrap", help="working directory (models, rounds)")
    parser.add_argument("--results", default=None, help=f"small result files (default {DEFAULT_RESULTS})")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help="comma-separated, of rank, dpo, ce, gold; the other methods' runs in an existing results.json "
        "of the same split and settings are kept (merged)",
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds per run (default: the demo's, 3)")
    parser.add_argument(
        "--lr", action="append", default=[], metavar="METHOD=LR", help="override a method's learning rate"
    )
    parser.add_argument("--dpo-beta", type=float, default=None, help="override DPO's beta")
    parser.add_argument("--split", choices=["test", "validation"], default="test", help="what each round is scored on")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        parser.error(f"--methods: unknown {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    lrs = {}
    for item in args.lr:
        method, _, value = item.partition("=")
        if method not in METHODS or not value:
            parser.error(f"--lr {item}: expected METHOD=LR with METHOD one of {', '.join(METHODS)}")
        lrs[method] = float(value)
    args.lr = lrs
    return args


def validation_split(demo_dir: Path, path: Path, n: int) -> Path:
    """`n` held-out problems drawn with VALIDATION_SEED, none in the demo's train or test split."""
    from lmforge.demo.arithmetic import make_held_out
    from lmforge.demo.pipeline import DIFFICULTY

    if not path.is_file():
        seen = {
            json.loads(line)["question"]
            for name in ("train.jsonl", "test.jsonl")
            for line in (demo_dir / "inputs" / name).read_text(encoding="utf-8").splitlines()
        }
        rows = make_held_out(n, VALIDATION_SEED, seen, DIFFICULTY)
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def mean_sd(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and sd over seeds; None for a number the method does not have (gold: no samples)."""
    if any(v is None for v in values):
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def gold_questions(demo_dir: Path, path: Path, n: int) -> Path:
    """The first `n` training records (question, rationale, answer): the questions every
    bootstrap round samples (bootstrap's load_questions takes the first n with an answer)."""
    if not path.is_file():
        rows = [json.loads(line) for line in (demo_dir / "inputs" / "train.jsonl").read_text("utf-8").splitlines()]
        rows = [r for r in rows if r.get("answer") not in (None, "")][:n]
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def gold_config(model_dir: Path, questions: Path, train_dir: Path, seed: int, lr: float):
    """One epoch of plain CE (lmforge train's `ce`) on the gold responses (rationale + answer,
    the demo SFT's `cot` format and prompt format), with the bootstrap rounds' optimizer,
    schedule and batch; nothing held out."""
    from lmforge.config.loader import RawConfig, validate
    from lmforge.demo.pipeline import PROMPT_FORMAT

    return validate(
        RawConfig(
            data={
                "run": {"output_dir": str(train_dir), "seed": seed},
                "model": {"name_or_path": str(model_dir)},
                "data": {
                    "datasets": [{"path": str(questions), "format": "cot", "val_split": 0.0}],
                    "prompt_format": PROMPT_FORMAT,
                    "max_length": 128,
                },
                "train": {
                    "objective": GOLD["objective"],
                    "optimizer": {"name": "adamw", "lr": lr, "weight_decay": 0.0},
                    "schedule": {"name": "cosine", "warmup_ratio": 0.1},
                    "global_batch_size": 16,
                    "micro_batch_size": 16,
                    "epochs": 1,
                    "logging_steps": 5,
                },
            }
        )
    )


def gold_rounds(
    start_model: Path, questions: Path, rounds: int, seed: int, score_path: Path, root: Path, console, lr: float
):
    """The control: per round, from the previous round's model, one epoch of SFT on the gold
    responses of the same questions (no generation). The run seed of round r is seed * 1009
    + r (the bootstrap's generation seed): it sets only the data order. A finished round's
    model is kept."""
    from lmforge import rundir
    from lmforge.demo.pipeline import held_out_accuracy
    from lmforge.train.pipeline import run_training

    model_dir, rows = start_model, []
    for index in range(1, rounds + 1):
        train_dir = root / f"round-{index}" / "train"
        existing = rundir.read_run(train_dir)
        if not (existing and existing.get("status") == "finished"):
            config = gold_config(model_dir, questions, train_dir, seed * 1009 + index, lr)
            run_training(config, overwrite=train_dir.exists()).require_finished()
        model_dir = train_dir / rundir.MODEL_DIR
        score = held_out_accuracy(model_dir, score_path)
        row = {
            "round": index,
            "accuracy": score.accuracy,
            "correct": score.correct,
            "total": score.total,
            "pass@1": None,
            "pass@N": None,
            "samples": None,
            "pairs": None,
            "kind": "gold",
            "examples": sum(1 for _ in questions.open(encoding="utf-8")),
            "optimizer_steps": rundir.read_run(train_dir)["global_step"],
        }
        rows.append(row)
        console.print(
            f"after gold round {index}: strict exact match {row['accuracy']:.1%} "
            f"({row['examples']} gold responses, {row['optimizer_steps']} optimizer steps)"
        )
    return rows


def earlier_results(path: Path, split: str, start: dict, settings: dict) -> dict | None:
    """An existing results.json to merge into: the same split, starting score and settings."""
    if not path.is_file():
        return None
    earlier = json.loads(path.read_text(encoding="utf-8"))
    same = earlier.get("split") == split and earlier["start_model"]["accuracy"] == start["accuracy"]
    same = same and all(earlier["settings"].get(k) == settings[k] for k in ("questions", "samples", "rounds"))
    return earlier if same else None


def summarise(start: dict, runs: dict[str, dict[str, list[dict]]]) -> dict[str, list[dict]]:
    """Per method, per round: mean and sd over seeds of every per-round number."""
    summary = {}
    for method, seeds in runs.items():
        rows = [{"round": 0, "accuracy_mean": start["accuracy"], "accuracy_sd": 0.0, "seeds": len(seeds)}]
        for index in range(min(len(r) for r in seeds.values())):
            row = {"round": index + 1, "seeds": len(seeds)}
            for key in ("accuracy", "pass@1", "pass@N", "pairs", "optimizer_steps"):
                row[f"{key}_mean"], row[f"{key}_sd"] = mean_sd([r[index].get(key) for r in seeds.values()])
            rows.append(row)
        summary[method] = rows
    return summary


def _pm(mean: float | None, sd: float | None, percent: bool = True) -> str:
    if mean is None:
        return ""
    return f"{100 * mean:.1f} ± {100 * sd:.1f}" if percent else f"{mean:.0f} ± {sd:.0f}"


def markdown_table(start: dict, summary: dict[str, list[dict]], samples: int, total: int) -> str:
    lines = [
        f"| method | round | held-out strict EM % ({total} problems) | train pass@1 % | train pass@{samples} % "
        "| pairs (ce: correct samples) | optimizer steps |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, rows in summary.items():
        for row in rows:
            if row["round"] == 0:
                lines.append(f"| {TITLES[method]} | 0 (SFT start) | {100 * start['accuracy']:.1f} | | | | |")
                continue
            lines.append(
                f"| {TITLES[method]} | {row['round']} | {_pm(row['accuracy_mean'], row['accuracy_sd'])} "
                f"| {_pm(row['pass@1_mean'], row['pass@1_sd'])} | {_pm(row['pass@N_mean'], row['pass@N_sd'])} "
                f"| {_pm(row['pairs_mean'], row['pairs_sd'], False)} "
                f"| {_pm(row['optimizer_steps_mean'], row['optimizer_steps_sd'], False)} |"
            )
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, list[dict]], png: Path, split: str, seeds: int) -> Path:
    """Held-out accuracy per round (mean, sd band) and the round's samples' pass@1 on the
    training questions, one line per method."""
    from lmforge.report.plots import plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    for method, rows in summary.items():
        x = [r["round"] for r in rows]
        mean = [100 * r["accuracy_mean"] for r in rows]
        sd = [100 * r["accuracy_sd"] for r in rows]
        (line,) = left.plot(x, mean, marker="o", label=TITLES[method])
        left.fill_between(x, [m - s for m, s in zip(mean, sd)], [m + s for m, s in zip(mean, sd)], alpha=0.2)
        later = [r for r in rows[1:] if r["pass@1_mean"] is not None]
        if not later:  # gold: no samples
            continue
        p_mean = [100 * r["pass@1_mean"] for r in later]
        p_sd = [100 * r["pass@1_sd"] for r in later]
        right.plot([r["round"] for r in later], p_mean, marker="o", color=line.get_color(), label=TITLES[method])
        right.fill_between(
            [r["round"] for r in later],
            [m - s for m, s in zip(p_mean, p_sd)],
            [m + s for m, s in zip(p_mean, p_sd)],
            alpha=0.2,
            color=line.get_color(),
        )
    left.set_title(f"held-out strict exact match ({split} split)")
    left.set_xlabel("bootstrap round (0: SFT start)")
    left.set_ylabel("%")
    right.set_title("pass@1 of the round's samples (training questions)")
    right.set_xlabel("round (samples drawn by the model entering it)")
    right.set_ylabel("%")
    for ax in (left, right):
        ax.set_xticks(range(0, max(r["round"] for rows in summary.values() for r in rows) + 1))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"rounds from the SFT start, mean ± sd over {seeds} seeds (gold: no samples, left panel only)")
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return png


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from dataclasses import replace

    from rich.console import Console

    from lmforge.demo import bootstrap_rounds, pipeline
    from lmforge.demo.bootstrap_rounds import run_bootstrap_rounds
    from lmforge.demo.pipeline import SIZES, held_out_accuracy, prepare_demo_dir

    started = time.perf_counter()
    console = Console()
    out = Path(args.out)
    spec = SIZES["full"]
    if args.rounds:
        spec = replace(spec, bootstrap_rounds=args.rounds)
    methods = {**bootstrap_rounds.BOOTSTRAP_METHODS, "gold": GOLD}
    for method, lr in args.lr.items():  # calibration only: recorded in results.json
        methods[method] = {**methods[method], "lr": lr}
    if args.dpo_beta is not None:
        dpo = methods["dpo"]
        methods["dpo"] = {**dpo, "objective": {**dpo["objective"], "beta": args.dpo_beta}}

    demo_dir = out / "demo"
    resuming = prepare_demo_dir(
        demo_dir, "full --bootstrap", DEMO_SEED, overwrite=False, resume=(demo_dir / "demo.json").is_file()
    )
    start_model = pipeline.sft_start_model(demo_dir, spec, DEMO_SEED, resuming)
    clock = {"sft": time.perf_counter() - started}
    score_path = (
        demo_dir / "inputs" / "test.jsonl"
        if args.split == "test"
        else validation_split(demo_dir, out / "validation.jsonl", SIZES["full"].n_test)
    )
    start_score = held_out_accuracy(start_model, score_path)
    start = {"accuracy": start_score.accuracy, "correct": start_score.correct, "total": start_score.total}
    console.print(f"starting model ({start_model}): {args.split} strict exact match {start_score.accuracy:.1%}")

    runs: dict[str, dict[str, list[dict]]] = {}
    seconds: dict[str, float] = {}
    for method in args.methods:
        settings = methods[method]
        beta = f"-beta{settings['objective']['beta']:g}" if "beta" in settings["objective"] else ""
        for seed in range(args.seeds):
            name = f"{method}-lr{settings['lr']:g}{beta}-seed{seed}"
            root = out / args.split / name
            scores = root / "scores.json"
            if scores.is_file():  # finished by an earlier invocation
                record = json.loads(scores.read_text(encoding="utf-8"))
            else:
                t = time.perf_counter()
                console.print(f"[bold]{name}[/bold] -> {root}")
                if method == "gold":
                    questions = gold_questions(demo_dir, out / "gold-questions.jsonl", spec.bootstrap_questions)
                    rounds = gold_rounds(
                        start_model, questions, spec.bootstrap_rounds, seed, score_path, root, console, settings["lr"]
                    )
                else:
                    rounds = run_bootstrap_rounds(
                        demo_dir,
                        start_model,
                        spec,
                        seed,
                        score_path,
                        console,
                        resuming=(root / "bootstrap.json").is_file(),
                        method=method,
                        root=root,
                        settings=settings,
                    )
                record = {"rounds": rounds, "seconds": time.perf_counter() - t}
                scores.write_text(json.dumps(record, indent=2), encoding="utf-8")
            runs.setdefault(method, {})[str(seed)] = record["rounds"]
            seconds[name] = record["seconds"]

    total = time.perf_counter() - started
    results_dir = (
        Path(args.results) if args.results else (DEFAULT_RESULTS if args.split == "test" else out / "validation")
    )
    results_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "questions": spec.bootstrap_questions,
        "samples": spec.bootstrap_samples,
        "rounds": spec.bootstrap_rounds,
        "methods": {m: methods[m] for m in args.methods},
    }
    command = " ".join(["python", "experiments/bootstrap.py", *(sys.argv[1:] if argv is None else argv)])
    invocations = [{"command": command, "methods": args.methods, "seconds": total}]
    earlier = earlier_results(results_dir / "results.json", args.split, start, settings)
    if earlier:  # keep the methods not run now
        kept = [m for m in earlier["runs"] if m not in args.methods]
        runs = {**{m: earlier["runs"][m] for m in kept}, **runs}
        settings["methods"] = {**{m: earlier["settings"]["methods"][m] for m in kept}, **settings["methods"]}
        earlier_seconds = earlier["seconds"]["per_run"]
        seconds = {**{k: v for k, v in earlier_seconds.items() if k.split("-")[0] in kept}, **seconds}
        invocations = earlier.get("invocations") or [
            {"command": earlier["command"], "methods": list(earlier["runs"]), "seconds": earlier["seconds"]["total"]}
        ]
        invocations = [*invocations, {"command": command, "methods": args.methods, "seconds": total}]
    runs = {m: runs[m] for m in METHODS if m in runs}
    summary = summarise(start, runs)
    table = markdown_table(start, summary, spec.bootstrap_samples, start["total"])
    results = {
        "command": command,
        "invocations": invocations,
        "split": args.split,
        "threads": torch.get_num_threads(),
        "start_model": {"sft_steps": spec.bootstrap_sft_steps, **start},
        "settings": settings,
        "runs": runs,
        "summary": summary,
        "seconds": {
            "total": sum(i["seconds"] for i in invocations),
            "sft_and_start_score": clock["sft"],
            "per_run": seconds,
        },
    }
    (results_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (results_dir / "table.md").write_text(table, encoding="utf-8")
    plot(summary, results_dir / "accuracy.png", args.split, max(len(r) for r in runs.values()))
    console.print(table)
    console.print(f"wall time {total:.0f} s ({torch.get_num_threads()} threads); results in {results_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
