"""`data.packing: split`: plain-text examples concatenated in data order and cut into rows of
exactly max_length tokens (the last may be shorter), each piece restarting its positions
with its first label hidden; long examples are cut, not dropped; chat/instruction data is
refused; the config takes false / true / "split"; inspect, the training log and the model
card name the mode."""

from __future__ import annotations

import json
import textwrap

import pytest
import yaml

from lmforge.cli import main
from lmforge.config.loader import load_config
from lmforge.data.clean import DedupSettings
from lmforge.data.conversation import ROLE_IDS
from lmforge.data.formats import get_format
from lmforge.data.packing import pack_split, split_rows
from lmforge.data.pipeline import DatasetSpec, build_datasets
from lmforge.data.tokenize import IGNORE_INDEX
from lmforge.errors import LmforgeError
from lmforge.report.card_inputs import RunFiles
from lmforge.report.model_card import procedure_section

P, T = ROLE_IDS["prompt"], ROLE_IDS["text"]
# lengths 5, 2, 9 (the first and last start with a bos of the prompt role), max_length 4
EXAMPLES = [
    {"input_ids": [1, 2, 3, 4, 5], "token_roles": [P, T, T, T, T], "example_id": 10},
    {"input_ids": [6, 7], "token_roles": [T, T], "example_id": 11},
    {"input_ids": [8, 9, 10, 11, 12, 13, 14, 15, 16], "token_roles": [P, *[T] * 8], "example_id": 12},
]


def test_split_rows_by_hand():
    rows, report = pack_split(EXAMPLES, 4)
    assert rows == [
        {
            "input_ids": [1, 2, 3, 4],
            "labels": [IGNORE_INDEX, 2, 3, 4],
            "token_roles": [P, T, T, T],
            "position_ids": [0, 1, 2, 3],
            "token_example_ids": [10, 10, 10, 10],
        },
        {  # the rest of example 10 (one token), all of 11, the bos of 12: three pieces
            "input_ids": [5, 6, 7, 8],
            "labels": [IGNORE_INDEX, IGNORE_INDEX, 7, IGNORE_INDEX],
            "token_roles": [T, T, T, P],
            "position_ids": [0, 0, 1, 0],
            "token_example_ids": [10, 11, 11, 12],
        },
        {
            "input_ids": [9, 10, 11, 12],
            "labels": [IGNORE_INDEX, 10, 11, 12],
            "token_roles": [T] * 4,
            "position_ids": [0, 1, 2, 3],
            "token_example_ids": [12] * 4,
        },
        {
            "input_ids": [13, 14, 15, 16],
            "labels": [IGNORE_INDEX, 14, 15, 16],
            "token_roles": [T] * 4,
            "position_ids": [0, 1, 2, 3],
            "token_example_ids": [12] * 4,
        },
    ]
    assert (report.examples, report.rows, report.tokens, report.slots, report.efficiency) == (3, 4, 16, 16, 1.0)
    assert report.split and report.label == "packing (split)"


@pytest.mark.parametrize("max_length", [3, 4, 5, 7, 16, 40])
def test_rows_are_full_give_back_the_examples_and_restart_at_every_piece(max_length):
    rows = split_rows(EXAMPLES, max_length)
    assert all(len(row["input_ids"]) == max_length for row in rows[:-1])
    assert 0 < len(rows[-1]["input_ids"]) <= max_length
    assert [t for row in rows for t in row["input_ids"]] == [t for e in EXAMPLES for t in e["input_ids"]]
    assert [t for row in rows for t in row["token_roles"]] == [t for e in EXAMPLES for t in e["token_roles"]]
    for row in rows:
        owners = row["token_example_ids"]
        # a piece starts at the row's start or where the example changes
        starts = [i == 0 or owners[i] != owners[i - 1] for i in range(len(owners))]
        for i, (token, label, position) in enumerate(zip(row["input_ids"], row["labels"], row["position_ids"])):
            if starts[i]:
                assert (position, label) == (0, IGNORE_INDEX)
            else:
                assert (position, label) == (row["position_ids"][i - 1] + 1, token)


def test_fill_rate_counts_the_short_last_row():
    _, report = pack_split(EXAMPLES, 5)  # 16 tokens: rows of 5, 5, 5, 1
    assert (report.rows, report.tokens, report.slots, report.efficiency) == (4, 16, 20, 0.8)


DOCUMENTS = ["The cat sat on the mat.", " ".join(["The dog ran to the park."] * 12)]  # the second: over 24 tokens
NO_DEDUP = DedupSettings(exact=False, near=False)


def build(tmp_path, write_jsonl, tokenizer, packing, records=None, fmt="remask"):
    path = write_jsonl(tmp_path / "t.jsonl", records or [{"text": t} for t in DOCUMENTS * 4])
    spec = DatasetSpec(str(path), val_split=0.25)
    return build_datasets([spec], get_format(fmt), tokenizer, 24, "drop", seed=0, dedup=NO_DEDUP, packing=packing)


def test_an_overlength_document_is_split_not_dropped(tmp_path, tokenizer, write_jsonl):
    data = build(tmp_path, write_jsonl, tokenizer, "split")
    report, packing = data.reports[0], data.packing
    assert report.format == "text" and report.train == packing.examples == 6  # 8 records, 2 held out
    assert report.truncated == 0 and report.max_tokens > 24  # the long ones trained on whole
    assert packing.tokens == report.train_tokens == sum(len(ids) for ids in data.train["input_ids"])
    assert packing.split and packing.rows == len(data.train) == -(-packing.tokens // 24)
    assert all(len(ids) == 24 for ids in data.train["input_ids"][:-1])
    assert packing.efficiency == packing.tokens / (24 * packing.rows)
    # validation stays unpacked, under data.overlength, as with packing: true: its long
    # examples are the only ones dropped
    assert data.val is None or all(len(ids) <= 24 for ids in data.val["input_ids"])
    assert report.val + report.dropped["too_long"] == 2 and report.dropped["too_long"] > 0

    whole = build(tmp_path, write_jsonl, tokenizer, True)
    assert whole.reports[0].dropped["too_long"] > 0 and not whole.packing.split


def test_chat_data_is_refused(tmp_path, tokenizer, write_jsonl):
    records = [{"instruction": f"What is {a} plus 7?", "output": f"{a + 7}"} for a in range(8)]
    with pytest.raises(LmforgeError) as info:
        build(tmp_path, write_jsonl, tokenizer, "split", records, fmt="qa")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(
        f"data.packing: split cuts examples across rows, for plain text only, but data.datasets[0] "
        f"({tmp_path / 't.jsonl'}, format alpaca) holds prompt/response examples"
    )
    assert "(a response cut from its prompt would be trained without it); use data.packing: true" in message


# --------------------------------------------------------------------------- config, CLI, card


def config_file(tmp_path, packing) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(
        textwrap.dedent(f"""
        model:
          tokenizer: tok
        data:
          packing: {packing}
    """).lstrip("\n")
    )
    return path


@pytest.mark.parametrize(("written", "value"), [("false", False), ("true", True), ("split", "split")])
def test_config_takes_false_true_and_split(tmp_path, written, value):
    config = load_config(config_file(tmp_path, written))
    assert config.data.packing == value and bool(config.data.packing) == (value is not False)


def test_config_rejects_another_string_with_the_key_path(tmp_path):
    path = config_file(tmp_path, "splat")
    with pytest.raises(LmforgeError) as info:
        load_config(path)
    assert str(info.value) == f"{path}:4: data.packing = 'splat': Input should be False, True or 'split'"


def test_streaming_refuses_split_packing_too(tmp_path):
    path = config_file(tmp_path, "split")
    with pytest.raises(LmforgeError, match="data.packing: streaming rows are always packed"):
        load_config(path, overrides=["data.streaming=true"])


@pytest.fixture
def cli_config(tmp_path, tiny_tokenizer, write_jsonl):
    def make(records, **data) -> str:
        tiny_tokenizer.save_pretrained(tmp_path / "tok")
        path = write_jsonl(tmp_path / "d.jsonl", records)
        config = {
            "model": {"tokenizer": str(tmp_path / "tok")},
            "data": {"datasets": [{"path": str(path), "val_split": 0.25}], "max_length": 24, **data},
        }
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
        return str(tmp_path / "c.yaml")

    return make


def test_inspect_shows_split_packing(cli_config, capsys):
    config = cli_config([{"text": t} for t in DOCUMENTS * 4], packing="split", dedup={"exact": False, "near": False})
    assert main(["data", "inspect", config, "--json"]) == 0
    packing = json.loads(capsys.readouterr().out)["packing"]
    assert packing["mode"] == "split" and packing["examples"] == 6
    assert main(["data", "inspect", config]) == 0
    line = f"packing (split): 6 examples in {packing['rows']} rows, efficiency {packing['efficiency']:.1%}"
    assert line in capsys.readouterr().out


def test_inspect_refuses_chat_data_with_exit_code_2(cli_config, capsys):
    config = cli_config(
        [{"instruction": f"What is {a} plus 7?", "output": f"{a + 7}"} for a in range(8)], packing="split"
    )
    assert main(["data", "inspect", config]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the format-detection log line
    assert error.startswith("lmforge: error: data.packing: split cuts examples across rows, for plain text only")


@pytest.mark.parametrize(
    ("packing", "phrase"),
    [
        ("split", "160 tokens (examples concatenated and split across full rows)"),
        (True, "160 tokens (longer examples dropped); examples packed into full rows"),
        (False, "160 tokens (longer examples dropped)\n"),
    ],
)
def test_model_card_names_the_packing(tmp_path, packing, phrase):
    files = RunFiles(tmp_path, {}, {"data": {"max_length": 160, "packing": packing}})
    assert f"Training sequence length: {phrase}" in "\n".join(procedure_section(files)) + "\n"
