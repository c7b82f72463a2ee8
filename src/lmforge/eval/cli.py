"""The `eval` and `sweep` subcommands: argument parsing and one call each into the eval
package. Kept here so the top-level cli only registers them; imports stay lazy so
`lmforge --help` does not load torch."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lmforge.errors import LmforgeError


def _task_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--task",
        dest="tasks",
        action="append",
        required=True,
        metavar="NAME|FILE",
        help="a task data file (.jsonl/.json/...; its type is told from the fields) or a known "
        "name (gsm8k, arc_challenge, arc_easy, squad, mmlu, humaneval); repeatable",
    )
    parser.add_argument("--shots", type=int, default=0, help="few-shot examples per prompt (default 0)")
    parser.add_argument(
        "--fewshot-file",
        default=None,
        help="few-shot pool (default: the task file itself, leaving out the evaluated record)",
    )
    parser.add_argument(
        "--fewshot-seed",
        type=int,
        default=1234,
        help="seed of the few-shot draws (default 1234; also seeds sampled completions, --samples > 1)",
    )
    parser.add_argument("--seed", dest="renamed_seed", default=None, help=argparse.SUPPRESS)  # now --fewshot-seed
    parser.add_argument(
        "--fewshot-sampler",
        default=None,
        metavar="harness|per-item|first_n",
        help="how few-shot examples are drawn (default: the task's own, as its lm-evaluation-harness "
        "config: first_n for MMLU and BBH, harness otherwise): harness (the harness's seeded "
        "draws, so plain prompts are its prompts byte for byte and other formats show the same "
        "examples), per-item (each item seeded by (seed, index), independent of the other "
        "items), first_n (the pool's first N)",
    )
    parser.add_argument(
        "--format",
        default=None,
        metavar="NAME[,NAME,...]",
        help="prompt format: plain (harness style), remask, openassistant, chat_template "
        "(default: the model's own format, else plain); eval: several, comma-separated, "
        "evaluate under each and report accuracy per format and the spread (format robustness)",
    )
    parser.add_argument("--formats", dest="renamed_formats", default=None, help=argparse.SUPPRESS)  # now --format
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="generation limit per answer (default: the task's own, BBH and HumanEval 1024, else 256)",
    )
    parser.add_argument(
        "--allow-code-execution",
        action="store_true",
        help="let code tasks (HumanEval) run model-written programs, each in a sandboxed subprocess "
        "(time, memory and file limits, no network, a scratch directory); nothing runs without it",
    )
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="load a model whose weights are only pickled (.bin/.pt); a pickle can run code while it "
        "loads, so only for models you trust (default: safetensors only)",
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=1,
        help="code tasks: completions per problem (1: greedy; more: sampled, for pass@k)",
    )
    parser.add_argument(
        "--temperature", type=float, default=0.8, help="code tasks: sampling temperature when --samples > 1"
    )
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N records of each task")
    parser.add_argument("--langs", default=None, metavar="SRC-TGT", help="translation direction, e.g. de-en")


def add_eval_commands(commands) -> None:
    evaluate = commands.add_parser("eval", help="evaluate a model directory, run or checkpoint on tasks")
    evaluate.add_argument("model_dir")
    _task_args(evaluate)
    evaluate.add_argument(
        "--harness",
        action="store_true",
        help="run lm-evaluation-harness on the same prompts instead (pip install 'lmforge[eval]')",
    )
    evaluate.add_argument("--output", default=None, help="results JSON (default: eval_results/<model>-<tasks>.json)")
    evaluate.set_defaults(handler=cmd_eval)

    # `lmforge eval compare FILE ...`: main() routes it here (eval's own first argument is a model)
    compare = commands.add_parser(
        COMPARE_COMMAND,
        prog="lmforge eval compare",
        help="(as `lmforge eval compare`) results files side by side",
        description="Results files side by side: a table of tasks x models with standard errors, and a PNG bar chart.",
    )
    compare.add_argument("results", nargs="+", help="results JSON files of lmforge eval (two or more)")
    compare.add_argument(
        "--output",
        default="eval_results/compare.png",
        help="bar chart PNG; the table is written beside it as .md (default: eval_results/compare.png)",
    )
    compare.set_defaults(handler=cmd_compare)

    sweep = commands.add_parser("sweep", help="evaluate every checkpoint of a run and pick the best")
    sweep.add_argument("run_dir")
    _task_args(sweep)
    sweep.add_argument(
        "--metric", default=None, help="metric that picks the best (default: the first task's primary metric)"
    )
    sweep.add_argument("--copy-best", action="store_true", help="copy the best checkpoint to RUN_DIR/best")
    sweep.set_defaults(handler=cmd_sweep)


COMPARE_COMMAND = "eval-compare"


def cmd_compare(args) -> int:
    from lmforge.eval.compare import run_compare

    table, png = run_compare(args.results, Path(args.output))
    print(table, end="")
    print(f"[lmforge] bar chart in {png}, table in {png.with_suffix('.md')}")
    return 0


RENAMED = {"renamed_seed": ("--seed", "--fewshot-seed"), "renamed_formats": ("--formats", "--format A,B,...")}


def formats_of(value: str | None) -> list[str]:
    """--format's value as names: one is that prompt format, several the robustness mode.

    >>> formats_of("plain, remask")
    ['plain', 'remask']
    """
    if value is None:
        return []
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise LmforgeError(f"--format {value!r}: no format named")
    if len(set(names)) != len(names):
        raise LmforgeError(f"--format {value}: each format once")
    return names


def _options(args):
    from lmforge.eval.evaluate import EvalOptions
    from lmforge.eval.fewshot import check_sampler, check_style

    for dest, (old, new) in RENAMED.items():
        if getattr(args, dest, None) is not None:
            raise LmforgeError(f"{old} is now {new}")
    formats = formats_of(args.format)
    if len(formats) > 1 and args.command != "eval":
        raise LmforgeError(
            f"--format {args.format}: {args.command} evaluates one prompt format; the "
            "format-robustness mode (several) is lmforge eval's"
        )
    for flag, value in (
        ("--batch-size", args.batch_size),
        ("--max-new-tokens", args.max_new_tokens),
        ("--samples", args.samples),
    ):
        if value is not None and value < 1:
            raise LmforgeError(f"{flag} {value}: must be at least 1")
    if args.temperature <= 0:
        raise LmforgeError(f"--temperature {args.temperature}: must be positive")
    if args.limit is not None and args.limit < 1:
        raise LmforgeError(f"--limit {args.limit}: must be at least 1")
    for name in formats:
        check_style(name)
    if args.fewshot_sampler is not None:
        check_sampler(args.fewshot_sampler)
    return EvalOptions(
        shots=args.shots,
        seed=args.fewshot_seed,
        fewshot_sampler=args.fewshot_sampler,
        style=formats[0] if len(formats) == 1 else None,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        show_progress=sys.stderr.isatty(),
        allow_code_execution=args.allow_code_execution,
        allow_pickle=args.allow_pickle,
        samples=args.samples,
        temperature=args.temperature,
    )


def _tasks(args):
    from lmforge.eval.runner import load_tasks

    options = {"langs": args.langs} if args.langs else {}
    return load_tasks(args.tasks, fewshot=args.fewshot_file, limit=args.limit, **options)


def cmd_eval(args) -> int:
    from lmforge.eval import results
    from lmforge.eval.runner import default_output, run_eval

    options, tasks = _options(args), _tasks(args)
    formats = formats_of(args.format)
    if args.harness and len(formats) > 1:
        raise LmforgeError(
            f"--format {args.format}: --harness evaluates one prompt format; drop --harness for the "
            "format-robustness mode"
        )
    if args.harness:
        from lmforge.eval.harness import run_harness

        output = Path(args.output) if args.output else default_output(args.model_dir, tasks, "-harness")
        record = run_harness(args.model_dir, tasks, options, output)
        print(results.markdown(record), end="")
        print(f"[lmforge] harness results in {output}")
        keep_in_run(args.model_dir, output, record)
        return 0
    if len(formats) > 1:
        from lmforge.eval.robustness import robustness_markdown, run_robustness

        output = Path(args.output) if args.output else default_output(args.model_dir, tasks, "-formats")
        report = run_robustness(args.model_dir, tasks, options, formats, output)
        print(robustness_markdown(report), end="")
        print(f"[lmforge] per-format results in {output}")
        return 0
    output = Path(args.output) if args.output else default_output(args.model_dir, tasks)
    record = run_eval(args.model_dir, tasks, options, output)
    print(results.markdown(record), end="")
    print(f"[lmforge] {len(tasks)} task(s) in {record['wall_seconds']:.1f} s; results in {output}")
    keep_in_run(args.model_dir, output, record)
    return 0


def run_dir_of(model_dir: str | Path) -> Path | None:
    """The run directory when `model_dir` is a run or its model/ (not a checkpoint-N/:
    its scores are not the final model's)."""
    from lmforge import rundir

    path = Path(model_dir).resolve()
    for candidate in (path, path.parent if path.name == rundir.MODEL_DIR else None):
        if candidate is not None and (candidate / rundir.RUN_FILE).is_file():
            return candidate
    return None


def keep_in_run(model_dir: str | Path, output: Path, record: dict) -> None:
    """A run's own evaluations are kept in RUN_DIR/eval/ too, and its model card
    (model/README.md) is written again so that it lists them."""
    from lmforge.eval import results
    from lmforge.report.card_inputs import EVAL_DIR
    from lmforge.report.model_card import write_model_card
    from lmforge import rundir

    run_dir = run_dir_of(model_dir)
    if run_dir is None:
        return
    kept = run_dir / EVAL_DIR / output.name
    if kept.resolve() != output.resolve():
        results.write(kept, record)
    from lmforge.report.provenance import describe_model

    describe_model(run_dir)  # the model's lmforge.json lists its evaluations too
    run = rundir.read_run(run_dir) or {}
    if run.get("status") == "finished" and (run_dir / rundir.MODEL_DIR).is_dir():
        card = write_model_card(run_dir, run_dir / rundir.MODEL_DIR)
        print(f"[lmforge] results kept in {kept}; model card updated: {card}")
    else:
        print(f"[lmforge] results kept in {kept}")


def cmd_sweep(args) -> int:
    from lmforge.eval.sweep import run_sweep

    options, tasks = _options(args), _tasks(args)
    report = run_sweep(Path(args.run_dir), tasks, options, metric=args.metric, copy=args.copy_best)
    print(report["markdown"], end="")
    best = report["best"]
    copied = f"; copied to {best['copied_to']}" if "copied_to" in best else ""
    print(f"[lmforge] best: step {best['step']} ({report['task']} {report['metric']} {best['value']:.4g}){copied}")
    print(f"[lmforge] table, JSON and plot in {Path(report['paths']['json']).parent}")
    return 0
