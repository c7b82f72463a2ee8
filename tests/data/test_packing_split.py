"""`data.packing: split`: plain-text examples concatenated in data order and cut into rows of
exactly max_length tokens (the last may be shorter), each piece restarting its positions
with its first label hidden; long examples are cut, not dropped, in training and validation
alike (validation scored per piece by the Trainer); chat/instruction data is refused; the
config takes false / true / "split"; inspect, the training log and the model card name the
mode."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
import yaml
from transformers import LlamaConfig, LlamaForCausalLM

from lmforge.cli import main
from lmforge.config.loader import load_config
from lmforge.data.clean import DedupSettings
from lmforge.data.conversation import ROLE_IDS
from lmforge.data.formats import get_format
from lmforge.data.collate import PadCollator
from lmforge.data.packing import PackedCollator, pack_split, split_rows
from lmforge.data.pipeline import DatasetSpec, build_datasets
from lmforge.data.tokenize import IGNORE_INDEX, encode_conversations
from lmforge.errors import LmforgeError
from lmforge.report.card_inputs import RunFiles
from lmforge.report.model_card import procedure_section
from lmforge.train.data_builders import sft_data
from tests.train.conftest import make_trainer

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
    assert report.split and report.describe().startswith("packing (split): 3 examples in 4 rows")


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
    assert report.val == 2 and "too_long" not in report.dropped  # validation is split too

    whole = build(tmp_path, write_jsonl, tokenizer, True)
    assert whole.reports[0].dropped["too_long"] > 0 and not whole.packing.split


def test_a_long_validation_document_is_kept_and_split_across_rows(tmp_path, tokenizer, write_jsonl):
    data = build(tmp_path, write_jsonl, tokenizer, "split")
    documents = encode_conversations(data.val_conversations, get_format("remask"), tokenizer)
    assert len(documents) == 2 and max(len(d.input_ids) for d in documents) > 24
    rows = data.val.to_list()
    # the validation documents' tokens, in order, cut into rows of 24 as training's are
    assert [t for row in rows for t in row["input_ids"]] == [t for d in documents for t in d.input_ids]
    assert all(len(row["input_ids"]) == 24 for row in rows[:-1])
    assert rows == split_rows([d.as_row() for d in documents], 24)
    report = data.val_packing
    assert report.split and (report.examples, report.rows) == (2, len(rows))
    assert report.tokens == sum(len(d.input_ids) for d in documents) and report.slots == 24 * len(rows)


@pytest.mark.parametrize("packing", [True, False])
def test_whole_packing_leaves_validation_unpacked_under_overlength(tmp_path, tokenizer, write_jsonl, packing):
    data = build(tmp_path, write_jsonl, tokenizer, packing)
    report = data.reports[0]
    assert data.val_packing is None and "position_ids" not in data.val.column_names
    documents = encode_conversations(data.val_conversations, get_format("remask"), tokenizer)
    kept = [d.as_row() for d in documents if len(d.input_ids) <= 24]
    assert data.val.to_list() == kept and report.val == len(kept) < len(documents) == 2  # the long one dropped


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
    summary = json.loads(capsys.readouterr().out)
    packing, val = summary["packing"], summary["val_packing"]
    assert packing["mode"] == "split" and packing["examples"] == 6
    # the validation column counts documents (none dropped), validation rows the packed rows
    assert summary["datasets"][0]["val"] == val["examples"] == 2 and "too_long" not in summary["datasets"][0]["dropped"]
    assert val["mode"] == "split" and summary["val_rows"] == val["rows"] > 2
    assert main(["data", "inspect", config]) == 0
    out = capsys.readouterr().out
    assert f"packing (split): 6 examples in {packing['rows']} rows, efficiency {packing['efficiency']:.1%}" in out
    assert f"validation rows: {val['rows']}\n" in out
    assert f"validation packing (split): 2 examples in {val['rows']} rows, efficiency {val['efficiency']:.1%}" in out


def test_trainer_scores_packed_validation_rows_piece_by_piece(cli_config, tiny_tokenizer, tmp_path, capsys):
    """sft_data's validation under split: packed rows and the packed collator; the Trainer's
    token-exact validation loss equals the NLL of a direct forward of each row with its
    position ids and labels, and that of each piece forwarded alone (attention stays in it)."""
    config = load_config(
        cli_config([{"text": t} for t in DOCUMENTS * 4], packing="split", dedup={"exact": False, "near": False})
    )
    data = sft_data(config, tiny_tokenizer, get_format(config.data.prompt_format))
    assert "[lmforge] validation packing (split): 2 examples in" in capsys.readouterr().out
    rows = data.val.to_list()
    assert len(rows) >= 3 and len(rows[-1]["input_ids"]) < 24  # a padded batch: rows of 24 and a shorter one
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tiny_tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=64,
            pad_token_id=tiny_tokenizer.pad_token_id,
        )
    ).eval()
    trainer = make_trainer(model, data.train, tmp_path / "run", 2, 1, 1, per_device_eval_batch_size=2)
    trainer.eval_data_collator = data.eval_collator
    metrics = trainer.evaluate(data.val)

    def nll(ids, positions, labels) -> float:
        logits = model(input_ids=torch.tensor([ids]), position_ids=torch.tensor([positions])).logits[0]
        return torch.nn.functional.cross_entropy(
            logits[:-1], torch.tensor(labels[1:], dtype=torch.long), reduction="sum"
        ).item()

    with torch.no_grad():
        by_row = sum(nll(r["input_ids"], r["position_ids"], r["labels"]) for r in rows)
        pieces = [
            (r["input_ids"][a:b], r["position_ids"][a:b], r["labels"][a:b])
            for r in rows
            for starts in [[i for i, p in enumerate(r["position_ids"]) if p == 0] + [len(r["input_ids"])]]
            for a, b in zip(starts, starts[1:])
        ]
        by_piece = sum(nll(*piece) for piece in pieces)
    assert len(pieces) > len(rows)  # a row holds the end of one document and the start of the next
    tokens = sum(label != IGNORE_INDEX for r in rows for label in r["labels"])
    assert metrics["eval_tokens"] == tokens == sum(len(r["input_ids"]) for r in rows) - len(pieces)
    assert metrics["eval_loss"] == pytest.approx(by_row / tokens, rel=1e-5)
    assert by_piece == pytest.approx(by_row, rel=1e-5)


@pytest.mark.parametrize(("packing", "collator"), [("split", PackedCollator), (True, PadCollator)])
def test_the_validation_collator_follows_the_validation_rows(cli_config, tiny_tokenizer, packing, collator):
    config = load_config(cli_config([{"text": t} for t in DOCUMENTS * 4], packing=packing))
    data = sft_data(config, tiny_tokenizer, get_format(config.data.prompt_format))
    assert type(data.eval_collator) is collator and type(data.collator) is PackedCollator


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
