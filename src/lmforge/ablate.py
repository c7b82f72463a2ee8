"""`lmforge ablate`: train several objectives from the same starting model and data over
several seeds, and report seed 004's table: strict exact match on held-out problems
(mean ± sd over seeds; `lmforge eval`'s exact_match_strict, 0 shots, each model in its own
prompt format) and validation loss, as markdown, JSON and a bar chart.

    ABLATION_DIR (= the config's run.output_dir)/
      init_model/                  the shared starting model (special + mask tokens added)
      <variant>/seed-<k>/          one ordinary run directory per training run
      ablation.md, ablation.json, ablation.png
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from lmforge.config import Config
from lmforge.config.schema import OBJECTIVE_CONFIGS
from lmforge.errors import LmforgeError
from lmforge.eval.evaluate import EvalOptions, evaluate_task
from lmforge.eval.generate import load_model_dir
from lmforge.eval.tasks import load_task
from lmforge.report.plots import plot_ablation
from lmforge.objectives.registry import OBJECTIVES
from lmforge.objectives.spec import CANDIDATES
from lmforge.train.pipeline import named_format, prepare_model_and_tokenizer, run_training

# Variant name -> objective. "remask" is seed 004's ReMask: ReMask-CoT rules on examples
# with a rationale, plain ReMask on the others.
VARIANTS = {"sft": "ce", "ce": "ce", "mixce": "mixce", "masked_thought": "masked_thought",
            "remask": "remask_cot", "remask_cot": "remask_cot", "remask_plain": "remask",
            # preference objectives: on pairs data (SPIN: on SFT data, against its own answers)
            "rank": "rank", "dpo": "dpo", "ipo": "ipo", "orpo": "orpo", "simpo": "simpo", "spin": "spin"}
MAX_NEW_TOKENS = 96
"""Generation limit when scoring the held-out problems."""
LABELS = {"sft": "SFT", "ce": "SFT", "mixce": "MixCE", "masked_thought": "Masked Thought", "remask": "ReMask",
          "remask_cot": "ReMask-CoT", "remask_plain": "ReMask (no CoT rules)", "rank": "CE + PRO", "dpo": "DPO",
          "ipo": "IPO", "orpo": "ORPO", "simpo": "SimPO", "spin": "SPIN"}


@dataclass
class VariantResult:
    variant: str
    accuracies: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)

    def summary(self) -> dict:
        def mean_sd(values):
            return (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0) if values else (
                float("nan"), float("nan"))
        (acc, acc_sd), (loss, loss_sd) = mean_sd(self.accuracies), mean_sd(self.val_losses)
        return {"variant": self.variant, "label": LABELS[self.variant], "accuracy_mean": acc, "accuracy_sd": acc_sd,
                "val_loss_mean": loss, "val_loss_sd": loss_sd, "accuracies": self.accuracies,
                "val_losses": self.val_losses}


def parse_variants(text: str) -> list[str]:
    variants = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise LmforgeError(f"--variants: unknown variant(s) {', '.join(unknown) or '(none)'}; valid: {', '.join(VARIANTS)}")
    return variants


def _with(base: Config, objective: dict, **sections) -> Config:
    data = base.model_dump()
    data["train"]["objective"] = objective
    for section, values in sections.items():
        data[section].update(values)
    return Config.model_validate(data)


def variant_config(base: Config, variant: str, seed: int, init_model: Path, run_dir: Path) -> Config:
    """The base config with this variant's objective (taking the base objective's values
    for the hyper-parameters they share), this seed, the shared starting model, its own dir."""
    name = VARIANTS[variant]
    shared = {k: v for k, v in base.train.objective.model_dump().items()
              if k in OBJECTIVE_CONFIGS[name].model_fields and k != "name"}
    return _with(base, {"name": name, **shared}, run={"seed": seed, "output_dir": str(run_dir)},
                 model={"name_or_path": str(init_model), "tokenizer": None})


def check_variant_data(base: Config, variants: list[str]) -> None:
    """Before any variant trains: a ranking variant needs pairs data (SPIN makes its own)."""
    from lmforge.data.from_config import dataset_specs

    formats = [named_format(spec) for spec in dataset_specs(base.data)]
    for variant in variants:
        spec = OBJECTIVES[VARIANTS[variant]]
        if spec.data == CANDIDATES and not spec.self_generated and any(f != "pairs" for f in formats):
            raise LmforgeError(f"--variants {variant}: {spec.name} trains on ranked responses (pairs records), but "
                               f"data.datasets are {', '.join(formats)}")


def prepare_starting_model(base: Config, directory: Path) -> Path:
    """Build or load the starting model once, with every token any variant needs (without
    an adapter: each variant attaches its own to this base)."""
    prepared = prepare_model_and_tokenizer(
        _with(base, {"name": "remask"}, model={"adapter": None, "quantization": None}), base.run.seed)
    init = directory / "init_model"
    prepared.model.save_pretrained(init)
    prepared.tokenizer.save_pretrained(init)
    return init


def run_ablation(base: Config, variants: list[str], seeds: int, test_path: str, overwrite: bool = False) -> dict:
    directory = base.output_path
    if directory.exists() and any(directory.iterdir()) and not overwrite:
        raise LmforgeError(f"{directory}: ablation directory is not empty; pass --overwrite or change run.output_dir")
    directory.mkdir(parents=True, exist_ok=True)
    task = load_task(test_path)
    if task.kind != "generate":
        raise LmforgeError(f"--test {test_path}: held-out problems must be CoT ({{question, rationale, answer}}) or "
                           f"GSM8K ({{question, answer}}) records, not {task.kind} records")
    check_variant_data(base, variants)
    init_model = prepare_starting_model(base, directory)
    options = EvalOptions(max_new_tokens=MAX_NEW_TOKENS, batch_size=64)

    results = {variant: VariantResult(variant) for variant in variants}
    for variant in variants:
        for k in range(seeds):
            run_dir = directory / variant / f"seed-{k}"
            config = variant_config(base, variant, base.run.seed + k, init_model, run_dir)
            print(f"[lmforge] ablation: {variant}, seed {k + 1}/{seeds}")
            trained = run_training(config, overwrite=overwrite)
            model, tokenizer, meta = load_model_dir(trained.model_dir)
            accuracy = evaluate_task(model, tokenizer, meta, task, options).metrics[task.primary_metric]
            results[variant].accuracies.append(accuracy)
            if "eval_loss" in trained.metrics:
                results[variant].val_losses.append(trained.metrics["eval_loss"])

    table = [results[v].summary() for v in variants]
    payload = {"variants": table, "seeds": seeds, "test_file": test_path, "test_problems": len(task.items)}
    (directory / "ablation.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    (directory / "ablation.md").write_text(ablation_markdown(table, len(task.items), seeds), encoding="utf-8")
    plot_ablation(table, directory / "ablation.png")
    return payload


def ablation_markdown(table: list[dict], n_problems: int, seeds: int) -> str:
    lines = [f"Strict exact match on {n_problems} held-out problems and validation loss; mean ± sd over {seeds} "
             "seed(s), same starting model and data.", "",
             "| Model | Exact match | Validation loss |", "|---|---|---|"]
    for row in table:
        lines.append(f"| {row['label']} | {100 * row['accuracy_mean']:.2f}% ± {100 * row['accuracy_sd']:.2f} | "
                     f"{row['val_loss_mean']:.4f} ± {row['val_loss_sd']:.4f} |")
    return "\n".join(lines) + "\n"
