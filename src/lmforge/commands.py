"""The commands behind the `lmforge` command line (cli.py parses, these run): each loads
its config or arguments and calls one pipeline function; every import is inside its
command, so `lmforge --help` and a mistyped command stay fast."""

from __future__ import annotations

import sys

from lmforge.errors import LmforgeError


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
