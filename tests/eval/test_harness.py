"""The harness bridge against lmforge's own evaluator on the same checkpoint, data and
few-shot prompts: multiple-choice acc / acc_norm / acc_bytes and GSM8K strict / flexible
exact match must agree, item by item."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lmforge.errors import LmforgeError
from lmforge.eval import harness
from lmforge.eval.evaluate import DEFAULT_MAX_NEW_TOKENS, EvalOptions
from lmforge.eval.runner import run_eval
from lmforge.eval.tasks import load_task
from tests.eval.conftest import TEST, TRAIN, cli_error, gsm8k_answer

pytest.importorskip("lm_eval")

OPTIONS = EvalOptions(shots=2, seed=3, batch_size=8, max_new_tokens=40)


def _with_model_answers(path, predictions, output):
    """The GSM8K file with every other gold answer replaced by the model's own strict answer
    written as '$n' (normalization must strip the '$'), so accuracy is neither 0 nor 1."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for i, (row, predicted) in enumerate(zip(rows, predictions)):
        if i % 2 == 0 and predicted is not None:
            row["answer"] = row["answer"].rpartition("#### ")[0] + f"#### ${predicted}"
    output.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return output


def test_harness_agrees_with_lmforge(gsm8k_model_dir, task_files, tmp_path):
    gsm8k = str(task_files["gsm8k"])
    run_eval(gsm8k_model_dir, [load_task(gsm8k, fewshot=gsm8k)], OPTIONS, tmp_path / "first.json")
    strict = [json.loads(line)["strict"] for line in (tmp_path / "first.samples.jsonl").read_text().splitlines()]
    assert sum(s is not None for s in strict) >= len(TEST) // 2, "the model should write '#### n' answers"
    golds = str(_with_model_answers(task_files["gsm8k"], strict, tmp_path / "gsm8k_gold.jsonl"))

    # same few-shot pool (the unmodified file), so the prompts are those of the first run
    tasks = [load_task(str(task_files["arc"])), load_task(golds, fewshot=gsm8k)]
    ours = run_eval(gsm8k_model_dir, tasks, OPTIONS, tmp_path / "ours.json")
    theirs = harness.run_harness(gsm8k_model_dir, tasks, OPTIONS, tmp_path / "harness.json")

    ours_m, theirs_m = ({t["name"]: t["metrics"] for t in r["tasks"]} for r in (ours, theirs))
    for metric in ("acc", "acc_norm", "acc_bytes"):
        assert ours_m["arc"][metric] == pytest.approx(theirs_m["arc"][metric], abs=1e-9), metric
    for metric in ("exact_match_strict", "exact_match_flexible"):
        assert ours_m["gsm8k_gold"][metric] == pytest.approx(theirs_m["gsm8k_gold"][metric], abs=1e-9), metric
    assert 0.0 < ours_m["gsm8k_gold"]["exact_match_strict"] < 1.0
    assert 0.0 <= ours_m["arc"]["acc_norm"] <= 1.0

    # item by item: the same prompts, log-likelihoods and generations
    ours_samples = [json.loads(line) for line in (tmp_path / "ours.samples.jsonl").read_text().splitlines()]
    harness_samples = [json.loads(line) for line in (tmp_path / "harness.samples.jsonl").read_text().splitlines()]
    arc_ours = [s for s in ours_samples if s["task"] == "arc"]
    arc_theirs = [s for s in harness_samples if s["task"] == "arc"]
    for mine, its in zip(arc_ours, arc_theirs, strict=True):
        assert its["arguments"]["gen_args_0"]["arg_0"] == mine["context"]
        assert [float(r[0][0]) for r in its["resps"]] == pytest.approx(mine["logliks"], abs=1e-4)
    gen_ours = [s for s in ours_samples if s["task"] == "gsm8k_gold"]
    gen_theirs = [s for s in harness_samples if s["task"] == "gsm8k_gold" and s["filter"] == "strict-match"]
    for mine, its in zip(gen_ours, gen_theirs, strict=True):
        assert its["arguments"]["gen_args_0"]["arg_0"] == mine["context"]
        assert its["resps"][0][0] == mine["output"]
        assert its["filtered_resps"][0] == (mine["strict"] if mine["strict"] is not None else "[invalid]")


def test_failed_harness_run_is_a_one_line_error(random_model_dir, task_files, tmp_path, monkeypatch, capsys):
    def failing(*args, **kwargs):
        return [
            sys.executable,
            "-c",
            "import sys; print('loading...', file=sys.stderr); "
            "raise ValueError('Attempted to load task lmforge_arc: broken YAML')",
        ]

    monkeypatch.setattr(harness, "harness_command", failing)
    message = cli_error(
        capsys,
        [
            "eval",
            str(random_model_dir),
            "--task",
            str(task_files["arc"]),
            "--harness",
            "--output",
            str(tmp_path / "h.json"),
        ],
    )
    assert "lm-evaluation-harness failed (exit 1): ValueError: Attempted to load task lmforge_arc" in message


def test_harness_bridge_refuses_qa(random_model_dir, task_files, tmp_path):
    with pytest.raises(LmforgeError, match="the harness bridge covers"):
        harness.run_harness(random_model_dir, [load_task(str(task_files["squad"]))], OPTIONS, tmp_path / "h.json")


# ------------------------------------------------ the harness's own few-shot prompts


def _native_task(directory, name, shipped, files, **overrides):
    """A task YAML of the shipped harness config `shipped` (tasks/gsm8k/gsm8k.yaml, ...) over
    local files: everything else (prompt, delimiters, until, splits, metrics) as shipped."""
    import lm_eval
    import yaml

    config = yaml.safe_load((Path(lm_eval.__file__).parent / "tasks" / shipped).read_text())
    config.pop("tag", None)
    config.pop("dataset_name", None)
    config.update(
        task=name,
        dataset_path="json",
        dataset_kwargs={"data_files": {k: str(v) for k, v in files.items()}},
        **overrides,
    )
    (directory / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return name


def _write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _short_gsm(rows):
    firsts = [r["question"].split(". ")[0] for r in rows]
    return [
        {
            "question": f"{first}. How many?",
            "answer": f"{first.split()[2]} = {first.split()[2]}.\n#### {first.split()[2]}",
        }
        for first in firsts
    ]


LONG_SHOTS = 16


def _full_gsm(rows):
    return [{"question": r["question"], "answer": gsm8k_answer(r)} for r in rows]


def _arc_rows(rows):
    return [
        {
            "id": f"q{i}",
            "question": r["question"],
            "choices": {"text": [str(int(r["answer"]) + 1), r["answer"], "none"], "label": ["A", "B", "C"]},
            "answerKey": "B" if i % 3 else "A",
        }
        for i, r in enumerate(rows)
    ]


MMLU_SUBJECTS = ("high_school_mathematics", "world_religions")


def _mmlu_rows(rows, subject):
    """MMLU-schema records (question, subject, four choices, answer index) from the problems."""
    out = []
    for i, r in enumerate(rows):
        right = int(r["answer"])
        choices = [str(right + d) for d in (1, 0, 2, -1)] if i % 2 else [str(right), str(right + 3), "none", "7"]
        out.append(
            {
                "question": f" {r['question']} ",
                "subject": subject,
                "choices": choices,
                "answer": choices.index(str(right)),
            }
        )
    return out


def _mmlu_task(directory, subject, test, dev):
    """The harness's own MMLU subject task: its shipped default template (first_n sampler,
    dev split, lettered layout) with the description its generator writes, over local files."""
    import lm_eval
    import yaml

    config = yaml.safe_load((Path(lm_eval.__file__).parent / "tasks/mmlu/default/_default_template_yaml").read_text())
    config.update(
        task=f"mmlu_{subject}",
        dataset_path="json",
        dataset_kwargs={"data_files": {"test": str(test), "dev": str(dev)}},
        num_fewshot=5,
        description=f"The following are multiple choice questions (with answers) about "
        f"{' '.join(subject.split('_'))}.\n\n",
    )
    (directory / f"mmlu_{subject}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return f"mmlu_{subject}"


def test_harness_draws_the_same_fewshot_prompts(gsm8k_model_dir, tmp_path):
    """The real harness, building its own 5-shot GSM8K, 25-shot ARC and 5-shot MMLU prompts
    from its shipped task configs over the same local files, against lmforge's defaults: the
    same prompts byte for byte and the same per-item results. Both pool cases: a separate
    few-shot split (as shipped) and the evaluated split itself (n+1 drawn, itself removed).
    MMLU: one lmforge task over a file of two subjects against the harness's task per
    subject (few-shot examples from the same subject's dev split, first_n)."""
    from lmforge.eval.answers import harness_match
    from lmforge.eval.checkpoint import resolve
    from lmforge.eval.fewshot import PLAIN_UNTIL, make_style
    from lmforge.models.loading import load_tokenizer

    import lm_eval
    import yaml
    from lm_eval.models.huggingface import HFLM

    shipped_gsm8k = yaml.safe_load((Path(lm_eval.__file__).parent / "tasks/gsm8k/gsm8k.yaml").read_text())
    assert tuple(shipped_gsm8k["generation_kwargs"]["until"]) == PLAIN_UNTIL
    assert "max_gen_toks" not in shipped_gsm8k["generation_kwargs"]
    # the default generation limit of a task without its own
    assert HFLM.max_gen_toks.fget(None) == DEFAULT_MAX_NEW_TOKENS == 256 and EvalOptions().max_new_tokens is None
    data, tasks_dir = tmp_path / "data", tmp_path / "tasks"
    data.mkdir(), tasks_dir.mkdir()
    # Short problems ("Emma has 7 stamps. How many?") and a 64-token limit (set in the YAML as
    # max_gen_toks): 5-shot prompts (~280 tokens) + 64 fit the model's 512 positions. The
    # full problems with rationales at 16 shots (gsm_long: prompts of ~700-800 tokens) do not:
    # both keep each prompt's last 512 - 64 tokens. The default limits (256) are checked above.
    gsm = _short_gsm(TEST)
    files = {
        "gsm_train": _write_rows(data / "gsm_train.jsonl", _short_gsm(TRAIN[:40])),
        "gsm_split": _write_rows(data / "gsm_split.jsonl", gsm),
        "gsm_self": _write_rows(data / "gsm_self.jsonl", gsm),
        "gsm_long_train": _write_rows(data / "gsm_long_train.jsonl", _full_gsm(TRAIN[:40])),
        "gsm_long": _write_rows(data / "gsm_long.jsonl", _full_gsm(TEST[:12])),
        "arc_train": _write_rows(data / "arc_train.jsonl", _arc_rows(TRAIN[:40])),
        "arc_split": _write_rows(data / "arc_split.jsonl", _arc_rows(TRAIN[100:112])),
        "arc_self": _write_rows(data / "arc_self.jsonl", _arc_rows(TRAIN[100:130])),
    }
    mmlu_test = {
        subject: _mmlu_rows(TRAIN[130 + 10 * i : 140 + 10 * i], subject) for i, subject in enumerate(MMLU_SUBJECTS)
    }
    mmlu_dev = {
        subject: _mmlu_rows(TRAIN[160 + 7 * i : 167 + 7 * i], subject) for i, subject in enumerate(MMLU_SUBJECTS)
    }
    files["mmlu"] = _write_rows(data / "mmlu.jsonl", [r for s in MMLU_SUBJECTS for r in mmlu_test[s]])
    files["mmlu_dev"] = _write_rows(data / "mmlu_dev.jsonl", [r for s in MMLU_SUBJECTS for r in mmlu_dev[s]])
    generation = {**shipped_gsm8k["generation_kwargs"], "max_gen_toks": 64}
    names = [
        _native_task(
            tasks_dir,
            "gsm_split",
            "gsm8k/gsm8k.yaml",
            {"train": files["gsm_train"], "test": files["gsm_split"]},
            generation_kwargs=generation,
        ),
        _native_task(
            tasks_dir,
            "gsm_self",
            "gsm8k/gsm8k.yaml",
            {"test": files["gsm_self"]},
            training_split=None,
            fewshot_split="test",
            generation_kwargs=generation,
        ),
        _native_task(
            tasks_dir,
            "gsm_long",
            "gsm8k/gsm8k.yaml",
            {"train": files["gsm_long_train"], "test": files["gsm_long"]},
            generation_kwargs=generation,
            num_fewshot=LONG_SHOTS,
        ),
        _native_task(
            tasks_dir,
            "arc_split",
            "arc/arc_easy.yaml",
            {"train": files["arc_train"], "validation": files["arc_split"], "test": files["arc_split"]},
            num_fewshot=25,
        ),
        _native_task(
            tasks_dir,
            "arc_self",
            "arc/arc_easy.yaml",
            {"test": files["arc_self"]},
            training_split=None,
            validation_split=None,
            fewshot_split="test",
            num_fewshot=25,
        ),
        *(
            _mmlu_task(
                tasks_dir,
                subject,
                _write_rows(data / f"{subject}_test.jsonl", mmlu_test[subject]),
                _write_rows(data / f"{subject}_dev.jsonl", mmlu_dev[subject]),
            )
            for subject in MMLU_SUBJECTS
        ),
    ]
    source = resolve(gsm8k_model_dir)
    command = harness.harness_command(source, names, tasks_dir, tmp_path / "out", EvalOptions(batch_size=8), 512)
    env = {**os.environ, **harness.OFFLINE_ENV, "HF_DATASETS_CACHE": str(tmp_path / "hf")}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    def theirs(name, filt="none"):
        path = next((tmp_path / "out").rglob(f"samples_{name}_*.jsonl"))
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        return sorted((r for r in rows if r["filter"] == filt), key=lambda r: r["doc_id"])

    def ours(name, shots, fewshot=None):
        options = EvalOptions(shots=shots, batch_size=8, max_new_tokens=64)  # defaults: harness sampler, seed 1234
        run_eval(
            gsm8k_model_dir,
            [load_task(str(files[name]), fewshot=fewshot and str(files[fewshot]))],
            options,
            tmp_path / f"{name}.json",
        )
        return [json.loads(line) for line in (tmp_path / f"{name}.samples.jsonl").read_text().splitlines()]

    bos = make_style("plain", load_tokenizer(str(source.tokenizer_dir)), source.meta).bos
    counts = {}
    for name, fewshot in (("gsm_split", "gsm_train"), ("gsm_self", None), ("gsm_long", "gsm_long_train")):
        shots = LONG_SHOTS if name == "gsm_long" else 5
        mine, strict, flexible = (
            ours(name, shots, fewshot),
            theirs(name, "strict-match"),
            theirs(name, "flexible-extract"),
        )
        counts[name] = (
            sum(bos + s["arguments"]["gen_args_0"]["arg_0"] == m["context"] for m, s in zip(mine, strict)),
            sum(
                s["resps"][0][0] == m["output"]
                and s["exact_match"] == harness_match(m["strict"], m["gold"])
                and f["exact_match"] == harness_match(m["flexible"], m["gold"])
                for m, s, f in zip(mine, strict, flexible)
            ),
            len(mine),
            len(strict),
        )
    for name, fewshot in (("arc_split", "arc_train"), ("arc_self", None)):
        mine, its = ours(name, 25, fewshot), theirs(name)
        counts[name] = (
            sum(bos + s["arguments"]["gen_args_0"]["arg_0"] == m["context"] for m, s in zip(mine, its)),
            sum(
                s["acc"] == float(m["acc"] == m["gold"]) and s["acc_norm"] == float(m["acc_norm"] == m["gold"])
                for m, s in zip(mine, its)
            ),
            len(mine),
            len(its),
        )
    mine = ours("mmlu", 5, "mmlu_dev")  # the task's own sampler: first_n, per subject
    its = [row for subject in MMLU_SUBJECTS for row in theirs(f"mmlu_{subject}")]
    counts["mmlu"] = (
        sum(bos + s["arguments"]["gen_args_0"]["arg_0"] == m["context"] for m, s in zip(mine, its)),
        sum(s["acc"] == float(m["acc"] == m["gold"]) for m, s in zip(mine, its)),
        len(mine),
        len(its),
    )
    print("prompts identical, results identical, lmforge items, harness items:", counts)
    assert all(
        same_prompts == same_results == n == n_harness for same_prompts, same_results, n, n_harness in counts.values()
    ), counts
