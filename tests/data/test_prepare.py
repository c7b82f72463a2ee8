"""`lmforge data prepare` on datatrove's local executor, against the in-memory path on
small corpora: exact dedup removes the same documents, MinHash removes planted near
copies, decontamination counts match, a failed run resumes without redoing finished
tasks, and bad input is a one-line error."""

from __future__ import annotations

import json
import random

import pytest

pytest.importorskip("datatrove")

from lmforge.data import prepare_steps  # noqa: E402
from lmforge.data.clean import DedupSettings, Fingerprints, deduplicate  # noqa: E402
from lmforge.data.pipeline import DatasetReport, DatasetSpec, apply_filters, load_conversations  # noqa: E402
from lmforge.data.prepare import PrepareOptions, prepare  # noqa: E402
from lmforge.data.shards import read_documents  # noqa: E402
from lmforge.errors import LmforgeError  # noqa: E402

WORDS = [f"w{i}" for i in range(400)]


def corpus(seed: int, n: int, exact_share: float = 0.15, near_share: float = 0.0) -> list[str]:
    """Random documents; some exact copies of earlier ones (changed in case, punctuation and
    spacing only: the same after normalization), some near copies (last word changed)."""
    rng = random.Random(seed)
    docs: list[str] = []
    for _ in range(n):
        roll = rng.random()
        if docs and roll < exact_share:
            words = rng.choice(docs).split()
            docs.append("  ".join(words).upper() if rng.random() < 0.5 else " ".join(words) + " !")
        elif docs and roll < exact_share + near_share:
            words = rng.choice(docs).split()
            words[-1] = rng.choice(WORDS)
            docs.append(" ".join(words))
        else:
            docs.append(" ".join(rng.choices(WORDS, k=rng.randint(20, 50))))
    return docs


def write_sources(tmp_path, docs: list[str], parts: int, write_jsonl) -> list[DatasetSpec]:
    n = len(docs)
    specs = []
    for i in range(parts):
        rows = [{"text": d} for d in docs[i * n // parts : (i + 1) * n // parts]]
        specs.append(DatasetSpec(str(write_jsonl(tmp_path / f"part{i}.jsonl", rows))))
    return specs


def kept_by_prepare(output) -> set[tuple[str, int]]:
    kept = set()
    for shard in (output / "shards").glob("*/*.jsonl"):
        for line in shard.read_text().splitlines():
            record = json.loads(line)
            name, number = record["id"].rsplit(":", 1)
            kept.add((name, int(number)))
    return kept


def kept_in_memory(specs: list[DatasetSpec], settings: DedupSettings) -> set[tuple[str, int]]:
    loaded = [
        apply_filters(load_conversations(s, DatasetReport(s.path)), s.filters, DatasetReport(s.path)) for s in specs
    ]
    kept, _ = deduplicate(loaded, Fingerprints(settings))
    out = set()
    for group in kept:
        for conversation in group:
            path, number = conversation.source.rsplit(":", 1)
            out.add((path.rsplit("/", 1)[-1], int(number)))
    return out


def test_exact_dedup_removes_what_the_in_memory_path_removes(tmp_path, write_jsonl):
    docs = corpus(seed=1, n=300, exact_share=0.3)
    specs = write_sources(tmp_path, docs, 3, write_jsonl)
    settings = DedupSettings(exact=True, near=False)
    report = prepare(specs, settings, None, PrepareOptions(tmp_path / "out", tasks=3))
    expected = kept_in_memory(specs, settings)
    assert kept_by_prepare(tmp_path / "out") == expected
    removed = sum(row["docs"]["dropped"].get("duplicate", 0) for row in report["sources"])
    assert removed == 300 - len(expected) > 60  # the corpus plants about 90 copies


def test_minhash_removes_planted_near_copies(tmp_path, write_jsonl):
    docs = corpus(seed=2, n=300, exact_share=0.0, near_share=0.2)
    specs = write_sources(tmp_path, docs, 2, write_jsonl)
    settings = DedupSettings(exact=True, near=True)
    prepare(specs, settings, None, PrepareOptions(tmp_path / "out", tasks=2))
    ours = kept_by_prepare(tmp_path / "out")
    in_memory = kept_in_memory(specs, settings)
    removed_ours, removed_in_memory = 300 - len(ours), 300 - len(in_memory)
    assert removed_in_memory > 40
    # a cluster keeps one document, not necessarily the first: compare how many go
    assert abs(removed_ours - removed_in_memory) <= 0.1 * removed_in_memory


def test_decontamination_and_filters_are_counted_per_reason(tmp_path, write_jsonl, tokenizer):
    question = "Natalia sold clips to 48 of her friends in April and then she sold half as many clips in May"
    evals = tmp_path / "gsm8k.jsonl"
    evals.write_text(json.dumps({"question": question, "answer": "72"}) + "\n")
    rows = [{"text": " ".join(random.Random(i).choices(WORDS, k=30))} for i in range(40)]
    for i in (3, 17, 29):
        rows[i]["text"] += " " + question
    rows[5]["text"] = "short"
    rows[6] = {"text": rows[7]["text"], "lang": "de"}
    spec = DatasetSpec(str(write_jsonl(tmp_path / "web.jsonl", rows)), min_chars=20, lang="en")
    tokenizer.save_pretrained(tmp_path / "tok")
    report = prepare(
        [spec],
        DedupSettings(near=False),
        ([str(evals)], 13),
        PrepareOptions(tmp_path / "out", tokenizer=str(tmp_path / "tok"), tokenize=True),
    )
    [row] = report["sources"]
    assert row["docs"] == {
        "in": 40,
        "out": 35,
        "dropped": {"contaminated": 3, "too_short": 1, "language": 1},
    }
    assert row["tokens"]["in"] == sum(row["tokens"]["dropped"].values()) + row["tokens"]["out"]
    # tokenized shards: every kept document, with EOS, counted per source
    documents = list(read_documents(tmp_path / "out" / "tokens" / "web.jsonl"))
    assert len(documents) == 35 and row["shard_tokens"] == row["tokens"]["out"] + 35
    eos = tokenizer.convert_tokens_to_ids(tokenizer.eos_token)
    assert all(int(d[-1]) == eos for d in documents)
    # the in-memory path drops the same three
    from lmforge.data.decontaminate import NgramIndex, decontaminate

    loaded = load_conversations(spec, DatasetReport(spec.path))
    assert decontaminate(loaded, NgramIndex.from_files([str(evals)], 13))[1] == 3


def test_a_failed_run_resumes_without_redoing_finished_tasks(tmp_path, write_jsonl, monkeypatch):
    docs = corpus(seed=3, n=200, exact_share=0.2, near_share=0.1)
    specs = write_sources(tmp_path, docs, 2, write_jsonl)
    settings = DedupSettings()
    ran: list[int] = []
    original = prepare_steps.CleanFilter.run

    def failing(self, data, rank=0, world_size=1):
        ran.append(rank)
        if rank == 1 and ran.count(1) == 1:
            raise RuntimeError("killed")
        yield from original(self, data, rank, world_size)

    monkeypatch.setattr(prepare_steps.CleanFilter, "run", failing)
    with pytest.raises(RuntimeError, match="killed"):
        prepare(specs, settings, None, PrepareOptions(tmp_path / "out", tasks=2))
    assert ran == [0, 1]
    assert (tmp_path / "out" / "work" / "clean" / "00000.jsonl.gz").is_file()  # kept for the resume
    report = prepare(specs, settings, None, PrepareOptions(tmp_path / "out", tasks=2))
    assert ran == [0, 1, 1]  # task 0 of the clean stage was not redone
    assert not (tmp_path / "out" / "work").exists()  # removed once the run finished
    fresh = prepare(specs, settings, None, PrepareOptions(tmp_path / "fresh", tasks=2, keep_work=True))
    assert report["sources"] == fresh["sources"]
    assert kept_by_prepare(tmp_path / "out") == kept_by_prepare(tmp_path / "fresh")
    assert sorted(p.name for p in (tmp_path / "fresh" / "work").iterdir()) == [
        "clean",
        "exact",
        "exact_dups",
        "exact_sigs",
        "minhash_buckets",
        "minhash_remove",
        "minhash_sigs",
    ]
    # a finished run, run again, redoes nothing and reports the same
    before = len(ran)
    again = prepare(specs, settings, None, PrepareOptions(tmp_path / "out", tasks=2))
    assert len(ran) == before and again == report


def test_bad_jsonl_lines_are_bad_records_like_the_in_memory_path(tmp_path):
    """Lines datatrove's JSONL reader would skip with a log line (a cut-off last line, a
    list) or where it would stop reading the file (invalid UTF-8) are bad records at their
    line: an error, or counted with on_bad_record: skip; the lines after them are read."""
    good = [json.dumps({"text": f"document number {i} " + " ".join(WORDS[i : i + 20])}) for i in range(6)]
    raw = (
        "\ufeff"
        + good[0]
        + "\n\n"  # BOM, blank line: skipped, as the in-memory path does
        + good[1]
        + "\n[1, 2]\n"
        + good[2]
        + "\n"
    ).encode() + b'{"text": "caf\xe9"}\n'
    raw += (good[3] + "\n" + good[4] + "\n" + good[5][:-9] + "\n").encode()  # the last line cut off
    path = tmp_path / "web.jsonl"
    path.write_bytes(raw)
    with pytest.raises(LmforgeError, match=r"web.jsonl:4: expected a JSON object, got list \(set the dataset's"):
        prepare([DatasetSpec(str(path))], DedupSettings(), None, PrepareOptions(tmp_path / "o1"))
    spec = DatasetSpec(str(path), on_bad_record="skip")
    report = prepare([spec], DedupSettings(), None, PrepareOptions(tmp_path / "o2"))
    [row] = report["sources"]
    assert row["docs"] == {"in": 8, "out": 5, "dropped": {"bad_record": 3}}
    kept_lines = sorted(number for _, number in kept_by_prepare(tmp_path / "o2"))
    assert kept_lines == [1, 3, 5, 7, 8]  # the two lines after the invalid UTF-8 are read
    in_memory = DatasetReport(spec.path)
    assert len(load_conversations(spec, in_memory)) == 5 and in_memory.dropped == {"bad_record": 3}
    # the messages are the in-memory path's, at the line
    lines = raw.split(b"\n")
    for line, message in (
        (6, f"invalid UTF-8 at byte offset {len(lines[2]) + 1 + 13};"),  # the byte after {"text": "caf
        (9, "truncated record: the line ends inside a string"),
    ):
        path.write_bytes(lines[2] + b"\n" + lines[line - 1] + b"\n")
        with pytest.raises(LmforgeError, match=f"web.jsonl:2: {message}"):
            prepare([DatasetSpec(str(path))], DedupSettings(), None, PrepareOptions(tmp_path / f"o{line}"))


@pytest.mark.parametrize("verbose", [False, True])
def test_datatrove_logging_is_quiet_unless_verbose(tmp_path, write_jsonl, capfd, verbose):
    docs = corpus(seed=4, n=40)
    specs = write_sources(tmp_path, docs, 2, write_jsonl)
    # two workers: the tasks run in worker processes, which quiet datatrove for themselves
    options = PrepareOptions(tmp_path / "out", workers=2, tasks=2, verbose=verbose)
    prepare(specs, DedupSettings(near=False), None, options)
    err = capfd.readouterr().err
    assert ("Launching pipeline for rank=" in err) == verbose
    assert ("PIPELINE" in err) == verbose
    # the task logs hold everything either way
    log = (tmp_path / "out" / "logs" / "clean" / "logs" / "task_00001.log").read_text()
    assert "Launching pipeline for rank=1" in log and "Processing done for rank=1" in log
    if not verbose:  # only lmforge's own stage lines (shown when a CLI command set up its logging)
        assert all(line.startswith("[lmforge] [data prepare]") for line in err.splitlines() if line.strip()), err


def test_bad_input_is_one_line(tmp_path, write_jsonl):
    spec = DatasetSpec(str(write_jsonl(tmp_path / "a.jsonl", [{"text": "one two three"}])))
    out = tmp_path / "out"
    prepare([spec], DedupSettings(near=False), None, PrepareOptions(out))
    with pytest.raises(LmforgeError, match="holds the shards of a different data prepare pipeline .*dedup"):
        prepare([spec], DedupSettings(), None, PrepareOptions(out))
    with pytest.raises(LmforgeError, match=r"data.decontaminate.sets\[0\]: .*missing.jsonl: evaluation set not found"):
        prepare([spec], DedupSettings(), ([str(tmp_path / "missing.jsonl")], 13), PrepareOptions(tmp_path / "o2"))
    csv = tmp_path / "b.csv"
    csv.write_text("text\nhello\n")
    with pytest.raises(LmforgeError, match=r"data.datasets\[0\].path: .*b.csv: datatrove cannot read '.csv' files"):
        prepare([DatasetSpec(str(csv))], DedupSettings(), None, PrepareOptions(tmp_path / "o3"))
    broken = tmp_path / "c.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(LmforgeError, match=r"c.parquet: datatrove cannot read this .parquet file"):
        prepare([DatasetSpec(str(broken))], DedupSettings(), None, PrepareOptions(tmp_path / "o4"))
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(LmforgeError, match="not empty and not a data prepare folder"):
        prepare([spec], DedupSettings(), None, PrepareOptions(tmp_path / "foreign"))
    for message in ("holds the shards", "evaluation set not found"):
        assert "\n" not in message


def test_slurm_without_sbatch_writes_chained_job_scripts(tmp_path, write_jsonl, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no sbatch
    spec = DatasetSpec(str(write_jsonl(tmp_path / "a.jsonl", [{"text": f"doc {i} " * 5} for i in range(10)])))
    report = prepare([spec], DedupSettings(), None, PrepareOptions(tmp_path / "out", executor="slurm"))
    assert report == {}  # nothing ran
    folder = tmp_path / "out" / "slurm"
    stages = ["clean", "exact_find", "exact_filter", "minhash_buckets", "minhash_clusters", "write"]
    submit = (folder / "submit.sh").read_text()
    assert [line.split(":")[0].split('"')[1] for line in submit.splitlines() if line.startswith("echo")] == stages
    for stage in stages:
        [script] = folder.glob(f"*_{stage}.slurm")
        text = script.read_text()
        assert f"#SBATCH --job-name=lmforge_prepare_{stage}" in text
        assert f"launch_pickled_pipeline {tmp_path / 'out' / 'logs' / stage / 'executor.pik'}" in text
        assert (tmp_path / "out" / "logs" / stage / "executor.pik").is_file()
    buckets = (next(folder.glob("*_minhash_buckets.slurm"))).read_text()
    assert "#SBATCH --array=0-8" in buckets  # 9 LSH bands at threshold 0.8, 128 permutations
