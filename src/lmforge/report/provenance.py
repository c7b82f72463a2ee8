"""A self-describing model: a finished run's provenance carried into its model/lmforge.json,
so that a model copied out of its run directory still says how it was made, and its model
card can be written again from the model directory alone (report/card_inputs.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmforge import rundir
from lmforge.errors import LmforgeError

MODEL_META_FILE = "lmforge.json"  # written by train.pipeline.save_final_model, completed here
METRICS_FILE = "metrics.jsonl"
EVAL_DIR = "eval"  # `lmforge eval` results kept in the run (eval/cli.py keep_in_run)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LmforgeError(f"{path}: not valid JSON ({exc})") from None


def describe_model(run_dir: Path, run: dict[str, Any] | None = None) -> Path | None:
    """Carry a finished run's provenance into its model/lmforge.json, next to the keys
    save_final_model wrote (prompt_format, cot, stop_strings, adapter, ...):

        run_name        the run directory's name
        run             run.json: status, times, library versions and git hash (rundir.start_run),
                        data_sha256 and the data reports, final_metrics, global_step
        config          config.yaml as a mapping (the resolved config)
        training_evals  the metrics.jsonl lines with evaluation scores (eval_*)
        evals           eval/*.json by file name: the `lmforge eval` records of the model

    Called when the run finishes (with `run`, its finished record, which run.json receives
    only afterwards: "finished" is the last thing a run writes) and whenever `lmforge eval`
    keeps new results in the run; returns the file written, or None when the run is not
    finished or has no model/."""
    run_dir = Path(run_dir)
    path = run_dir / rundir.MODEL_DIR / MODEL_META_FILE
    run = run if run is not None else rundir.read_run(run_dir)
    if run is None or run.get("status") != "finished" or not path.is_file():
        return None
    metrics = run_dir / METRICS_FILE
    rows = (
        [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if line.strip()]
        if metrics.is_file()
        else []
    )
    meta = read_json(path)
    meta.update(
        run_name=run_dir.resolve().name,
        run=run,
        config=rundir.read_config(run_dir),
        training_evals=[row for row in rows if any(str(key).startswith("eval_") for key in row)],
        evals={p.name: read_json(p) for p in sorted((run_dir / EVAL_DIR).glob("*.json"))},
    )
    rundir.write_json_atomic(path, meta)
    return path
