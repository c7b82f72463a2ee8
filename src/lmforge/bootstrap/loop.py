"""`lmforge bootstrap`: R rounds of generate -> verify -> pair -> rank-finetune, each round
starting from the previous round's model (docs/commands/bootstrap.md). With objective `ce`
a round is rejection-sampling SFT instead: plain CE on the verified correct samples.

    BOOTSTRAP_DIR/
      bootstrap.json               status and the starting model
      round-<r>/generations.jsonl  one line per chunk of questions (all its samples, verified)
      round-<r>/pairs.jsonl        (question_id, chosen, rejected); or, objective ce,
      round-<r>/correct.jsonl      (question_id, prompt, response): the unique correct samples
      round-<r>/stats.json         written last: the round is complete when it exists
      round-<r>/train/             an ordinary run directory of the round's finetuning

Interrupted runs resume exactly (`--resume`): questions are generated in fixed chunks, each seeded by
(seed, round, chunk), and a chunk's line is written only when all its samples are in, so
a restarted run skips finished chunks and regenerates nothing; an unfinished rank
finetuning resumes from its latest checkpoint.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from lmforge.bootstrap.backends import Sampling, TransformersBackend, VLLMBackend, choose_backend
from lmforge.bootstrap.pairs import build_group, build_pairs, unique_correct
from lmforge.bootstrap.rank_data import RankCollator, correct_rows, rank_dataset, rank_rows, sampling_prompt
from lmforge.bootstrap.verify import load_verifier
from lmforge.objectives.registry import OBJECTIVES
from lmforge.objectives.spec import CANDIDATES
from lmforge.config import Config
from lmforge.data.collate import PadCollator
from lmforge.data.conversation import Conversation
from lmforge.data.formats import get_format
from lmforge.data.pipeline import DatasetReport, DatasetSpec, load_conversations
from lmforge.data.sources import file_sha256
from lmforge.data.tokenize import wants_bos
from lmforge.errors import LmforgeError
from lmforge.eval.generate import load_model_dir, stop_token_ids
from lmforge.models.adapters import is_adapter_dir
from lmforge import rundir
from lmforge.train.data_builders import PreparedData
from lmforge.train.pipeline import run_training

STATE_FILE = "bootstrap.json"
RoundHook = Callable[[int, Path, dict], None]
REJECTION_SAMPLING = ("ce",)
"""Sequence objectives a round can finetune with: plain SFT on the verified correct samples."""


def load_questions(config: Config) -> list[Conversation]:
    questions = []
    for entry in config.data.datasets:
        conversations = load_conversations(DatasetSpec(**entry.model_dump()), DatasetReport(entry.path))
        answered = [c for c in conversations if c.final_answer() is not None]
        questions += answered[: entry.max_train_set] if entry.max_train_set else answered
    if not questions:
        raise LmforgeError(
            "data.datasets: no record has a gold answer; bootstrapping needs CoT records "
            "(question/rationale/answer) to verify generations against"
        )
    return questions


# --------------------------------------------------------------------------- generation


def _read_done_chunks(path: Path) -> dict[int, dict]:
    """Chunks already generated; a torn last line (killed mid-write) is dropped."""
    done: dict[int, dict] = {}
    if not path.is_file():
        return done
    lines = path.read_text(encoding="utf-8").splitlines()
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            break
        done[row["chunk"]] = row
    # atomic: a kill during this rewrite must not lose the chunks already generated
    rundir.write_text_atomic(path, "".join(json.dumps(done[c]) + "\n" for c in sorted(done)))
    return done


def generate_round(
    backend,
    prompt_format,
    tokenizer,
    questions: list[Conversation],
    sampling: Sampling,
    verifier,
    path: Path,
    seed: int,
    chunk_size: int,
    after_chunk: Callable[[int], None] | None = None,
) -> list[dict]:
    """Sample, verify and append one line per chunk of questions; returns every question's samples."""
    done = _read_done_chunks(path)
    chunks = [list(range(i, min(i + chunk_size, len(questions)))) for i in range(0, len(questions), chunk_size)]
    progress = Progress(
        TextColumn("generating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    started, fresh_samples = time.perf_counter(), 0
    with progress, path.open("a", encoding="utf-8") as handle:
        task = progress.add_task(
            "questions", total=len(questions), rate="", completed=sum(len(chunks[c]) for c in done if c < len(chunks))
        )
        for index, ids in enumerate(chunks):
            if index in done:
                continue
            prompts = [sampling_prompt(questions[q], prompt_format, tokenizer) for q in ids]
            outputs = backend.sample(prompts, sampling, seed=hash((seed, index)) & 0x7FFFFFFF)
            rows = []
            for q, texts in zip(ids, outputs):
                gold = questions[q].final_answer()
                verdicts = [verifier(text, gold) for text in texts]
                rows.append(
                    {
                        "question_id": q,
                        "samples": [
                            {"text": t, "valid": v.valid, "correct": v.correct, "answer": v.answer}
                            for t, v in zip(texts, verdicts)
                        ],
                    }
                )
            done[index] = {"chunk": index, "questions": rows}
            handle.write(json.dumps(done[index]) + "\n")
            handle.flush()
            fresh_samples += len(ids) * sampling.samples
            rate = fresh_samples / max(time.perf_counter() - started, 1e-9)
            progress.update(task, advance=len(ids), rate=f"{rate:.1f} samples/s")
            if after_chunk:
                after_chunk(index)
    return [question for c in sorted(done) for question in done[c]["questions"]]


def round_stats(generations: list[dict], pairs: list[dict], samples: int, pairing: str = "pairs") -> dict[str, Any]:
    flat = [s for g in generations for s in g["samples"]]
    return {
        "questions": len(generations),
        "samples": len(flat),
        "valid": sum(s["valid"] for s in flat),
        "correct": sum(s["correct"] for s in flat),
        "pass@1": sum(s["correct"] for s in flat) / max(len(flat), 1),
        f"pass@{samples}": sum(any(s["correct"] for s in g["samples"]) for g in generations) / max(len(generations), 1),
        pairing: len(pairs),  # (correct, incorrect) pairs, ranked groups, or unique correct samples
    }


# --------------------------------------------------------------------------- training


def _round_data(rows: list[dict], collator, data_path: Path, summary: dict) -> PreparedData:
    """A round's finetuning data: `rows` (rank rows with a RankCollator, or the unique correct
    samples with the SFT PadCollator), no validation set, hashed by the round's file
    (pairs.jsonl or correct.jsonl)."""
    return PreparedData(
        train=rank_dataset(rows),
        val=None,
        collator=collator,
        eval_collator=collator,
        cot=True,
        file_hashes={str(data_path): file_sha256(data_path)},
        summary=summary,
    )


def rank_data_builder(questions: list[Conversation], pairs: list[dict], pairs_path: Path):
    def build(config: Config, tokenizer, prompt_format) -> PreparedData:
        rows = rank_rows(questions, pairs, prompt_format, tokenizer, config.data.max_length)
        return _round_data(rows, RankCollator(tokenizer.pad_token_id), pairs_path, {"pairs": len(rows)})

    return build


def correct_data_builder(questions: list[Conversation], correct: list[dict], correct_path: Path):
    """Rejection-sampling SFT: each unique correct sample a sequence, padded like SFT data."""

    def build(config: Config, tokenizer, prompt_format) -> PreparedData:
        rows = correct_rows(questions, correct, prompt_format, tokenizer, config.data.max_length)
        return _round_data(rows, PadCollator(tokenizer.pad_token_id), correct_path, {"correct": len(rows)})

    return build


def check_objective(config: Config) -> bool:
    """A round finetunes with a ranking objective on pairs, or with ce on the correct samples
    (rejection sampling; returns True); any other objective is an error."""
    name = config.train.objective.name
    if name in REJECTION_SAMPLING:
        if config.data.packing:
            raise LmforgeError(
                "data.packing: bootstrap's rejection-sampling rows are padded one sample each; set data.packing: false"
            )
        return True
    objective = OBJECTIVES[name]
    if objective.data != CANDIDATES or objective.self_generated:
        usable = ", ".join(n for n, s in OBJECTIVES.items() if s.data == CANDIDATES and not s.self_generated)
        raise LmforgeError(
            f"train.objective.name: bootstrapping finetunes with a ranking objective on its verified pairs "
            f"({usable}) or with {', '.join(REJECTION_SAMPLING)} on its verified correct samples (rejection "
            f"sampling), got '{name}'"
        )
    return False


def _round_config(config: Config, model_dir: str, train_dir: Path) -> Config:
    data = config.model_dump()
    data["model"].update(name_or_path=model_dir, tokenizer=None)
    if is_adapter_dir(model_dir):  # the previous round's adapter keeps training
        data["model"]["adapter"] = None
    data["run"]["output_dir"] = str(train_dir)
    return Config.model_validate(data)


def _train_round(config: Config, train_dir: Path, builder) -> tuple[Path, int]:
    """The round's finetuned model and its number of optimizer steps."""
    existing = rundir.read_run(train_dir)
    if not (existing and existing.get("status") == "finished"):
        resume = existing is not None and rundir.latest_checkpoint(train_dir) is not None
        run_training(
            config, overwrite=existing is not None and not resume, resume=resume, data_builder=builder
        ).require_finished()
    return train_dir / rundir.MODEL_DIR, rundir.read_run(train_dir)["global_step"]


# --------------------------------------------------------------------------- the loop


def _prepare_root(root: Path, config: Config, overwrite: bool, resume: bool = False) -> dict:
    """The bootstrap directory: `resume` continues the run there (same starting model,
    not finished), `overwrite` replaces it; neither, and a run there is an error. A
    directory without bootstrap.json is never deleted."""
    rundir.check_resume_overwrite(resume, overwrite)
    state_path = root / STATE_FILE
    if state_path.is_file():
        state = json.loads(state_path.read_text(encoding="utf-8"))
        if overwrite:
            import shutil

            shutil.rmtree(root)
        elif state.get("status") == "finished":
            if resume:
                raise LmforgeError(
                    f"{root}: the bootstrap run already finished; nothing to resume (--overwrite replaces it)"
                )
            raise rundir.occupied(root, "a finished bootstrap run", "--resume continues only an unfinished run")
        elif state.get("start_model") != config.model.name_or_path:
            raise LmforgeError(
                f"{root}: holds a bootstrap run from another model ({state.get('start_model')}), "
                "which --resume cannot continue; pass --overwrite to replace it or change "
                "run.output_dir"
            )
        elif not resume:
            raise rundir.occupied(root, f"a {state.get('status', 'running')} bootstrap run")
        else:
            return state
    elif not rundir.is_empty_or_missing(root):
        raise rundir.foreign(root, "bootstrap run", "run.output_dir")
    elif resume:
        raise LmforgeError(f"{root}: --resume given but there is no bootstrap run here ({STATE_FILE}) to continue")
    root.mkdir(parents=True, exist_ok=True)
    state = {"status": "running", "start_model": config.model.name_or_path, "rounds": []}
    rundir.write_json_atomic(state_path, state)
    return state


def _user_text(question: Conversation) -> str:
    return "\n".join(segment.text for segment in question.prompt_segments() if segment.role == "user")


def run_bootstrap(
    config: Config,
    overwrite: bool = False,
    on_round_end: RoundHook | None = None,
    after_chunk: Callable[[int], None] | None = None,
    resume: bool = False,
) -> list[dict]:
    """`resume` continues an interrupted run in run.output_dir, `overwrite` replaces one."""
    settings = config.bootstrap
    rejection_sampling = check_objective(config)
    if not config.model.name_or_path:
        raise LmforgeError("model.name_or_path: bootstrapping starts from a trained model directory")
    verifier = load_verifier(settings.verifier, tuple(settings.answer_fallbacks))
    questions = load_questions(config)
    root = config.output_path
    state = _prepare_root(root, config, overwrite, resume)
    sampling = Sampling(settings.samples, settings.temperature, settings.top_p, settings.max_new_tokens)
    backend_name = choose_backend(settings.backend)

    model_dir, empty_rounds, all_stats = config.model.name_or_path, 0, []
    for round_index in range(1, settings.rounds + 1):
        round_dir = root / f"round-{round_index}"
        stats_path = round_dir / "stats.json"
        if stats_path.is_file():  # finished in an earlier, interrupted invocation
            stats = json.loads(stats_path.read_text(encoding="utf-8"))
            model_dir, empty_rounds = stats["model_dir"], stats["empty_rounds"]
            all_stats.append(stats)
            continue
        round_dir.mkdir(parents=True, exist_ok=True)
        print(f"[lmforge] bootstrap round {round_index}/{settings.rounds} from {model_dir}")
        model, tokenizer, meta = load_model_dir(model_dir)
        prompt_format = get_format(meta.get("prompt_format", config.data.prompt_format))
        stops = meta.get("stop_strings") or prompt_format.stop_strings(tokenizer)
        backend = (
            VLLMBackend(str(model_dir), stops)
            if backend_name == "vllm"
            else TransformersBackend(
                model,
                tokenizer,
                stop_token_ids(tokenizer, stops),
                wants_bos(tokenizer, prompt_format),
                settings.generation_batch_size,
            )
        )
        generations = generate_round(
            backend,
            prompt_format,
            tokenizer,
            questions,
            sampling,
            verifier,
            round_dir / "generations.jsonl",
            seed=config.run.seed * 1009 + round_index,
            chunk_size=max(1, settings.generation_batch_size // settings.samples),
            after_chunk=after_chunk,
        )
        if rejection_sampling:
            kind, empty = "unique_correct", "no correct sample"
            pairs = [
                {"question_id": g["question_id"], "prompt": _user_text(questions[g["question_id"]]), "response": text}
                for g in generations
                for text in unique_correct(g["samples"])
            ]
        elif settings.pairing == "groups":
            kind, empty = "groups", "no (correct, incorrect) pair"
            pairs = [group for g in generations if (group := build_group(g["question_id"], g["samples"]))]
        else:  # `prompt` makes the file a `pairs` dataset that lmforge train reads as it is
            kind, empty = "pairs", "no (correct, incorrect) pair"
            pairs = [
                {
                    "question_id": p.question_id,
                    "prompt": _user_text(questions[p.question_id]),
                    "chosen": p.chosen,
                    "rejected": p.rejected,
                }
                for g in generations
                for p in build_pairs(g["question_id"], g["samples"], config.run.seed)
            ]
        pairs_path = round_dir / ("correct.jsonl" if rejection_sampling else "pairs.jsonl")
        pairs_path.write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")
        stats = round_stats(generations, pairs, settings.samples, kind)
        del model, backend

        steps = 0
        if pairs:
            empty_rounds = 0
            train_config = _round_config(config, str(model_dir), round_dir / "train")
            builder = (correct_data_builder if rejection_sampling else rank_data_builder)(questions, pairs, pairs_path)
            trained, steps = _train_round(train_config, round_dir / "train", builder)
            model_dir = str(trained)
        else:
            empty_rounds += 1
            print(f"[lmforge] round {round_index}: {empty}; the model is unchanged")
        stats.update(round=round_index, model_dir=str(model_dir), empty_rounds=empty_rounds, optimizer_steps=steps)
        print(
            "[lmforge] "
            + ", ".join(
                f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in stats.items() if k != "model_dir"
            )
        )
        rundir.write_json_atomic(stats_path, stats)
        all_stats.append(stats)
        state["rounds"] = all_stats
        rundir.write_json_atomic(root / STATE_FILE, state)
        if on_round_end:
            on_round_end(round_index, Path(model_dir), stats)
        if empty_rounds >= settings.max_empty_rounds:
            state["status"] = "stopped"
            rundir.write_json_atomic(root / STATE_FILE, state)
            why = "all wrong or invalid" if rejection_sampling else "all samples right, or all wrong/invalid"
            raise LmforgeError(
                f"bootstrap stopped after round {round_index}: {empty_rounds} rounds in a row built {empty} "
                f"({why}); raise bootstrap.temperature or bootstrap.samples, or train the model further first"
            )
    state.update(status="finished", final_model=str(model_dir), rounds=all_stats)
    rundir.write_json_atomic(root / STATE_FILE, state)
    return all_stats
