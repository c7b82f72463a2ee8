"""`lmforge ablate`: train several objectives from the same starting model and data over
several seeds, and report seed 004's table: strict exact match on held-out problems
(mean ± sd over seeds; `lmforge eval`'s exact_match_strict, 0 shots, each model in its own
prompt format) and validation loss, as markdown, JSON and a bar chart.

    ABLATION_DIR (= the config's run.output_dir)/
      ablation_state.json          written first: the config, and each finished run's scores
      init_model/                  the shared starting model (special + mask tokens added)
      <variant>/seed-<k>/          one ordinary run directory per training run
      ablation.md, ablation.json, ablation.png

`--overwrite` deletes an ablation directory (one with ablation_state.json, or an older
ablation.json) and starts again; `--resume` continues one made with the same config: runs
that finished are not trained again (nor scored again once their score is in the state
file), unfinished ones resume from their latest checkpoint or start again.
"""

from __future__ import annotations

import json
import logging
import shutil
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from lmforge import rundir
from lmforge.config import Config
from lmforge.config.schema import OBJECTIVE_CONFIGS
from lmforge.errors import LmforgeError
from lmforge.eval.evaluate import EvalOptions, evaluate_task
from lmforge.eval.generate import load_model_dir
from lmforge.eval.tasks import load_task
from lmforge.report.plots import plot_ablation
from lmforge.objectives.registry import OBJECTIVES
from lmforge.objectives.spec import CANDIDATES
from lmforge.train.data_builders import named_format
from lmforge.train.pipeline import prepare_model_and_tokenizer, run_training

# Variant name -> objective. "remask" is seed 004's ReMask: ReMask-CoT rules on examples
# with a rationale, plain ReMask on the others.
VARIANTS = {
    "sft": "ce",
    "ce": "ce",
    "mixce": "mixce",
    "masked_thought": "masked_thought",
    "remask": "remask_cot",
    "remask_cot": "remask_cot",
    "remask_plain": "remask",
    # preference objectives: on pairs data (SPIN: on SFT data, against its own answers)
    "rank": "rank",
    "dpo": "dpo",
    "ipo": "ipo",
    "orpo": "orpo",
    "simpo": "simpo",
    "spin": "spin",
}
STATE_FILE = "ablation_state.json"
RESULTS_FILE = "ablation.json"
MAX_NEW_TOKENS = 96
"""Generation limit when scoring the held-out problems."""
LABELS = {
    "sft": "SFT",
    "ce": "SFT",
    "mixce": "MixCE",
    "masked_thought": "Masked Thought",
    "remask": "ReMask",
    "remask_cot": "ReMask-CoT",
    "remask_plain": "ReMask (no CoT rules)",
    "rank": "CE + PRO",
    "dpo": "DPO",
    "ipo": "IPO",
    "orpo": "ORPO",
    "simpo": "SimPO",
    "spin": "SPIN",
}
log = logging.getLogger("lmforge.ablate")


@dataclass
class VariantResult:
    variant: str
    accuracies: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)

    def summary(self) -> dict:
        def mean_sd(values):
            return (
                (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)
                if values
                else (float("nan"), float("nan"))
            )

        (acc, acc_sd), (loss, loss_sd) = mean_sd(self.accuracies), mean_sd(self.val_losses)
        return {
            "variant": self.variant,
            "label": LABELS[self.variant],
            "accuracy_mean": acc,
            "accuracy_sd": acc_sd,
            "val_loss_mean": loss,
            "val_loss_sd": loss_sd,
            "accuracies": self.accuracies,
            "val_losses": self.val_losses,
        }


def parse_variants(text: str) -> list[str]:
    variants = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise LmforgeError(
            f"--variants: unknown variant(s) {', '.join(unknown) or '(none)'}; valid: {', '.join(VARIANTS)}"
        )
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
    shared = {
        k: v
        for k, v in base.train.objective.model_dump().items()
        if k in OBJECTIVE_CONFIGS[name].model_fields and k != "name"
    }
    return _with(
        base,
        {"name": name, **shared},
        run={"seed": seed, "output_dir": str(run_dir)},
        model={"name_or_path": str(init_model), "tokenizer": None},
    )


def check_variant_data(base: Config, variants: list[str]) -> None:
    """Before any variant trains: a ranking variant needs pairs data (SPIN makes its own)."""
    from lmforge.data.from_config import dataset_specs

    formats = [named_format(spec) for spec in dataset_specs(base.data)]
    for variant in variants:
        spec = OBJECTIVES[VARIANTS[variant]]
        if spec.data == CANDIDATES and not spec.self_generated and any(f != "pairs" for f in formats):
            raise LmforgeError(
                f"--variants {variant}: {spec.name} trains on ranked responses (pairs records), but "
                f"data.datasets are {', '.join(formats)}"
            )


def prepare_starting_model(base: Config, directory: Path) -> Path:
    """Build or load the starting model once, with every token any variant needs (without
    an adapter: each variant attaches its own to this base). Saved under a temporary name
    and renamed, so an init_model/ that exists is complete (a resumed ablation reuses it)."""
    init = directory / "init_model"
    if init.is_dir():
        return init
    prepared = prepare_model_and_tokenizer(
        _with(base, {"name": "remask"}, model={"adapter": None, "quantization": None}), base.run.seed
    )
    partial = directory / "init_model.partial"
    shutil.rmtree(partial, ignore_errors=True)
    prepared.model.save_pretrained(partial)
    prepared.tokenizer.save_pretrained(partial)
    partial.rename(init)
    return init


def _fingerprint(base: Config, test_path: str) -> dict:
    """What a resumed ablation must share with the one it continues."""
    return json.loads(json.dumps({"config": base.model_dump(mode="json"), "test_file": str(test_path)}, default=str))


def _first_difference(old, new, path: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            if old.get(key) != new.get(key):
                return _first_difference(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
    return path or "(the whole config)"


def prepare_ablation_dir(directory: Path, fingerprint: dict, overwrite: bool, resume: bool) -> dict:
    """The ablation directory's state: a fresh one, the one `resume` continues (same config
    and test file), or a fresh one after `overwrite` deleted the old (only an ablation
    directory: ablation_state.json or ablation.json in it)."""
    rundir.check_resume_overwrite(resume, overwrite)
    state_path = directory / STATE_FILE
    ours = state_path.is_file() or (directory / RESULTS_FILE).is_file()
    if resume:
        if not state_path.is_file():
            why = (
                "it was written by an older lmforge without " + STATE_FILE
                if ours
                else "there is no ablation here (" + STATE_FILE + ") to continue"
            )
            raise LmforgeError(f"{directory}: --resume given but {why}")
        state = json.loads(state_path.read_text(encoding="utf-8"))
        previous = {key: state.get(key) for key in fingerprint}
        if previous != fingerprint:
            raise LmforgeError(
                f"{directory}: the ablation there ran with a different "
                f"{_first_difference(previous, fingerprint)}; --resume continues only the same "
                "config and --test file (pass --overwrite to start again)"
            )
        state["status"] = "running"
        rundir.write_json_atomic(state_path, state)
        return state
    if not rundir.is_empty_or_missing(directory):
        if not ours:
            raise rundir.foreign(directory, "ablation", "run.output_dir")
        if not overwrite:
            if state_path.is_file():
                finished = json.loads(state_path.read_text(encoding="utf-8")).get("status") == "finished"
                raise rundir.occupied(directory, "a finished ablation" if finished else "an unfinished ablation")
            raise rundir.occupied(
                directory, "a finished ablation", f"--resume needs {STATE_FILE}, which an older lmforge did not write"
            )
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {"status": "running", **fingerprint, "runs": {}}
    rundir.write_json_atomic(state_path, state)
    return state


def _train(config: Config, run_dir: Path, resuming: bool):
    """Train one variant x seed; when resuming, an unfinished run continues from its latest
    checkpoint, and anything else there (no checkpoint yet, or killed before its run.json
    was written) starts again."""
    if resuming:
        if rundir.read_run(run_dir) is not None and rundir.latest_checkpoint(run_dir) is not None:
            return run_training(config, resume=True).require_finished()
        if run_dir.exists():
            shutil.rmtree(run_dir)  # inside our own ablation directory
    return run_training(config).require_finished()


def run_ablation(
    base: Config, variants: list[str], seeds: int, test_path: str, overwrite: bool = False, resume: bool = False
) -> dict:
    directory = base.output_path
    rundir.check_resume_overwrite(resume, overwrite)
    task = load_task(test_path)
    if task.kind != "generate":
        raise LmforgeError(
            f"--test {test_path}: held-out problems must be CoT ({{question, rationale, answer}}) or "
            f"GSM8K ({{question, answer}}) records, not {task.kind} records"
        )
    check_variant_data(base, variants)
    state = prepare_ablation_dir(directory, _fingerprint(base, test_path), overwrite, resume)
    init_model = prepare_starting_model(base, directory)
    options = EvalOptions(max_new_tokens=MAX_NEW_TOKENS, batch_size=64)

    results = {variant: VariantResult(variant) for variant in variants}
    for variant in variants:
        for k in range(seeds):
            run_dir = directory / variant / f"seed-{k}"
            key = f"{variant}/seed-{k}"
            config = variant_config(base, variant, base.run.seed + k, init_model, run_dir)
            existing = rundir.read_run(run_dir) if resume else None
            finished = existing is not None and existing.get("status") == "finished"
            if finished and key in state["runs"]:
                log.info("ablation: %s, seed %d/%d finished earlier; kept", variant, k + 1, seeds)
                scores = state["runs"][key]
            else:
                if finished:
                    log.info("ablation: %s, seed %d/%d trained earlier; scoring it", variant, k + 1, seeds)
                    model_dir, metrics = run_dir / rundir.MODEL_DIR, existing.get("final_metrics") or {}
                else:
                    log.info("ablation: %s, seed %d/%d", variant, k + 1, seeds)
                    trained = _train(config, run_dir, resume)
                    model_dir, metrics = trained.model_dir, trained.metrics
                model, tokenizer, meta = load_model_dir(model_dir)
                scores = {
                    "accuracy": evaluate_task(model, tokenizer, meta, task, options).metrics[task.primary_metric],
                    "val_loss": metrics.get("eval_loss"),
                }
                state["runs"][key] = scores
                rundir.write_json_atomic(directory / STATE_FILE, state)
            results[variant].accuracies.append(scores["accuracy"])
            if scores.get("val_loss") is not None:
                results[variant].val_losses.append(scores["val_loss"])

    table = [results[v].summary() for v in variants]
    payload = {"variants": table, "seeds": seeds, "test_file": test_path, "test_problems": len(task.items)}
    (directory / RESULTS_FILE).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    (directory / "ablation.md").write_text(ablation_markdown(table, len(task.items), seeds), encoding="utf-8")
    plot_ablation(table, directory / "ablation.png")
    state["status"] = "finished"
    rundir.write_json_atomic(directory / STATE_FILE, state)
    return payload


def ablation_markdown(table: list[dict], n_problems: int, seeds: int) -> str:
    lines = [
        f"Strict exact match on {n_problems} held-out problems and validation loss; mean ± sd over {seeds} "
        "seed(s), same starting model and data.",
        "",
        "| Model | Exact match | Validation loss |",
        "|---|---|---|",
    ]
    for row in table:
        lines.append(
            f"| {row['label']} | {100 * row['accuracy_mean']:.2f}% ± {100 * row['accuracy_sd']:.2f} | "
            f"{row['val_loss_mean']:.4f} ± {row['val_loss_sd']:.4f} |"
        )
    return "\n".join(lines) + "\n"
