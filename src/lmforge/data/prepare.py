"""`lmforge data prepare`: the config's cleaning, run as a datatrove pipeline (local
processes, Slurm or Ray) for corpora too large for the in-memory path.

Stages, each a datatrove executor whose tasks leave completion markers (a rerun skips the
finished ones) under OUTPUT/logs/<stage>:

1. clean: read every source's files (task i takes the i-th contiguous slice of the files,
   in config order), apply the filters and decontamination (prepare_steps.CleanFilter),
   write the survivors to work/clean, and hash them for exact dedup.
2. exact_find (one task): the duplicates of every hash but the first occurrence.
3. exact_filter: drop them, write work/exact, MinHash signatures (near dedup on).
4. minhash_buckets (one task per LSH band), 5. minhash_clusters (one task).
6. write: drop near-duplicates (all of a cluster but one), write the cleaned shards
   shards/<source>/<rank>.jsonl and, with --tokenize, tokens/<source>/<rank>.ds.

Then report.json and report.txt: documents and tokens in and out per source and reason,
and OUTPUT/work is removed (--keep-work keeps it). A rerun of a finished run only rewrites
the report: every stage's tasks are marked complete. datatrove's own logging goes to
OUTPUT/logs/<stage>/logs/task_<rank>.log; stderr shows its warnings only (all with -v).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmforge.data.clean import DedupSettings
from lmforge.data.decontaminate import NgramIndex
from lmforge.data.pipeline import DatasetSpec
from lmforge.data.shards import shard_tokens
from lmforge.data.sources import COMPRESSIONS, suffixes
from lmforge.errors import LmforgeError

log = logging.getLogger("lmforge.data")

INSTALL = "pip install 'lmforge[scale]'"
READABLE = (".jsonl", ".parquet", ".txt")
MAX_TASKS = 65535  # exact dedup's order key (prepare_steps.exact_priority)
REASONS = ("bad_record", "empty_response", "language", "too_short", "too_many_chars", "contaminated")
DEDUP_REASONS = ("duplicate", "near_duplicate")


def require_datatrove() -> None:
    try:
        import datatrove  # noqa: F401
    except ImportError:
        raise LmforgeError(f"lmforge data prepare needs datatrove, which is not installed: {INSTALL}") from None


@dataclass
class PrepareOptions:
    output: Path
    executor: str = "local"
    workers: int = 1
    tasks: int | None = None
    """Tasks of the reading stages (default: one per file)."""
    tokenizer: str | None = None
    """A tokenizer directory or tokenizer.json: counts tokens; with `tokenize`, writes shards."""
    tokenize: bool = False
    slurm_partition: str = "cpu"
    slurm_time: str = "24:00:00"
    slurm_mem_per_cpu_gb: int = 2
    keep_work: bool = False
    """Keep OUTPUT/work (the stages' intermediate files) after a finished run."""
    verbose: bool = False
    """datatrove's INFO logging on stderr too (lmforge -v); otherwise only its warnings."""


# --------------------------------------------------------------------------- planning


def plan_files(specs: list[DatasetSpec]):
    """(source settings, every file to read in config order); bad sources are errors here,
    before any worker starts."""
    from lmforge.data.prepare_steps import PlannedFile, SourceSettings

    sources, files = [], []
    for index, spec in enumerate(specs):
        key = f"data.datasets[{index}]"
        if spec.format not in ("auto", "text"):
            raise LmforgeError(
                f"{key}.format: data prepare cleans plain-text corpora (format text), not {spec.format}; "
                "the in-memory path (lmforge train, data inspect) cleans the other formats"
            )
        path = Path(spec.path)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and _kind(p) in READABLE)
            if not found:
                raise LmforgeError(f"{key}.path: {spec.path}: no .jsonl, .parquet or .txt files in this folder")
        elif path.is_file():
            found = [path]
        else:
            raise LmforgeError(
                f"{key}.path: {spec.path}: no such local file or folder (data prepare does not read hub names)"
            )
        for file in found:
            kind = _kind(file)
            if kind not in READABLE or (kind == ".parquet" and suffixes(file)[1]):
                raise LmforgeError(
                    f"{key}.path: {file}: datatrove cannot read '{''.join(file.suffixes)}' files here "
                    "(give .jsonl or .txt, optionally .gz or .zst, or .parquet)"
                )
            folder = file.parent.resolve()
            files.append(PlannedFile(index, str(folder), file.name, kind))
        sources.append(
            SourceSettings(
                spec.name,
                spec.options.get("text_field") or "text",
                spec.filters,
                spec.on_bad_record,
                spec.encoding_errors,
            )
        )
    names = [s.name for s in sources]
    if len(set(names)) < len(names):
        raise LmforgeError(f"data.datasets: two datasets have the same name ({names}); give each a name")
    return sources, files


def _kind(path: Path) -> str:
    kind, compression = suffixes(path)
    return kind if not compression or compression in COMPRESSIONS else ""


def split_tasks(files: list, tasks: int) -> list[list]:
    """Contiguous slices: task order is file order, so (task, index) is config order."""
    n = len(files)
    return [files[i * n // tasks : (i + 1) * n // tasks] for i in range(tasks)]


def minhash_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) with bands x rows <= num_perm that minimize the false positive
    plus false negative probability mass around `threshold` (the rule datasketch's
    MinHashLSH uses, so both paths cut at the same similarity)."""
    s = np.linspace(0.0, 1.0, 1001)
    best, best_error = (1, num_perm), float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            p = 1.0 - (1.0 - s**r) ** b
            error = np.trapezoid(np.where(s < threshold, p, 0), s) + np.trapezoid(np.where(s >= threshold, 1 - p, 0), s)
            if error < best_error:
                best, best_error = (b, r), error
    return best


def resolve_tokenizer(name: str | None) -> tuple[str | None, str | None]:
    """(tokenizer.json path, EOS token) of a tokenizer directory or file."""
    if name is None:
        return None, None
    path = Path(name)
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise LmforgeError(f"--tokenizer {name}: no tokenizer.json there (give a local fast-tokenizer directory)")
    eos = None
    config = file.parent / "tokenizer_config.json"
    if config.is_file():
        eos = json.loads(config.read_text(encoding="utf-8")).get("eos_token")
        eos = eos.get("content") if isinstance(eos, dict) else eos
    return str(file.resolve()), eos


# --------------------------------------------------------------------------- the output folder


def _fingerprint(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def check_output(output: Path, settings: dict[str, Any]) -> bool:
    """Claims `output` for this pipeline; True when it resumes an earlier run of it. A folder
    holding anything else, or another pipeline's shards, is an error (never overwritten)."""
    marker = output / "prepare.json"
    if output.exists() and any(output.iterdir()):
        if not marker.is_file():
            raise LmforgeError(
                f"--output {output}: not empty and not a data prepare folder; give a new or empty folder"
            )
        earlier = json.loads(marker.read_text(encoding="utf-8"))
        if earlier.get("fingerprint") != _fingerprint(settings):
            changed = sorted(k for k in settings if earlier.get("settings", {}).get(k) != settings[k])
            raise LmforgeError(
                f"--output {output}: holds the shards of a different data prepare pipeline "
                f"(changed: {', '.join(changed) or 'version'}); give another --output"
            )
        return True
    output.mkdir(parents=True, exist_ok=True)
    tmp = output / "prepare.json.tmp"
    tmp.write_text(
        json.dumps({"fingerprint": _fingerprint(settings), "settings": settings}, indent=1), encoding="utf-8"
    )
    os.replace(tmp, marker)
    return False


# --------------------------------------------------------------------------- stages


@dataclass
class Stage:
    name: str
    pipeline: list
    tasks: int


def build_stages(
    plan: list[list],
    sources: list,
    dedup: DedupSettings,
    index: NgramIndex | None,
    output: Path,
    tokenizer: str | None,
    eos: str | None,
    tokenize: bool,
) -> list[Stage]:
    from datatrove.pipeline.dedup import MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature
    from datatrove.pipeline.dedup.exact_dedup import (
        ExactDedupConfig,
        ExactDedupFilter,
        ExactDedupSignature,
        ExactFindDedups,
    )
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupBuckets
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig
    from datatrove.utils.text import TextNormConfig

    from lmforge.data import prepare_steps as steps

    work, counts = output / "work", str(output / "counts")
    tasks = len(plan)
    exact_config = ExactDedupConfig(content_getter=steps.exact_content, document_priority=steps.exact_priority)
    bands, rows = minhash_bands(dedup.threshold, dedup.num_perm)
    # sha1 shingle hashes: datatrove's default xxhash path takes str only from xxhash < 4
    # (newer ones are installed beside `datasets`), and sha1 costs little next to the rest
    minhash = MinhashConfig(
        n_grams=dedup.ngram,
        num_buckets=bands,
        hashes_per_bucket=rows,
        seed=1,
        hash_config=HashConfig(precision=64, hash_fc="sha1"),
        # as clean.normalize: numbers stay (datatrove's default turns every digit into 0)
        norm_config=TextNormConfig(norm_numbers=False, norm_unicode_diacritics=False),
    )
    signature = MinhashDedupSignature(str(work / "minhash_sigs"), minhash, language=steps.SplitWords())

    def stage_writer(name: str) -> Any:
        return JsonlWriter(str(work / name), output_filename="${rank}.jsonl.gz", compression="gzip")

    clean = [
        steps.SourceReader(plan, sources, counts, tokenizer),
        steps.CleanFilter(sources, counts, index),
        stage_writer("clean"),
    ]
    stages = [Stage("clean", clean, tasks)]
    last = "clean"
    if dedup.exact:
        clean.append(ExactDedupSignature(str(work / "exact_sigs"), exact_config))
        stages.append(
            Stage("exact_find", [ExactFindDedups(str(work / "exact_sigs"), str(work / "exact_dups"), exact_config)], 1)
        )
    exact_filter = [ExactDedupFilter(str(work / "exact_dups"), exact_config)] if dedup.exact else []
    if dedup.near:
        if dedup.exact:
            stages.append(
                Stage(
                    "exact_filter",
                    [
                        steps.RankFile(str(work / "clean")),
                        *exact_filter,
                        steps.Tally(counts, "exact"),
                        stage_writer("exact"),
                        signature,
                    ],
                    tasks,
                )
            )
            last, exact_filter = "exact", []
        else:
            clean.append(signature)
        stages.append(
            Stage(
                "minhash_buckets",
                [MinhashDedupBuckets(str(work / "minhash_sigs"), str(work / "minhash_buckets"), config=minhash)],
                bands,
            )
        )
        stages.append(
            Stage(
                "minhash_clusters",
                [MinhashDedupCluster(str(work / "minhash_buckets"), str(work / "minhash_remove"), config=minhash)],
                1,
            )
        )
    final = [steps.RankFile(str(work / last)), *exact_filter]
    if dedup.near:
        final.append(MinhashDedupFilter(str(work / "minhash_remove")))
    final += [
        steps.Tally(counts, "final"),
        JsonlWriter(
            str(output / "shards"),
            output_filename="${shard}/${rank}.jsonl",
            compression=None,
            adapter=steps.final_record,
        ),
    ]
    if tokenize:
        final.append(steps.SourceTokenizer(str(output / "tokens"), tokenizer, eos))
    stages.append(Stage("write", final, tasks))
    return stages


def run_stages(stages: list[Stage], options: PrepareOptions) -> None:
    logs = options.output / "logs"
    if options.executor in ("local", "ray"):
        from lmforge.data.prepare_steps import LocalExecutor, RayExecutor

        if options.executor == "ray":
            try:
                import ray  # noqa: F401
            except ImportError:
                raise LmforgeError("--executor ray needs Ray: pip install ray") from None
        where = " on Ray" if options.executor == "ray" else ""
        for number, stage in enumerate(stages, start=1):
            log.info("[data prepare] stage %d/%d %s%s: %d task(s)", number, len(stages), stage.name, where, stage.tasks)
            kind = RayExecutor if options.executor == "ray" else LocalExecutor
            executor = kind(
                stage.pipeline,
                tasks=stage.tasks,
                workers=max(1, min(options.workers, stage.tasks)),
                logging_dir=str(logs / stage.name),
            )
            executor.verbose = options.verbose
            executor.run()
            # datatrove's Ray executor logs a failed task and carries on: the next stage
            # must not read a partial stage
            if failed := executor.get_incomplete_ranks():
                task_log = logs / stage.name / "logs" / f"task_{failed[0]:05d}.log"
                raise LmforgeError(
                    _task_error(task_log)
                    or f"data prepare: stage {stage.name}: {len(failed)} of {stage.tasks} task(s) failed "
                    f"(log of the first: {task_log}); rerun the command to resume"
                )
        return
    from lmforge.data.prepare_slurm import run_slurm

    run_slurm(stages, options)


def _task_error(task_log: Path) -> str | None:
    """The one-line LmforgeError a failed task raised, from its log (a Ray task's error
    reaches the driver only as a debug line)."""
    prefix = f"{LmforgeError.__module__}.{LmforgeError.__name__}: "
    if not task_log.is_file():
        return None
    lines = [
        line for line in task_log.read_text(encoding="utf-8", errors="replace").splitlines() if line.startswith(prefix)
    ]
    return lines[-1].removeprefix(prefix) if lines else None


# --------------------------------------------------------------------------- the report


def _summed(folder: Path, step: str) -> dict[str, dict[str, dict[str, int]]]:
    """{"docs"|"tokens": {source: {what: n}}} over every task's counts of one step."""
    total: dict[str, dict[str, dict[str, int]]] = {"docs": {}, "tokens": {}}
    for file in sorted((folder / step).glob("*.json")):
        counts = json.loads(file.read_text(encoding="utf-8"))
        for unit in ("docs", "tokens"):
            for source, values in counts[unit].items():
                for what, n in values.items():
                    bucket = total[unit].setdefault(source, {})
                    bucket[what] = bucket.get(what, 0) + n
    return total


def build_report(output: Path, sources: list, dedup: DedupSettings, tokenizer: str | None, tokenize: bool) -> dict:
    counts = output / "counts"
    read, clean, final = _summed(counts, "read"), _summed(counts, "clean"), _summed(counts, "final")
    exact = _summed(counts, "exact") if dedup.exact and dedup.near else (final if dedup.exact else clean)
    rows = []
    for source in sources:
        name = source.name
        row: dict[str, Any] = {"source": name}
        for unit in ("docs", "tokens"):

            def got(step: dict, what: str = "kept", unit: str = unit, name: str = name) -> int:
                return step[unit].get(name, {}).get(what, 0)

            dropped = {reason: got(read if reason == "bad_record" else clean, reason) for reason in REASONS}
            dropped["duplicate"] = got(clean) - got(exact)
            dropped["near_duplicate"] = got(exact) - got(final)
            row[unit] = {"in": got(read, "read"), "out": got(final), "dropped": {k: v for k, v in dropped.items() if v}}
        if tokenizer is None:
            row["tokens"] = None
        if tokenize:
            row["shard_tokens"] = shard_tokens(output / "tokens" / _shard_name(name))
        rows.append(row)
    return {
        "output": str(output),
        "shards": str(output / "shards"),
        "tokens_counted_with": tokenizer,
        "tokenized_shards": str(output / "tokens") if tokenize else None,
        "sources": rows,
    }


def _shard_name(source: str) -> str:
    from lmforge.data.prepare_steps import shard_name

    return shard_name(source)


def report_text(report: dict) -> str:
    tokens = report["tokens_counted_with"] is not None
    header = f"{'source':24} {'docs in':>10} {'docs out':>10}" + (
        f" {'tokens in':>12} {'tokens out':>12}" if tokens else ""
    )
    lines = [header + "  dropped (docs" + (", tokens" if tokens else "") + ")"]
    for row in report["sources"]:
        docs = row["docs"]
        line = f"{row['source'][:24]:24} {docs['in']:>10} {docs['out']:>10}"
        if tokens:
            line += f" {row['tokens']['in']:>12} {row['tokens']['out']:>12}"
        drops = [
            f"{reason} {n}" + (f" ({row['tokens']['dropped'].get(reason, 0)} tokens)" if tokens else "")
            for reason, n in docs["dropped"].items()
        ]
        lines.append(line + "  " + (", ".join(drops) or "none"))
        if row.get("shard_tokens") is not None:
            lines.append(f"{'':24} tokenized shards: {row['shard_tokens']} tokens (EOS included)")
    lines.append(f"cleaned shards: {report['shards']}/<source>/<task>.jsonl")
    if report["tokenized_shards"]:
        lines.append(f"tokenized shards: {report['tokenized_shards']}/<source>/<task>.ds")
    if not tokens:
        lines.append("tokens not counted: give --tokenizer (or model.tokenizer in the config)")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the whole story


def prepare(
    specs: list[DatasetSpec],
    dedup: DedupSettings,
    decontaminate: tuple[list[str], int] | None,
    options: PrepareOptions,
) -> dict:
    """Runs (or resumes) the pipeline into options.output; returns the report (also written
    as report.json and report.txt there)."""
    require_datatrove()
    if options.executor not in ("local", "slurm", "ray"):
        raise LmforgeError(f"--executor {options.executor}: choose local, slurm or ray")
    if options.workers < 1:
        raise LmforgeError(f"--workers {options.workers}: need at least 1")
    if options.tasks is not None and not 1 <= options.tasks <= MAX_TASKS:
        raise LmforgeError(f"--tasks {options.tasks}: give 1 to {MAX_TASKS}")
    if not specs:
        raise LmforgeError("data.datasets: no datasets given")
    sources, files = plan_files(specs)
    index = NgramIndex.from_files(*decontaminate) if decontaminate else None
    tokenizer, eos = resolve_tokenizer(options.tokenizer)
    if options.tokenize and tokenizer is None:
        raise LmforgeError("--tokenize: needs a tokenizer (give --tokenizer or model.tokenizer in the config)")
    if options.tokenize and eos is None:
        raise LmforgeError(
            f"--tokenizer {options.tokenizer}: no eos_token in its tokenizer_config.json to end documents with"
        )
    tasks = min(options.tasks or len(files), len(files), MAX_TASKS)
    settings = {
        "files": [[f.source, f.path, os.path.getsize(f.path)] for f in files],
        "sources": [asdict(s) | {"filters": repr(s.filters)} for s in sources],
        "dedup": asdict(dedup),
        "decontaminate": [[p, os.path.getsize(p)] for p in decontaminate[0]] + [decontaminate[1]]
        if decontaminate
        else None,
        "tokenizer": tokenizer,
        "tokenize": options.tokenize,
        "tasks": tasks,
    }
    resumed = check_output(options.output, settings)
    if resumed:
        log.info("[data prepare] %s: resuming (finished tasks are skipped)", options.output)
    plan = split_tasks(files, tasks)
    stages = build_stages(plan, sources, dedup, index, options.output, tokenizer, eos, options.tokenize)
    run_stages(stages, options)
    if options.executor == "slurm" and not (options.output / "logs" / "write" / "stats.json").exists():
        return {}
    report = build_report(options.output, sources, dedup, tokenizer, options.tokenize)
    (options.output / "report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    (options.output / "report.txt").write_text(report_text(report) + "\n", encoding="utf-8")
    if not options.keep_work:
        # the intermediate files are as large as the corpus; every task is marked complete,
        # so a rerun only rewrites the report from counts/ (kept, small)
        shutil.rmtree(options.output / "work", ignore_errors=True)
    return report


def prepare_from_config(config, options: PrepareOptions) -> dict:
    """The entry point's bridge: the config's datasets, dedup and decontamination settings;
    the tokenizer defaults to model.tokenizer (or model.name_or_path) when it is local."""
    from lmforge.data.from_config import dataset_specs

    require_datatrove()
    data = config.data
    if options.tokenizer is None:
        for candidate in (config.model.tokenizer, config.model.name_or_path):
            if candidate and Path(candidate).is_dir() and (Path(candidate) / "tokenizer.json").is_file():
                options.tokenizer = candidate
                break
    decontaminate = (data.decontaminate.sets, data.decontaminate.ngram) if data.decontaminate else None
    return prepare(dataset_specs(data), DedupSettings(**data.dedup.model_dump()), decontaminate, options)
