"""SFT throughput against the peers on the same work, in one run: a Llama of 4 layers x 256
wide (vocabulary 8192) trained one epoch on 384 examples with long-tailed lengths
(lognormal, median ~120 tokens, capped at 512), every token trained. Each setup runs in its
own process, one after another, from the same initial weights and the same token ids:

    HF Trainer, dynamic padding, batch 8, fp32          (the plain baseline)
    TRL SFTTrainer, packing (bfd), 1 x 1024, fp32 / bf16 (pip install 'lmforge[bench]')
    lmforge train, packing, 1 x 1024, fp32 / bf16, and fp32 with train.compile
    lmforge train, no packing, batch 8, fp32 / bf16

It prints useful tokens per second (the dataset's tokens / the training loop's wall time,
from each Trainer's own `train_runtime`, which for train.compile includes compiling: tens of
seconds the first time, a few once torch's on-disk cache holds the graphs) and the ratios lmforge best / TRL best (target
>= 1.3) and lmforge best / HF padded (target >= 2.5), and lmforge unpacked / HF padded
(target >= 1.0). Not a test: timings on shared machines are noisy; run it on an otherwise
idle machine and compare ratios within one run only.

    python bench/compare_sft.py [--examples 384] [--setups hf,trl,trl-bf16,lmforge,...] [--output r.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads distort shared-machine timings
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SETUPS = {
    # name: (framework, packing, precision)
    "hf": ("hf", False, "fp32"),
    "trl": ("trl", True, "fp32"),
    "trl-bf16": ("trl", True, "bf16"),
    "lmforge": ("lmforge", True, "fp32"),
    "lmforge-bf16": ("lmforge", True, "bf16"),
    "lmforge-compile": ("lmforge", True, "fp32+compile"),
    "lmforge-unpacked": ("lmforge", False, "fp32"),
    "lmforge-unpacked-bf16": ("lmforge", False, "bf16"),
}
LABELS = {
    "hf": "HF Trainer, dynamic padding, batch 8, fp32",
    "trl": "TRL SFTTrainer, packing (bfd), 1 x 1024, fp32",
    "trl-bf16": "TRL SFTTrainer, packing (bfd), 1 x 1024, bf16",
    "lmforge": "lmforge train, packing, 1 x 1024, fp32",
    "lmforge-bf16": "lmforge train, packing, 1 x 1024, bf16",
    "lmforge-compile": "lmforge train, packing, 1 x 1024, fp32, compile",
    "lmforge-unpacked": "lmforge train, no packing, batch 8, fp32",
    "lmforge-unpacked-bf16": "lmforge train, no packing, batch 8, bf16",
}
VOCAB, WORDS = 8192, 8000
LR, SEED = 3e-4, 0


def prepare(work: Path, examples: int) -> dict:
    """A word-level tokenizer (one token per word, so every framework sees the same ids),
    the texts, and the initial model, saved under `work`."""
    import numpy as np
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{f"w{i}": i + 3 for i in range(WORDS)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    tokenizer.save_pretrained(work / "model")
    rng = np.random.default_rng(SEED)
    lengths = np.clip(rng.lognormal(mean=np.log(120), sigma=0.6, size=examples).astype(int), 8, 511)
    texts = [" ".join(f"w{w}" for w in rng.integers(0, WORDS, size=n)) for n in lengths]
    with (work / "data.jsonl").open("w") as handle:
        for text in texts:
            handle.write(json.dumps({"text": text}) + "\n")
    LlamaForCausalLM(model_config()).save_pretrained(work / "model")
    # every token of every example is trained, and each framework ends an example with eos
    return {"examples": examples, "useful_tokens": int(lengths.sum() + examples)}


def model_config():
    """The benchmark's model (also bench/compile_step.py's and bench/optimizer_step.py's)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=256,
        intermediate_size=1024,
        num_hidden_layers=4,
        num_attention_heads=4,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=None,
    )


def _texts(work: Path) -> list[str]:
    return [json.loads(line)["text"] for line in (work / "data.jsonl").read_text().splitlines()]


def run_hf(work: Path, precision: str) -> float:
    from datasets import Dataset
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(work / "model")
    rows = [{"input_ids": tokenizer(t)["input_ids"] + [tokenizer.eos_token_id]} for t in _texts(work)]
    args = TrainingArguments(
        output_dir=str(work / "hf"),
        per_device_train_batch_size=8,
        num_train_epochs=1,
        learning_rate=LR,
        report_to=[],
        save_strategy="no",
        logging_steps=1000,
        bf16=precision == "bf16",
        use_cpu=True,
        seed=SEED,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=AutoModelForCausalLM.from_pretrained(work / "model"),
        args=args,
        train_dataset=Dataset.from_list(rows),
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
    )
    return trainer.train().metrics["train_runtime"]


def run_trl(work: Path, precision: str) -> float:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(work / "model")
    args = SFTConfig(
        output_dir=str(work / "trl"),
        per_device_train_batch_size=1,
        num_train_epochs=1,
        learning_rate=LR,
        report_to=[],
        save_strategy="no",
        logging_steps=1000,
        max_length=1024,
        packing=True,
        packing_strategy="bfd",
        bf16=precision == "bf16",
        use_cpu=True,
        seed=SEED,
        disable_tqdm=True,
        dataset_text_field="text",
    )
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(work / "model"),
        args=args,
        train_dataset=Dataset.from_list([{"text": t} for t in _texts(work)]),
        processing_class=tokenizer,
    )
    return trainer.train().metrics["train_runtime"]


def run_lmforge(work: Path, packing: bool, precision: str) -> float:
    import yaml

    from lmforge.cli import main

    config = {
        "run": {"output_dir": str(work / "lmforge"), "seed": SEED},
        "model": {"name_or_path": str(work / "model")},
        "data": {
            "datasets": [{"path": str(work / "data.jsonl"), "val_split": 0, "format": "text"}],
            "max_length": 1024 if packing else 512,
            "packing": packing,
        },
        "train": {
            "global_batch_size": 1 if packing else 8,
            "micro_batch_size": 1 if packing else 8,
            "epochs": 1,
            "optimizer": {"lr": LR},
            "precision": precision.removesuffix("+compile"),
            "compile": precision.endswith("+compile"),
            "logging_steps": 1000,
            "save_every": 100000,
            "measure_roof": False,
        },
    }
    path = work / "lmforge.yaml"
    path.write_text(yaml.safe_dump(config))
    if main(["-q", "train", str(path), "--overwrite"]) != 0:
        raise SystemExit("lmforge train failed")
    run = json.loads((work / "lmforge" / "run.json").read_text())
    return run["final_metrics"]["train_runtime"]


def run_setup(name: str, work: Path) -> float:
    framework, packing, precision = SETUPS[name]
    if framework == "hf":
        return run_hf(work, precision)
    if framework == "trl":
        return run_trl(work, precision)
    return run_lmforge(work, packing, precision)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=384)
    parser.add_argument("--setups", default=",".join(SETUPS))
    parser.add_argument("--output", default=None, help="write the results as JSON here")
    parser.add_argument("--setup", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.setup:  # a child process: one setup
        print(json.dumps({"train_runtime": run_setup(args.setup, Path(args.work))}))
        return
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    with tempfile.TemporaryDirectory(prefix="lmforge-compare-") as directory:
        work = Path(directory)
        data = prepare(work, args.examples)
        results = {}
        for name in setups:
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, __file__, "--setup", name, "--work", str(work)], capture_output=True, text=True
            )
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
                print(f"{LABELS[name]:50s} failed: {tail[0]}")
                continue
            runtime = json.loads(done.stdout.strip().splitlines()[-1])["train_runtime"]
            results[name] = {
                "train_runtime": runtime,
                "useful_tokens_per_second": data["useful_tokens"] / runtime,
                "process_seconds": time.perf_counter() - start,
            }
            print(f"{LABELS[name]:50s} {results[name]['useful_tokens_per_second']:8,.0f} useful tok/s")
    rate = {name: row["useful_tokens_per_second"] for name, row in results.items()}
    best = lambda prefix: max((v for k, v in rate.items() if k.startswith(prefix)), default=None)  # noqa: E731
    ours, trl, hf = best("lmforge"), best("trl"), rate.get("hf")
    unpacked = max((rate[k] for k in ("lmforge-unpacked", "lmforge-unpacked-bf16") if k in rate), default=None)
    print(f"{data['examples']} examples, {data['useful_tokens']:,} useful tokens")
    for label, value, target in (
        ("lmforge best / TRL best", ours and trl and ours / trl, 1.3),
        ("lmforge best / HF padded", ours and hf and ours / hf, 2.5),
        ("lmforge unpacked / HF padded", unpacked and hf and unpacked / hf, 1.0),
    ):
        shown = f"{value:.2f}" if value else "n/a"
        met = "met" if value and value >= target else "MISSED" if value else ""
        print(f"{label:30s} {shown:>6s}  (target >= {target}) {met}")
    if args.output:
        Path(args.output).write_text(json.dumps({"data": data, "results": results}, indent=2))


if __name__ == "__main__":
    main()
