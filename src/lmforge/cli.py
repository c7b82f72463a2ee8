"""The `lmforge` command line. Thin: parse arguments, load the config, call one pipeline
function. User errors print one line and exit with code 2 (traceback with --debug).

Every command that writes a run directory (train, bootstrap, ablate, demo) follows one
rule: `--resume` continues the directory, `--overwrite` replaces it (only a directory
lmforge made), and otherwise an existing non-empty directory is an error."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from lmforge.commands import (
    cmd_train,
    cmd_config_show,
    cmd_config_import_oa,
    cmd_schedule_plot,
    cmd_generate,
    cmd_bootstrap,
    cmd_ablate,
    cmd_data_inspect,
    cmd_data_preview,
    cmd_data_prepare,
    cmd_export,
    cmd_tokenizer_train,
    cmd_estimate,
    cmd_demo,
)
from lmforge.errors import LmforgeError

EXIT_USER_ERROR = 2


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config file")
    parser.add_argument("sections", nargs="*", help="sections of the file to merge, left to right (default: defaults)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override one config value (repeatable; applied last)",
    )


def _run_dir_args(parser: argparse.ArgumentParser, what: str, resume: str) -> None:
    """The run-directory flags, the same for every command that writes one."""
    parser.add_argument("--resume", action="store_true", help=resume)
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help=f"delete the {what} in the output directory and start again (never a directory lmforge did not make)",
    )


class _CommandListFormatter(argparse.HelpFormatter):
    """`lmforge --help`: one line per command (argparse measures the command names without
    the indent it prints them with, so the longest would wrap)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30)

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction):
            self._action_max_length += 2


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("lmforge")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        from lmforge import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lmforge",
        description="Train causal language models the careful way.",
        formatter_class=_CommandListFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lmforge {_version()}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-v", "--verbose", action="store_true", help="also show lmforge's debug messages")
    loudness.add_argument("-q", "--quiet", action="store_true", help="show only warnings and errors, no info lines")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="supervised finetuning / pretraining from a config")
    _config_args(train)
    _run_dir_args(train, "run", "continue the unfinished run in run.output_dir from its latest checkpoint")

    config = commands.add_parser("config", help="inspect configs")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    show = config_commands.add_parser("show", help="print the resolved, validated config")
    _config_args(show)
    show.add_argument(
        "--processes",
        type=int,
        default=None,
        metavar="N",
        help='processes to resolve train.deepspeed\'s "auto" values for (default: $WORLD_SIZE or 1)',
    )
    import_oa = config_commands.add_parser(
        "import-oa",
        help="an Open-Assistant trainer YAML as an lmforge config",
        description="Print the lmforge config equivalent to an Open-Assistant "
        "trainer YAML, and what could not be carried over.",
    )
    import_oa.add_argument("file", help="Open-Assistant trainer YAML (sections of trainer keys)")
    import_oa.add_argument(
        "--configs",
        nargs="+",
        required=True,
        metavar="SECTION",
        help="sections merged left to right after OA's defaults, as for trainer_sft.py",
    )
    import_oa.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an OA trainer key (num_train_epochs=2), or a dotted lmforge key path "
        "(train.max_steps=10) set on the result; repeatable",
    )
    import_oa.add_argument(
        "--num-train-epochs",
        "--num_train_epochs",
        type=float,
        default=None,
        help="OA's command-line override of num_train_epochs",
    )
    import_oa.add_argument(
        "--deepspeed", action="store_true", help="as OA's --deepspeed: carry deepspeed_config over to train.deepspeed"
    )
    import_oa.add_argument(
        "--world-size",
        type=int,
        default=1,
        help="GPUs the OA run used (global batch = per-device x accumulation x this)",
    )
    import_oa.add_argument(
        "--root",
        default=None,
        help="directory the file's relative paths are relative to (OA: the trainer's "
        "directory; default: the file's directory)",
    )
    import_oa.set_defaults(handler=cmd_config_import_oa)

    schedule = commands.add_parser("schedule", help="learning-rate schedules")
    schedule_commands = schedule.add_subparsers(dest="schedule_command", required=True)
    plot = schedule_commands.add_parser("plot", help="write a PNG of the config's LR over optimizer steps")
    _config_args(plot)
    plot.add_argument("--steps", type=int, default=None, help="total optimizer steps (default: from the config)")
    plot.add_argument("--output", default="lr_schedule.png")

    generate = commands.add_parser("generate", help="sample from a trained model in its own prompt format")
    generate.add_argument("model_dir")
    generate.add_argument("--prompt", required=True, help="the user message")
    generate.add_argument("--system", default=None, help="optional system message")
    generate.add_argument(
        "--cot",
        choices=["auto", "yes", "no"],
        default="auto",
        help="answer with a rationale first (auto: as the model was trained)",
    )
    generate.add_argument("--max-new-tokens", type=int, default=256)
    generate.add_argument("--temperature", type=float, default=0.0, help="0 means greedy")
    generate.add_argument("--top-p", type=float, default=1.0)
    generate.add_argument("--seed", type=int, default=0)

    bootstrap = commands.add_parser("bootstrap", help="generate -> verify -> rank-finetune rounds (Memphis-CoT)")
    _config_args(bootstrap)
    _run_dir_args(
        bootstrap,
        "bootstrap run",
        "continue the interrupted bootstrap run in run.output_dir: finished rounds and generated chunks "
        "are kept, an unfinished finetuning resumes from its checkpoint",
    )

    ablate = commands.add_parser("ablate", help="compare objectives over seeds from one starting model")
    _config_args(ablate)
    ablate.add_argument(
        "--variants",
        default="sft,masked_thought,remask",
        help="comma-separated: sft, mixce, neftune, masked_thought, remask (seed 004's), remask_plain; on "
        "pairs data also rank, dpo, ipo, orpo, simpo; spin (on SFT data)",
    )
    ablate.add_argument("--seeds", type=int, default=3)
    ablate.add_argument("--test", default=None, help="held-out CoT problems (JSONL) for strict exact match")
    ablate.add_argument(
        "--select-on",
        default=None,
        metavar="VAL.jsonl",
        help="validation problems (JSONL): score each run at the checkpoint that does best on them "
        "(lmforge sweep), not its last; without --test only validation is scored",
    )
    _run_dir_args(
        ablate,
        "ablation",
        "continue the ablation in run.output_dir (same config and --test): finished variant x seed runs "
        "are kept, unfinished ones resume or train again; more --seeds or --variants add runs",
    )

    demo = commands.add_parser("demo", help="train a tiny model on synthetic arithmetic, no download")
    demo.add_argument("--output-dir", default=None, help="run directory (default: runs/demo-<timestamp>)")
    _run_dir_args(
        demo,
        "demo",
        "continue the demo in --output-dir (same --size and --seed): finished stages are "
        "kept, an unfinished training or bootstrap resumes",
    )
    demo.add_argument("--size", choices=["full", "smoke"], default="full", help="smoke: a seconds-long run for tests")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--bootstrap",
        action="store_true",
        help="after SFT, run rationale-bootstrapping rounds and report accuracy after each",
    )
    demo.add_argument(
        "--pretrain",
        action="store_true",
        help="instead: pretrain palm-tiny from scratch on a generated three-source corpus in two stages, "
        "with per-source validation perplexity and token accounting",
    )

    from lmforge.eval.cli import add_eval_commands  # eval, sweep

    add_eval_commands(commands)

    data = commands.add_parser("data", help="what the data pipeline makes of a config (no model)")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    inspect = data_commands.add_parser(
        "inspect", help="per dataset: records, drops by reason, duplicates, splits, tokens, two rendered examples"
    )
    _config_args(inspect)
    inspect.add_argument("--json", action="store_true", help="print the table as JSON")
    inspect.set_defaults(handler=cmd_data_inspect)
    preview = data_commands.add_parser("preview", help="the first training examples exactly as the model sees them")
    _config_args(preview)
    preview.add_argument("--n", type=int, default=3, help="how many examples")
    preview.add_argument("--ids", action="store_true", help="also print token ids and labels")
    preview.add_argument("--json", action="store_true", help="one JSON record per line")
    preview.set_defaults(handler=cmd_data_preview)
    prepare = data_commands.add_parser(
        "prepare", help="clean a corpus at scale on datatrove (local, Slurm, Ray): shards and a report"
    )
    _config_args(prepare)
    prepare.add_argument("--output", required=True, help="folder for shards, report and resumable work")
    prepare.add_argument("--executor", choices=("local", "slurm", "ray"), default="local")
    prepare.add_argument("--workers", type=int, default=1, help="tasks run at once (local, ray)")
    prepare.add_argument("--tasks", type=int, default=None, help="reading tasks (default: one per file)")
    prepare.add_argument("--tokenizer", default=None, help="tokenizer directory (default: model.tokenizer)")
    prepare.add_argument("--tokenize", action="store_true", help="also write tokenized shards")
    prepare.add_argument("--keep-work", action="store_true", help="keep DIR/work (intermediate files) when done")
    prepare.add_argument("--json", action="store_true", help="print the report as JSON")
    prepare.set_defaults(handler=cmd_data_prepare)

    tokenizer = commands.add_parser("tokenizer", help="tokenizers for pretraining")
    tokenizer_commands = tokenizer.add_subparsers(dest="tokenizer_command", required=True)
    train_tokenizer = tokenizer_commands.add_parser(
        "train",
        help="train a byte-level BPE tokenizer on text files",
        description="Train a GPT-NeoX-style byte-level BPE tokenizer (with the special tokens of "
        "lmforge's prompt formats) on .txt (one document a line) or .jsonl files, and save it "
        "as a Hugging Face tokenizer directory. Deterministic.",
    )
    train_tokenizer.add_argument("--data", nargs="+", required=True, metavar="FILE", help="text files, read in order")
    train_tokenizer.add_argument("--vocab-size", type=int, required=True, help="tokens, special tokens included")
    train_tokenizer.add_argument("--output", required=True, help="tokenizer directory to write")
    train_tokenizer.add_argument("--text-field", default="text", help="the field holding the document in JSON records")
    train_tokenizer.add_argument(
        "--overwrite", action="store_true", help="replace a tokenizer already in --output (never other files)"
    )
    train_tokenizer.set_defaults(handler=cmd_tokenizer_train)

    export = commands.add_parser(
        "export",
        help="a finished run's model as a release directory",
        description="A finished run's model as a release directory: merged, in another "
        "dtype or bitsandbytes-quantized, with a model card.",
    )
    export.add_argument("run_dir", help="a finished lmforge run directory")
    export.add_argument("--output", required=True, help="directory to write (must not exist, or be empty)")
    export.add_argument("--merge", action="store_true", help="merge the run's adapter into full weights")
    export.add_argument(
        "--dtype", choices=["bf16", "fp16", "fp32"], default=None, help="weight dtype (default: the run's model.dtype)"
    )
    export.add_argument(
        "--quantize",
        choices=["8bit", "4bit"],
        default=None,
        help="a bitsandbytes-quantized copy that from_pretrained loads as is (needs lmforge[qlora])",
    )
    export.add_argument("--overwrite", action="store_true", help="replace a previous export in --output")
    export.set_defaults(handler=cmd_export)

    estimate = commands.add_parser(
        "estimate",
        help="per-GPU training memory and the largest micro batch",
        description="Per-GPU memory of training the config under DDP, ZeRO-2, ZeRO-3 "
        "and FSDP, and the largest micro batch that fits.",
    )
    _config_args(estimate)
    estimate.add_argument("--gpus", type=int, default=1, help="GPUs (processes) the state is sharded over")
    estimate.add_argument("--gpu-memory", default="80GB", help="memory of one GPU (80GB, 24GiB, 40000MB)")
    estimate.add_argument("--json", action="store_true", help="print the estimate as JSON (bytes)")
    estimate.set_defaults(handler=cmd_estimate)
    return parser


COMMANDS = {
    "train": cmd_train,
    "generate": cmd_generate,
    "demo": cmd_demo,
    "ablate": cmd_ablate,
    "bootstrap": cmd_bootstrap,
}


GLOBAL_FLAGS = {"--debug", "-v", "--verbose", "-q", "--quiet"}


class _LmforgeHandler(logging.Handler):
    """lmforge's log lines as `[lmforge] message`, like its prints: info and debug on
    stdout with the prints (on stderr when stdout carries the command's data: JSON, a
    config, generated text), warnings and errors on stderr. Looks the streams up on each
    line, so it follows redirection (and pytest's capture)."""

    def __init__(self, data_on_stdout: bool = False) -> None:
        super().__init__()
        self.data_on_stdout = data_on_stdout

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.levelno >= logging.WARNING:
                print(f"[lmforge] {record.levelname.lower()}: {message}", file=sys.stderr, flush=True)
            else:
                print(f"[lmforge] {message}", file=sys.stderr if self.data_on_stdout else sys.stdout, flush=True)
        except Exception:  # noqa: BLE001 (logging must never break the command)
            self.handleError(record)


def configure_logging(verbose: bool = False, quiet: bool = False, data_on_stdout: bool = False) -> None:
    """Once per command: lmforge's own loggers at INFO (-v DEBUG, -q WARNING) through one
    handler; third-party loggers keep their own level (WARNING by default)."""
    logger = logging.getLogger("lmforge")
    for handler in [h for h in logger.handlers if isinstance(h, _LmforgeHandler)]:
        logger.removeHandler(handler)
    logger.addHandler(_LmforgeHandler(data_on_stdout))
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)


DATA_ON_STDOUT = {"config", "generate", "data"}
"""Commands whose stdout is their result (a config, generated text, the data report), as
with any --json."""


def main(argv: Sequence[str] | None = None) -> int:
    from lmforge.eval.cli import COMPARE_COMMAND

    argv = list(sys.argv[1:] if argv is None else argv)
    words = [word for word in argv if word not in GLOBAL_FLAGS]
    if words[:2] == ["eval", "compare"]:  # `eval` takes a model directory; `eval compare` files
        at = argv.index("eval")
        argv[at : at + 2] = [COMPARE_COMMAND]
    args = build_parser().parse_args(argv)
    configure_logging(
        args.verbose, args.quiet, data_on_stdout=args.command in DATA_ON_STDOUT or getattr(args, "json", False)
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not args.debug:
        # bitsandbytes (imported by peft) warns on every start that the optional `kernels`
        # package, which fetches CPU kernels from the hub, is missing
        logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    # a subcommand's own handler first: `config import-oa` has one, `config show` does not
    handler = (
        getattr(args, "handler", None)
        or {"config": cmd_config_show, "schedule": cmd_schedule_plot}.get(args.command)
        or COMMANDS[args.command]
    )
    try:
        if getattr(args, "resume", False) and getattr(args, "overwrite", False):
            from lmforge.rundir import check_resume_overwrite

            check_resume_overwrite(args.resume, args.overwrite)
        return handler(args)
    except LmforgeError as exc:
        if args.debug:
            raise
        print(f"lmforge: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("lmforge: interrupted", file=sys.stderr)
        return 130
