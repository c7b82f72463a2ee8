"""`lmforge eval compare`: results files as one tasks × models table with standard errors,
and a bar chart; the bad inputs."""

from __future__ import annotations

import json

import pytest

from lmforge.errors import LmforgeError
from lmforge.eval.compare import compare_markdown, comparison_rows, load_records, model_labels
from tests.eval.conftest import cli_error, run_cli


def record(path: str, tasks: list[dict]) -> dict:
    return {"lmforge_eval": 1, "model": {"path": path}, "tasks": tasks}


def task(name: str, metrics: dict, primary: str, shots: int = 0) -> dict:
    return {"name": name, "shots": shots, "prompt_format": "plain", "primary_metric": primary, "metrics": metrics}


SFT = record(
    "runs/sft/model",
    [
        task(
            "gsm8k",
            {"exact_match_strict": 0.2434, "exact_match_strict_stderr": 0.0118, "n": 1319},
            "exact_match_strict",
            shots=5,
        )
    ],
)
REMASK = record(
    "runs/remask/model",
    [
        task(
            "gsm8k",
            {"exact_match_strict": 0.279, "exact_match_strict_stderr": 0.0124, "n": 1319},
            "exact_match_strict",
            shots=5,
        ),
        task("arc", {"acc": 0.41, "acc_norm": 0.4326, "acc_norm_stderr": 0.0145}, "acc_norm", shots=25),
    ],
)


def test_table_of_tasks_by_models_with_stderr_and_gaps():
    rows = comparison_rows([SFT, REMASK])
    assert [(r.task, r.metric, r.primary) for r in rows] == [
        ("gsm8k", "exact_match_strict", True),
        ("arc", "acc", False),
        ("arc", "acc_norm", True),
    ]
    table = compare_markdown(model_labels(["a.json", "b.json"], [SFT, REMASK]), rows)
    assert table.splitlines() == [
        "| task | shots | format | metric | sft | remask |",
        "|---|---:|---|---|---:|---:|",
        "| gsm8k | 5 | plain | exact_match_strict | 24.34% ± 1.18% | 27.90% ± 1.24% |",
        "| arc | 25 | plain | acc | — | 41.00% |",
        "| arc | 25 | plain | acc_norm | — | 43.26% ± 1.45% |",
    ]


def test_two_models_with_one_name_are_told_apart_by_their_files():
    assert model_labels(["x/sft-step1.json", "x/sft-step2.json"], [SFT, SFT]) == ["sft-step1", "sft-step2"]


def test_cli_writes_the_table_and_a_png(tmp_path, capsys):
    paths = []
    for name, content in (("sft", SFT), ("remask", REMASK)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(content))
    output = tmp_path / "out" / "compare.png"
    code, out, err = run_cli(capsys, ["eval", "compare", *map(str, paths), "--output", str(output)])
    assert code == 0, err
    assert "| gsm8k | 5 | plain | exact_match_strict | 24.34% ± 1.18% | 27.90% ± 1.24% |" in out
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert output.with_suffix(".md").read_text() in out


def test_real_results_files_compare(tmp_path, capsys, trained_run, task_files):
    outputs = []
    for model in (trained_run, trained_run / "checkpoint-2"):
        outputs.append(tmp_path / f"{model.name}.json")
        code, _, err = run_cli(
            capsys, ["eval", str(model), "--task", str(task_files["arc"]), "--output", str(outputs[-1])]
        )
        assert code == 0, err
    code, out, err = run_cli(
        capsys, ["--debug", "eval", "compare", *map(str, outputs), "--output", str(tmp_path / "c.png")]
    )
    assert code == 0, err
    header = out.splitlines()[0]
    assert header.endswith(f"| {trained_run.name} | checkpoint-2 |")
    assert "| acc_norm |" in out


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such results file"),
        ("{not json", "not valid JSON"),
        ('{"tasks": []}', "not an lmforge eval results file"),
    ],
)
def test_bad_results_files_are_one_line_errors(tmp_path, capsys, content, message):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(SFT))
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    error = cli_error(capsys, ["eval", "compare", str(good), str(bad), "--output", str(tmp_path / "c.png")])
    assert error.startswith(f"lmforge: error: {bad}:") and message in error
    assert not (tmp_path / "c.png").exists()


def test_one_file_is_not_a_comparison():
    with pytest.raises(LmforgeError, match="at least two results files"):
        load_records(["a.json"])
