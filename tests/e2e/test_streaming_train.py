"""data.streaming end to end: a weighted mixture of plain-text files trains on a tiny model;
a run killed after a checkpoint and resumed ends with the uninterrupted run's weights
(the stream's position is in the checkpoint: nothing is replayed or skipped); each training
log line and run.json carry the per-source token accounting; config errors name the key."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from lmforge.config import load_config
from lmforge.errors import LmforgeError
from lmforge.rundir import read_run
from lmforge.train.pipeline import run_training
from tests.e2e.conftest import write_config
from tests.e2e.test_resume import Interrupt

WORDS = ["the", "cat", "dog", "sat", "ran", "on", "to", "mat", "park", "bird", "sang", "in", "tree", "sea", "sky"]


def write_corpus(path, documents, seed):
    rng = random.Random(seed)
    with path.open("w") as handle:
        for _ in range(documents):
            handle.write(json.dumps({"text": " ".join(rng.choices(WORDS, k=rng.randint(4, 40)))}) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpora")
    return {
        "web": write_corpus(root / "web.jsonl", 400, 1),
        "books": write_corpus(root / "books.jsonl", 200, 2),
        "code": write_text(root / "code.txt", 60, 3),  # .txt: one document a line
    }


def write_text(path, documents, seed):
    rng = random.Random(seed)
    path.write_text("".join(" ".join(rng.choices(WORDS, k=rng.randint(4, 40))) + "\n" for _ in range(documents)))
    return str(path)


def streaming_config(tmp_path, user_files, corpora, name, data=None, **train):
    path = write_config(tmp_path / f"{name}.yaml", user_files, tmp_path / name, **train)
    config = yaml.safe_load(path.read_text())
    config["defaults"]["data"] = {
        "streaming": True,
        "max_length": 32,
        "datasets": [
            {"path": corpora["web"], "name": "web", "weight": 0.67},
            {"path": corpora["books"], "name": "books", "weight": 0.15},
            {"path": corpora["code"], "name": "code", "weight": 0.18},
        ],
        **(data or {}),
    }
    path.write_text(yaml.safe_dump(config))
    return load_config(path)


def metric_lines(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def assert_same_weights(a_dir, b_dir):
    a = load_file(a_dir / "model" / "model.safetensors")
    b = load_file(b_dir / "model" / "model.safetensors")
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-6, rtol=1e-6, msg=name)


def test_streaming_resume_is_exact_and_accounted(tmp_path, user_files, corpora):
    overrides = {"max_steps": 8, "save_every": 4, "schedule": {"name": "cosine", "warmup_ratio": 0.25}}
    straight = streaming_config(tmp_path, user_files, corpora, "straight", **overrides)
    run_training(straight)

    resumed = streaming_config(tmp_path, user_files, corpora, "resumed", **overrides)
    with pytest.raises(KeyboardInterrupt):
        run_training(resumed, extra_callbacks=[Interrupt(at_step=4)])
    # the stream's position is inside the checkpoint, after 4 steps x 8 rows
    state = json.loads((tmp_path / "resumed" / "checkpoint-4" / "trainer_state.json").read_text())
    saved = state["stateful_callbacks"]["StreamPosition"]["attributes"]["saved"]
    assert saved["rows"] == 32 and saved["sources"][0]["offset"] > 0
    run_training(resumed, resume=True)
    assert read_run(tmp_path / "resumed")["status"] == "finished"
    assert_same_weights(tmp_path / "straight", tmp_path / "resumed")

    lines_a = [r for r in metric_lines(tmp_path / "straight") if "loss" in r]
    lines_b = [r for r in metric_lines(tmp_path / "resumed") if "loss" in r]
    assert lines_a[-1]["loss"] == pytest.approx(lines_b[-1]["loss"], abs=1e-6)
    last = lines_a[-1]
    names = ("web", "books", "code")
    assert sum(last[f"mix/{n}/tokens"] for n in names) == 8 * 8 * 32  # steps x rows x max_length
    assert last["mix/web/target"] == pytest.approx(0.67, abs=1e-4)
    assert sum(last[f"mix/{n}/share"] for n in names) == pytest.approx(1.0, abs=1e-3)
    assert all(last[f"mix/{n}/epochs"] > 0 for n in names if last[f"mix/{n}/tokens"])
    for a, b in zip(lines_a[4:], lines_b[-4:]):  # the resumed run's lines after step 4 equal the straight run's
        assert {k: v for k, v in a.items() if k.startswith("mix/")} == {
            k: v for k, v in b.items() if k.startswith("mix/")
        }
    final = read_run(tmp_path / "straight")["final_metrics"]["data_mix"]
    assert {n: final["sources"][n]["tokens"] for n in names} == {n: last[f"mix/{n}/tokens"] for n in names}
    forecast = read_run(tmp_path / "straight")["streaming"]  # what run.json planned at the start
    assert forecast["tokens"] == 8 * 8 * 32 and [s["share"] for s in forecast["sources"]] == [0.67, 0.15, 0.18]


@pytest.mark.parametrize(
    "data, train, message",
    [
        (
            {"stages": [{"name": "s1", "weights": {"wiki": 1.0}, "steps": 2}, {"name": "s2", "weights": {"web": 1}}]},
            {},
            r"data.stages\[0\].weights.wiki: no dataset is named 'wiki'",
        ),
        ({"datasets": [{"path": "PLACEHOLDER", "weight": 0.0}]}, {}, r"data.datasets\[\*\].weight: every weight is 0"),
        ({}, {"max_steps": None}, r"train.max_steps: data.streaming needs a step count"),
        (
            {"stages": [{"name": "s1", "weights": {"web": 1.0}}, {"name": "s2", "weights": {"web": 1}}]},
            {},
            r"data.stages\[0\]: give this stage a budget",
        ),
        (
            {"datasets": [{"path": "TINY"}]},
            {},
            r"data.datasets\[0\].path: .* holds \d+ tokens, fewer than one row of data.max_length 32",
        ),
    ],
    ids=["unknown-source", "zero-weights", "no-max-steps", "no-budget", "short-source"],
)
def test_bad_streaming_configs_name_the_key(tmp_path, user_files, corpora, data, train, message):
    if "datasets" in data:
        tiny = tmp_path / "tiny.jsonl"
        tiny.write_text('{"text": "the cat"}\n')
        data = {
            "datasets": [
                {**d, "path": corpora["web"] if d["path"] == "PLACEHOLDER" else str(tiny)} for d in data["datasets"]
            ]
        }
    config = streaming_config(tmp_path, user_files, corpora, "bad", data=data, **train)
    with pytest.raises(LmforgeError, match=message):
        run_training(config)


def test_data_inspect_forecasts_tokens_share_and_epochs(tmp_path, user_files, corpora, capsys):
    """Before training: max_steps x global batch x max_length tokens, split by weight, over
    each source's token estimate (the whole source when the sample reached its end)."""
    from lmforge.cli import main

    config = streaming_config(tmp_path, user_files, corpora, "inspect", max_steps=100)
    path = tmp_path / "inspect.yaml"
    assert config.data.streaming and path.is_file()
    assert main(["data", "inspect", str(path), "defaults", "--json"]) == 0
    forecast = json.loads(capsys.readouterr().out)["forecast"]
    assert forecast["tokens"] == 100 * 8 * 32
    code = next(s for s in forecast["sources"] if s["name"] == "code")
    assert code["tokens"] == round(0.18 * 100 * 8 * 32)
    # code.txt has 60 documents: the 200-document sample read all of it, the estimate is exact
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(user_files / "tokenizer"))
    lines = [line for line in Path(corpora["code"]).read_text().splitlines() if line.strip()]
    exact = sum(len(ids) + 2 for ids in tokenizer(lines, add_special_tokens=False)["input_ids"])  # + bos, eos
    assert code["estimated_tokens"] == exact
    assert code["epochs"] == pytest.approx(code["tokens"] / exact, abs=1e-3)
    assert main(["data", "inspect", str(path), "defaults"]) == 0
    text = capsys.readouterr().out
    assert "forecast: 100 steps x 256 tokens = 25600 tokens" in text and "code" in text
    assert main(["data", "preview", str(path), "defaults", "--n", "2"]) == 0
    assert capsys.readouterr().out.count("== example") == 2


def test_streaming_errors_exit_2_with_one_line(tmp_path, user_files, corpora, capsys):
    from lmforge.cli import main

    streaming_config(tmp_path, user_files, corpora, "bad", max_steps=None)
    assert main(["train", str(tmp_path / "bad.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("train.max_steps: data.streaming needs a step count (a stream has no length); set it")
