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


def cmd_train(args) -> int:
    from lmforge.config import load_config
    from lmforge.train.pipeline import run_training

    config = load_config(args.config, args.sections, args.overrides)
    result = run_training(config, overwrite=args.overwrite, resume=args.resume)
    if result.interrupted_at is not None:
        print(
            f"[lmforge] interrupted after step {result.interrupted_at}: checkpoint saved in {result.run_dir}; "
            "continue with --resume"
        )
        return 0
    print(f"[lmforge] finished: model in {result.model_dir}")
    if result.metrics:
        print(
            "[lmforge] " + ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items() if isinstance(v, (int, float)))
        )
    return 0


def cmd_config_show(args) -> int:
    from lmforge.config import dump_config, load_config

    from lmforge.estimate import parameters_line

    config = load_config(args.config, args.sections, args.overrides)
    parameters = parameters_line(config)  # before any output: its errors leave no half-printed config
    print(dump_config(config), end="")
    print(parameters)  # a YAML comment: the output still parses as the config
    if config.train.deepspeed is not None:
        from lmforge.train.deepspeed import deepspeed_summary
        from lmforge.train.distributed import world_size

        processes = args.processes if args.processes is not None else world_size()
        if processes < 1:
            raise LmforgeError(f"--processes {processes}: need at least one process")
        print(deepspeed_summary(config, processes), end="")
    return 0


def cmd_config_import_oa(args) -> int:
    from lmforge.config.import_oa import import_oa, render

    imported, _ = import_oa(
        args.file,
        args.configs,
        args.overrides,
        num_train_epochs=args.num_train_epochs,
        deepspeed=args.deepspeed,
        world_size=args.world_size,
        root=args.root,
    )
    print(render(imported), end="")
    return 0


def cmd_schedule_plot(args) -> int:
    from pathlib import Path

    from lmforge.config import load_config
    from lmforge.optim.schedules import learning_rates
    from lmforge.report.plots import plot_schedule
    from lmforge.train.steps import StepCount, count_total_steps, stage_spans

    config = load_config(args.config, args.sections, args.overrides)
    count = StepCount(args.steps, "--steps", True) if args.steps else count_total_steps(config)
    steps = count.steps
    if steps < 1:
        raise LmforgeError(f"--steps {steps}: need at least one step")
    options = config.train.schedule.model_dump()
    name = options.pop("name")
    try:
        rates = learning_rates(name, steps, config.train.optimizer.lr, **options)
    except ValueError as exc:
        raise LmforgeError(f"train.schedule: {exc}") from exc
    spans = stage_spans(config, steps)
    if len(spans) > 1:  # each streaming stage's lr_scale multiplies the schedule during its steps
        scales = [span.lr_scale for span in spans for _ in range(span.steps)]
        rates = [rate * scale for rate, scale in zip(rates, scales)]
    stages = f", stages {' | '.join(f'{s.name} {s.steps}' for s in spans)}" if len(spans) > 1 else ""
    title = f"{name} schedule, peak lr {config.train.optimizer.lr:g}, {steps} steps{stages}"
    path = plot_schedule(rates, title, Path(args.output))
    print(
        f"[lmforge] {title}: {path} (lr at step 0 {rates[0]:.3g}, max {max(rates):.3g}, last {rates[-1]:.3g}); "
        f"steps: {count.how}"
    )
    return 0


def cmd_generate(args) -> int:
    from lmforge.data.conversation import Segment
    from lmforge.data.formats import get_format
    from lmforge.data.tokenize import wants_bos
    from lmforge.eval.generate import generate, load_model_dir, stop_token_ids

    model, tokenizer, meta = load_model_dir(args.model_dir)
    prompt_format = get_format(meta.get("prompt_format", "chat_template"))
    cot = meta.get("cot", False) if args.cot == "auto" else args.cot == "yes"
    segments = ((Segment("system", args.system),) if args.system else ()) + (Segment("user", args.prompt),)
    prompt = prompt_format.generation_prompt(segments, tokenizer, cot=cot)
    stops = stop_token_ids(tokenizer, meta.get("stop_strings") or prompt_format.stop_strings(tokenizer))
    [output] = generate(
        model,
        tokenizer,
        [prompt],
        stops,
        max_new_tokens=args.max_new_tokens,
        do_sample=args.temperature > 0,
        temperature=args.temperature or 1.0,
        top_p=args.top_p,
        seed=args.seed,
        add_bos=wants_bos(tokenizer, prompt_format),
    )
    print(output.strip())
    return 0


def cmd_bootstrap(args) -> int:
    from lmforge.bootstrap.loop import run_bootstrap
    from lmforge.config import load_config

    config = load_config(args.config, args.sections, args.overrides)
    stats = run_bootstrap(config, overwrite=args.overwrite, resume=args.resume)
    print(f"[lmforge] bootstrap finished: {len(stats)} rounds; final model {stats[-1]['model_dir']}")
    return 0


def cmd_ablate(args) -> int:
    from lmforge.ablate import ablation_markdown, parse_variants, run_ablation
    from lmforge.config import load_config

    variants = parse_variants(args.variants)
    if args.seeds < 1:
        raise LmforgeError(f"--seeds {args.seeds}: need at least one seed")
    config = load_config(args.config, args.sections, args.overrides)
    result = run_ablation(
        config, variants, args.seeds, args.test, overwrite=args.overwrite, resume=args.resume, select_on=args.select_on
    )
    print(ablation_markdown(result), end="")
    print(f"[lmforge] table, JSON and bar chart in {config.output_path}")
    return 0


def cmd_data_inspect(args) -> int:
    import json

    from lmforge.config import load_config
    from lmforge.data.inspect import inspect_json, inspect_text, prepare

    from lmforge.train.pipeline import needed_special_tokens  # the tokenizer exactly as training prepares it

    tokenizer, data = prepare(load_config(args.config, args.sections, args.overrides), needed_special_tokens)
    summary = inspect_json(data, tokenizer)
    print(json.dumps(summary, ensure_ascii=False, indent=2) if args.json else inspect_text(summary))
    return 0


def cmd_data_preview(args) -> int:
    import json

    from lmforge.config import load_config
    from lmforge.data.inspect import prepare, preview_records, preview_text

    if args.n < 1:
        raise LmforgeError(f"--n {args.n}: need at least one example")
    from lmforge.train.pipeline import needed_special_tokens  # the tokenizer exactly as training prepares it

    tokenizer, data = prepare(load_config(args.config, args.sections, args.overrides), needed_special_tokens)
    records = preview_records(data, tokenizer, args.n, args.ids)
    if args.json:
        print("\n".join(json.dumps(r, ensure_ascii=False) for r in records))
    else:
        print(preview_text(records))
    return 0


def cmd_data_prepare(args) -> int:
    import json
    from pathlib import Path

    from lmforge.config import load_config
    from lmforge.data.prepare import PrepareOptions, prepare_from_config, report_text, require_datatrove

    require_datatrove()  # before the config: the install hint is the whole answer
    options = PrepareOptions(Path(args.output), args.executor, args.workers, args.tasks, args.tokenizer, args.tokenize)
    options.keep_work, options.verbose = args.keep_work, args.verbose  # -v: datatrove's INFO logging too
    report = prepare_from_config(load_config(args.config, args.sections, args.overrides), options)
    if report:
        print(json.dumps(report, ensure_ascii=False, indent=2) if args.json else report_text(report))
    return 0


def cmd_export(args) -> int:
    from pathlib import Path

    from lmforge.export import ExportRequest, export_run

    output = export_run(
        ExportRequest(Path(args.run_dir), Path(args.output), args.merge, args.dtype, args.quantize, args.overwrite)
    )
    print(f"[lmforge] exported {args.run_dir} to {output}")
    return 0


def cmd_tokenizer_train(args) -> int:
    from pathlib import Path

    from lmforge.tokenizer_train import TokenizerRequest, train_tokenizer

    request = TokenizerRequest(
        args.data,
        args.vocab_size,
        Path(args.output),
        args.text_field,
        args.overwrite,
        show_progress=not args.quiet and sys.stderr.isatty(),  # a bar, not blank lines, in a log
    )
    tokenizer, documents = train_tokenizer(request)
    print(f"[lmforge] tokenizer of {len(tokenizer)} tokens trained on {documents} documents: {args.output}")
    return 0


def cmd_estimate(args) -> int:
    import json

    from lmforge.config import load_config
    from lmforge.estimate import estimate_config, parse_memory
    from lmforge.estimate.render import estimate_json, estimate_table

    gpu_memory = parse_memory(args.gpu_memory)
    estimate = estimate_config(load_config(args.config, args.sections, args.overrides), args.gpus, gpu_memory)
    print(json.dumps(estimate_json(estimate), indent=2) + "\n" if args.json else estimate_table(estimate), end="")
    return 0


def cmd_demo(args) -> int:
    if args.pretrain:
        if args.bootstrap:
            raise LmforgeError(
                "--bootstrap: the pretraining demo has no bootstrap rounds; drop one of --pretrain, --bootstrap"
            )
        from lmforge.demo.pretrain import run_pretrain_demo

        run_pretrain_demo(args.output_dir, args.size, args.seed, args.overwrite, args.resume)
        return 0
    from lmforge.demo.pipeline import run_demo

    run_demo(
        output_dir=args.output_dir,
        size=args.size,
        seed=args.seed,
        bootstrap=args.bootstrap,
        overwrite=args.overwrite,
        resume=args.resume,
    )
    return 0


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
