"""`lmforge ablate`: train several objectives from the same starting model and data over
several seeds, and report seed 004's table: strict exact match on held-out problems
(mean ± sd over seeds; `lmforge eval`'s exact_match_strict, 0 shots, each model in its own
prompt format) and validation loss, as markdown, JSON and a bar chart.

With `--select-on VAL.jsonl` each run is scored at its best checkpoint rather than its
last: `lmforge sweep` scores every checkpoint-N on the validation problems, the best one
(earliest of ties) is scored on `--test`, and the table adds the validation score, the
chosen step and the last checkpoint's test score (what training longer cost). Without
`--test`, only validation is scored: a hyper-parameter search never sees the test split.

    ABLATION_DIR (= the config's run.output_dir)/
      ablation_state.json          written first: the config, and each finished run's scores
      init_model/                  the shared starting model (special + mask tokens added)
      <variant>/seed-<k>/          one ordinary run directory per training run
                                   (+ sweep/ with --select-on: every checkpoint's score)
      ablation.md, ablation.json, ablation.png
      ablation_curves.png          with --select-on: validation score per checkpoint

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
from lmforge.eval.checkpoint import load_checkpoint
from lmforge.eval.evaluate import EvalOptions, evaluate_task
from lmforge.eval.sweep import run_sweep
from lmforge.eval.tasks import Task, load_task
from lmforge.report.plots import plot_ablation, plot_selection_curves
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
    "neftune": "ce",
}
NEFTUNE_ALPHA = 5.0
"""The `neftune` variant's noise scale when the config sets no train.neftune_alpha (the
NEFTune paper's most used value; seed 000 trains with 10)."""
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
    "neftune": "NEFTune",
}
log = logging.getLogger("lmforge.ablate")


def _mean_sd(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


@dataclass
class VariantResult:
    """One variant's scores over seeds. `accuracies`: test exact match (at the best
    checkpoint with --select-on); `val_accuracies` / `best_steps` / `last_accuracies`: the
    chosen checkpoint's validation score, its step, and the last checkpoint's test score."""

    variant: str
    accuracies: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    val_accuracies: list[float] = field(default_factory=list)
    best_steps: list[int] = field(default_factory=list)
    last_accuracies: list[float] = field(default_factory=list)

    def _series(self) -> tuple[tuple[str, list], ...]:
        """Each score's name (its key in a run's scores) and its values over seeds."""
        return (
            ("accuracy", self.accuracies),
            ("val_loss", self.val_losses),
            ("val_accuracy", self.val_accuracies),
            ("best_step", self.best_steps),
            ("last_accuracy", self.last_accuracies),
        )

    def add(self, scores: dict) -> None:
        for key, values in self._series():
            if scores.get(key) is not None:
                values.append(scores[key])

    def summary(self) -> dict:
        summary = {"variant": self.variant, "label": LABELS[self.variant]}
        for name, values in self._series():
            summary[f"{name}_mean"], summary[f"{name}_sd"] = _mean_sd(values)
        return {
            **summary,
            "accuracies": self.accuracies,
            "val_losses": self.val_losses,
            "val_accuracies": self.val_accuracies,
            "best_steps": self.best_steps,
            "last_accuracies": self.last_accuracies,
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
    train = {"neftune_alpha": base.train.neftune_alpha or NEFTUNE_ALPHA} if variant == "neftune" else {}
    return _with(
        base,
        {"name": name, **shared},
        run={"seed": seed, "output_dir": str(run_dir)},
        model={"name_or_path": str(init_model), "tokenizer": None},
        train=train,
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


def _fingerprint(base: Config, test_path: str | None, select_on: str | None) -> dict:
    """What a resumed ablation must share with the one it continues."""
    return json.loads(
        json.dumps(
            {"config": base.model_dump(mode="json"), "test_file": test_path, "select_on": select_on}, default=str
        )
    )


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


def _generation_task(path: str, flag: str) -> Task:
    task = load_task(path)
    if task.kind != "generate":
        raise LmforgeError(
            f"{flag} {path}: held-out problems must be CoT ({{question, rationale, answer}}) or "
            f"GSM8K ({{question, answer}}) records, not {task.kind} records"
        )
    return task


def _check_selection(base: Config) -> None:
    """--select-on needs checkpoints to choose from: every save kept."""
    if not base.train.save_every:
        raise LmforgeError(
            "--select-on: train.save_every is not set; the best checkpoint is chosen among the "
            "run's checkpoint-N directories (set train.save_every and a train.save_total_limit "
            "that keeps them all)"
        )


def _score(model_dir: Path, task: Task, options: EvalOptions) -> float:
    loaded = load_checkpoint(model_dir)
    return evaluate_task(loaded.model, loaded.tokenizer, loaded.meta, task, options).metrics[task.primary_metric]


def _score_run(
    run_dir: Path, model_dir: Path, metrics: dict, test: Task | None, select_on: Task | None, options: EvalOptions
) -> dict:
    """The run's scores: test accuracy of the final model, or, with `select_on`, of the
    checkpoint `lmforge sweep` ranks best on the validation problems (plus that score, its
    step, every checkpoint's score and the last checkpoint's test accuracy)."""
    scores: dict = {"val_loss": metrics.get("eval_loss")}
    if select_on is None:
        return {**scores, "accuracy": _score(model_dir, test, options)}
    sweep = run_sweep(run_dir, [select_on], options)  # rows oldest first, one per checkpoint
    if len(sweep["rows"]) < 2:
        log.warning("ablation: %s has %d checkpoint(s) to choose from", run_dir, len(sweep["rows"]))
    scores.update(
        val_accuracy=sweep["best"]["value"],
        best_step=sweep["best"]["step"],
        val_curve=[[row["step"], row["metrics"][select_on.name][select_on.primary_metric]] for row in sweep["rows"]],
    )
    if test is not None:
        scores["accuracy"] = _score(Path(sweep["best"]["path"]), test, options)
        scores["last_accuracy"] = _score(Path(sweep["rows"][-1]["path"]), test, options)
    return scores


def run_ablation(
    base: Config,
    variants: list[str],
    seeds: int,
    test_path: str | None,
    overwrite: bool = False,
    resume: bool = False,
    select_on: str | None = None,
) -> dict:
    directory = base.output_path
    rundir.check_resume_overwrite(resume, overwrite)
    if test_path is None and select_on is None:
        raise LmforgeError("ablate: give --test (held-out problems to score), --select-on, or both")
    test = _generation_task(test_path, "--test") if test_path else None
    validation = _generation_task(select_on, "--select-on") if select_on else None
    if validation is not None:
        _check_selection(base)
    check_variant_data(base, variants)
    state = prepare_ablation_dir(directory, _fingerprint(base, test_path, select_on), overwrite, resume)
    init_model = prepare_starting_model(base, directory)
    options = EvalOptions(max_new_tokens=MAX_NEW_TOKENS, batch_size=64, show_progress=False)

    results = {variant: VariantResult(variant) for variant in variants}
    curves: dict[str, list[list[list[float]]]] = {variant: [] for variant in variants}
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
                scores = _score_run(run_dir, model_dir, metrics, test, validation, options)
                state["runs"][key] = scores
                rundir.write_json_atomic(directory / STATE_FILE, state)
            results[variant].add(scores)
            if scores.get("val_curve"):
                curves[variant].append(scores["val_curve"])

    table = [results[v].summary() for v in variants]
    payload = {
        "variants": table,
        "seeds": seeds,
        "test_file": test_path,
        "test_problems": len(test.items) if test else 0,
        "select_on": select_on,
        "validation_problems": len(validation.items) if validation else 0,
        "val_curves": {v: c for v, c in curves.items() if c},
    }
    (directory / RESULTS_FILE).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    (directory / "ablation.md").write_text(ablation_markdown(payload), encoding="utf-8")
    plot_ablation(table, directory / "ablation.png", on_test=test is not None)
    if validation is not None:
        plot_selection_curves(
            {LABELS[v]: c for v, c in curves.items() if c}, directory / "ablation_curves.png", validation.name
        )
    state["status"] = "finished"
    rundir.write_json_atomic(directory / STATE_FILE, state)
    return payload


def _cell(row: dict, name: str, percent: bool = True, digits: int = 2) -> str:
    mean, sd = row[f"{name}_mean"], row[f"{name}_sd"]
    if mean != mean:  # nan: nothing measured
        return "–"
    scale, unit = (100, "%") if percent else (1, "")
    return f"{scale * mean:.{digits}f}{unit} ± {scale * sd:.{digits}f}"


def ablation_markdown(payload: dict) -> str:
    """The table of `run_ablation`'s payload: seed 004's columns, plus the checkpoint
    selection's when it chose on validation problems."""
    table, seeds = payload["variants"], payload["seeds"]
    selected = bool(payload.get("select_on"))
    scored = bool(payload.get("test_file"))
    if selected:
        intro = (
            f"Each run at its best checkpoint by strict exact match on {payload['validation_problems']} "
            f"validation problems"
            + (f", scored on {payload['test_problems']} test problems" if scored else " (no test split scored)")
            + f"; mean ± sd over {seeds} seed(s), same starting model and data."
        )
    else:
        intro = (
            f"Strict exact match on {payload['test_problems']} held-out problems and validation loss; "
            f"mean ± sd over {seeds} seed(s), same starting model and data."
        )
    columns = [("Model", lambda r: r["label"])]
    if scored:
        columns.append(("Test exact match" if selected else "Exact match", lambda r: _cell(r, "accuracy")))
    if selected:
        columns += [
            ("Validation exact match", lambda r: _cell(r, "val_accuracy")),
            ("Best step", lambda r: _cell(r, "best_step", percent=False, digits=0)),
        ]
        if scored:
            columns.append(("Test exact match, last checkpoint", lambda r: _cell(r, "last_accuracy")))
    columns.append(("Validation loss", lambda r: _cell(r, "val_loss", percent=False, digits=4)))
    lines = [
        intro,
        "",
        "| " + " | ".join(name for name, _ in columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for row in table:
        lines.append("| " + " | ".join(cell(row) for _, cell in columns) + " |")
    return "\n".join(lines) + "\n"
