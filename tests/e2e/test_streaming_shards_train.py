"""data.streaming from `lmforge data prepare --tokenize` shards end to end: the corpus
prepared through the CLI with the run's tokenizer trains to the same weights as its text
shards streamed and tokenized on the fly; a run that is not streaming refuses the shards
with one line (exit 2)."""

from __future__ import annotations

import pytest
import yaml

pytest.importorskip("datatrove")

from lmforge.cli import main  # noqa: E402
from lmforge.config import load_config  # noqa: E402
from lmforge.rundir import read_run  # noqa: E402
from lmforge.train.pipeline import run_training  # noqa: E402
from tests.e2e.conftest import write_config  # noqa: E402
from tests.e2e.test_streaming_train import assert_same_weights, write_corpus  # noqa: E402


def config_file(tmp_path, user_files, name, path, streaming=True):
    file = write_config(tmp_path / f"{name}.yaml", user_files, tmp_path / name, max_steps=4)
    config = yaml.safe_load(file.read_text())
    config["defaults"]["data"] = {
        "streaming": streaming,
        "max_length": 32,
        "datasets": [{"path": str(path), "name": "web"}],  # no val_split: shards hold out other documents
    }
    file.write_text(yaml.safe_dump(config))
    return file


def test_training_on_token_shards_equals_training_on_their_text(tmp_path, user_files, capsys):
    corpus = write_corpus(tmp_path / "web.jsonl", 300, 4)
    prepare_config = config_file(tmp_path, user_files, "prepare", corpus)
    out = tmp_path / "prepared"
    assert main(["data", "prepare", str(prepare_config), "defaults", "--tokenize", "--output", str(out)]) == 0
    [tokens] = (out / "tokens").iterdir()
    [text] = (out / "shards").glob("*/*.jsonl")

    for name, path in (("from_tokens", tokens), ("from_text", text)):
        run_training(load_config(config_file(tmp_path, user_files, name, path)))
        assert read_run(tmp_path / name)["status"] == "finished"
    assert_same_weights(tmp_path / "from_text", tmp_path / "from_tokens")
    final = read_run(tmp_path / "from_tokens")["final_metrics"]["data_mix"]["sources"]["web"]
    assert final["tokens"] == 4 * 8 * 32 and final["epochs"] > 0

    capsys.readouterr()
    bad = config_file(tmp_path, user_files, "bad", tokens, streaming=False)
    assert main(["train", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.datasets[0].path: " in err[0] and "only data.streaming: true reads" in err[0]
