"""Sources beyond plain JSONL: zstandard, invalid UTF-8, CSV, parquet, and Hugging Face
datasets from local folders (tests stay offline)."""

from __future__ import annotations

import gzip
import json

import pytest

from lmforge.data.sources import file_sha256, read_records
from lmforge.errors import LmforgeError

ROWS = [{"instruction": "Name a color.", "output": "Red."}, {"instruction": "Name a fruit.", "output": "Pear."}]


def jsonl_bytes(rows) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def test_zstandard_jsonl(tmp_path):
    import zstandard

    path = tmp_path / "d.jsonl.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(jsonl_bytes(ROWS)))
    assert list(read_records(path)) == [(ROWS[0], f"{path}:1"), (ROWS[1], f"{path}:2")]


def test_zstandard_json_array(tmp_path):
    import zstandard

    path = tmp_path / "d.json.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(json.dumps(ROWS).encode()))
    assert [r for r, _ in read_records(path)] == ROWS


def broken(rows) -> bytes:
    """Second line with one invalid byte (0xff) right after '{"instruction": "Na'."""
    data = jsonl_bytes(rows)
    first = data.index(b"\n") + 1
    cut = first + len('{"instruction": "Na')
    return data[:cut] + b"\xff" + data[cut:]


def test_invalid_utf8_names_line_and_byte_offset(tmp_path):
    path = tmp_path / "d.jsonl"
    data = broken(ROWS)
    path.write_bytes(data)
    offset = data.index(b"\xff")
    with pytest.raises(LmforgeError) as info:
        list(read_records(path))
    assert str(info.value) == (
        f"{path}:2: invalid UTF-8 at byte offset {offset}; "
        "set the dataset's encoding_errors: replace to substitute U+FFFD"
    )


def test_invalid_utf8_in_gzip_says_decompressed(tmp_path):
    path = tmp_path / "d.jsonl.gz"
    path.write_bytes(gzip.compress(broken(ROWS)))
    with pytest.raises(LmforgeError, match=r":2: invalid UTF-8 at byte offset \d+ of the decompressed data"):
        list(read_records(path))


def test_invalid_utf8_replaced_by_option(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(broken(ROWS))
    records = [r for r, _ in read_records(path, encoding_errors="replace")]
    assert records[1]["instruction"] == "Na\ufffdme a fruit."


def test_byte_order_mark_is_skipped(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + jsonl_bytes(ROWS))
    assert [r for r, _ in read_records(path)] == ROWS


def test_csv_with_line_numbers(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('instruction,output\nName a color.,Red.\n"Say\nhi",Hi!\n')
    assert list(read_records(path)) == [
        ({"instruction": "Name a color.", "output": "Red."}, f"{path}:2"),
        ({"instruction": "Say\nhi", "output": "Hi!"}, f"{path}:4"),
    ]


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    assert list(read_records(path)) == [(ROWS[0], f"{path}[0]"), (ROWS[1], f"{path}[1]")]


@pytest.fixture
def offline(monkeypatch):
    """No network: the flags are read at import time, so set the modules' copies too."""
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def test_hf_saved_dataset_folder(tmp_path, offline):
    from datasets import Dataset, DatasetDict

    folder = tmp_path / "saved"
    DatasetDict({"train": Dataset.from_list(ROWS), "test": Dataset.from_list(ROWS[:1])}).save_to_disk(str(folder))
    assert [r for r, _ in read_records(folder)] == ROWS
    assert list(read_records(folder, split="test")) == [(ROWS[0], f"{folder}[test][0]")]
    with pytest.raises(LmforgeError, match=r"no split 'validation' \(splits: train, test\)"):
        list(read_records(folder, split="validation"))
    assert len(file_sha256(folder)) == 64


def test_hf_folder_of_data_files_goes_through_load_dataset(tmp_path, offline):
    folder = tmp_path / "hub_like"
    folder.mkdir()
    (folder / "train.jsonl").write_bytes(jsonl_bytes(ROWS))
    assert list(read_records(folder)) == [(ROWS[0], f"{folder}[train][0]"), (ROWS[1], f"{folder}[train][1]")]


def test_hub_name_offline_is_a_one_line_error(offline):
    with pytest.raises(LmforgeError) as info:
        list(read_records("someone/no-such-dataset-xyz"))
    message = str(info.value)
    assert message.startswith("someone/no-such-dataset-xyz: cannot load as a Hugging Face dataset (")
    assert "\n" not in message
    assert file_sha256("someone/no-such-dataset-xyz") == "not a local file"
