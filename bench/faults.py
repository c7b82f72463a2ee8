"""Fault injection: kill lmforge with SIGKILL at random moments (during a step, an
evaluation, a checkpoint write, a bootstrap generation), fill the disk during a save, then
`--resume` — and check that nothing was lost: the final weights equal an uninterrupted
run's bit for bit (CPU), metrics.jsonl has every step exactly once with the same losses,
and every bootstrap sample is there exactly once.

Not a test (the full run takes several minutes); `tests/e2e/test_faults.py` runs
`--reduced`. Prints a table: fault, trials, recovered, identical, data lost (must be 0).

    python bench/faults.py [--random-kills 10] [--save-kills 20] [--bootstrap-kills 5] [--seed 0]
    python bench/faults.py --reduced --json results.json

How each fault is made: a random-moment kill is SIGKILL from this script after a random
delay within the training loop's measured span; the targeted kills run lmforge in a child
that patches one call to kill its own process (the k-th `torch.save`, after writing half of
the file; the k-th checkpoint manifest, before or after it is written; the k-th
validation batch; the k-th bootstrap sampling call); a full disk is `OSError(ENOSPC)`
raised by the k-th `torch.save`.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
SAVES_PER_CHECKPOINT = 4  # torch.save calls in one Trainer checkpoint: args, optimizer, scheduler, RNG


# --------------------------------------------------------------------------- the child


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _nth_call(function, k: int, before=None, after=None):
    """`function` wrapped so that its k-th call runs `before` first or `after` afterwards."""
    calls = 0

    def wrapped(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == k and before:
            before(*args, **kwargs)
        result = function(*args, **kwargs)
        if calls == k and after:
            after(*args, **kwargs)
        return result

    return wrapped


def _install(fault: str, k: int) -> None:
    """Patch the one call where the fault strikes (runs in the child, before lmforge starts)."""
    import torch

    from lmforge import checkpoints
    from lmforge.bootstrap import backends
    from lmforge.train import trainer

    if fault == "torch_save":  # killed halfway through writing a checkpoint file

        def half_written(obj, f, *args, **kwargs):
            size = Path(f).stat().st_size
            with open(f, "r+b") as handle:
                handle.truncate(size // 2)
            _kill_self()

        torch.save = _nth_call(torch.save, k, after=half_written)
    elif fault == "before_manifest":
        checkpoints.write_manifest = _nth_call(checkpoints.write_manifest, k, before=lambda *a: _kill_self())
    elif fault == "after_manifest":  # complete, but not yet renamed into place
        checkpoints.write_manifest = _nth_call(checkpoints.write_manifest, k, after=lambda *a: _kill_self())
    elif fault == "eval_batch":
        trainer.row_nll = _nth_call(trainer.row_nll, k, before=lambda *a: _kill_self())
    elif fault == "disk_full":

        def no_space(*args, **kwargs):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        torch.save = _nth_call(torch.save, k, before=no_space)
    elif fault == "sample":
        sample = backends.TransformersBackend.sample
        backends.TransformersBackend.sample = _nth_call(sample, k, before=lambda *a, **kw: _kill_self())
    elif fault != "none":
        raise SystemExit(f"unknown fault {fault}")


def child_main(argv: list[str]) -> int:
    fault, k, *command = argv
    _install(fault, int(k))
    from lmforge.cli import main

    return main(command)


def parity_verifier(response: str, gold: str):
    """Bootstrap verifier for the bench: deterministic in the text and about half right, so
    every round builds pairs (the tiny model answers nothing right on its own)."""
    from lmforge.bootstrap.verify import Verdict

    return Verdict(True, len(response) % 2 == 0, None)


# --------------------------------------------------------------------------- set-up


def write_inputs(root: Path, steps: int, save_every: int, eval_every: int) -> dict[str, Path]:
    import yaml

    from lmforge.demo.arithmetic import make_splits
    from lmforge.demo.tokenizer import train_bpe_tokenizer

    train, test = make_splits(160, 8, seed=3)
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    (root / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
    tokenizer = train_bpe_tokenizer((f"{r['question']} {r['rationale']}" for r in train), vocab_size=300)
    tokenizer.save_pretrained(root / "tokenizer")

    def config(name: str, **train) -> dict:
        return {
            "run": {"output_dir": str(root / name), "seed": 7},
            "model": {
                "tokenizer": str(root / "tokenizer"),
                "size": {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "max_position_embeddings": 256},
            },
            "data": {"datasets": [{"path": str(root / "train.jsonl"), "val_split": 0.1}], "max_length": 160},
            "train": {
                "global_batch_size": 8,
                "micro_batch_size": 4,
                "max_steps": steps,
                "save_every": save_every,
                "eval_every": eval_every,
                "logging_steps": 1,
                "measure_roof": False,
                "optimizer": {"lr": 3e-3},
                **train,
            },
        }

    configs = {
        "ce": config("ce"),
        "remask": config("remask", objective={"name": "remask"}, neftune_alpha=10.0),
    }
    paths = {}
    for name, body in configs.items():
        paths[name] = root / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump({"defaults": body}))
    return paths


def bootstrap_config(root: Path, start_model: Path) -> Path:
    import yaml

    body = {
        "run": {"output_dir": str(root / "bootstrap"), "seed": 7},
        "model": {"name_or_path": str(start_model), "freeze_embeddings": True},
        "data": {"datasets": [{"path": str(root / "questions.jsonl")}], "max_length": 160},
        "train": {
            "objective": {"name": "rank", "weight": 5},
            "global_batch_size": 4,
            "micro_batch_size": 2,
            "epochs": 1,
            "logging_steps": 1,
            "save_every": 1,
            "measure_roof": False,
            "optimizer": {"lr": 3e-3},
        },
        "bootstrap": {
            "rounds": 2,
            "samples": 4,
            "max_new_tokens": 12,
            "temperature": 1.0,
            "top_p": 1.0,
            "generation_batch_size": 4,  # one question a chunk: many chunks to be killed between
            "verifier": "faults:parity_verifier",
            "backend": "transformers",
        },
    }
    path = root / "bootstrap.yaml"
    path.write_text(yaml.safe_dump({"defaults": body}))
    return path


# --------------------------------------------------------------------------- running


def run(command: list[str], fault: str = "none", k: int = 0, kill_after: float | None = None) -> tuple[int, str]:
    """Run lmforge in a child (killed after `kill_after` seconds if given); (exit code, output)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [sys.executable, str(HERE), "--child", fault, str(k), *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=kill_after)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
    return process.returncode, output


def train_log(run_dir: Path) -> dict[str, list]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {
        "train": [(r["step"], r["loss"]) for r in rows if "loss" in r],
        "eval": [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r],
    }


def same_weights(a: Path, b: Path) -> bool:
    import torch
    from safetensors.torch import load_file

    if not (a / "model.safetensors").is_file() or not (b / "model.safetensors").is_file():
        return False
    left, right = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return left.keys() == right.keys() and all(torch.equal(left[n], right[n]) for n in left)


def compare_training(reference: Path, resumed: Path) -> tuple[bool, int]:
    """(identical, data lost): weights bit for bit and the log row for row; lost = reference
    steps missing from the resumed log, plus steps logged more than once."""
    from lmforge.rundir import read_run

    if (read_run(resumed) or {}).get("status") != "finished":
        return False, len(train_log(reference)["train"])
    expected, got = train_log(reference), train_log(resumed)
    steps = [step for step, _ in got["train"]]
    lost = len({s for s, _ in expected["train"]} - set(steps)) + (len(steps) - len(set(steps)))
    identical = same_weights(reference / "model", resumed / "model") and expected == got
    return identical, lost


def resume_until_finished(command: list[str], attempts: int = 3) -> tuple[bool, str]:
    """`--resume` (or, when the kill came before the first checkpoint, a fresh start, as a
    user would: the error says so)."""
    output = ""
    for _ in range(attempts):
        code, output = run([*command, "--resume"])
        if code == 0 or "already finished" in output:  # the kill came after the run's last write
            return True, output
        if "saved no complete checkpoint" in output or "not an lmforge run directory" in output:
            code, output = run([*command, "--overwrite"])
            return code == 0, output
    return False, output


class Table:
    def __init__(self):
        self.rows: list[dict] = []

    def add(self, fault: str, outcomes: list[tuple[bool, bool, int]], note: str = "") -> None:
        self.rows.append(
            {
                "fault": fault,
                "trials": len(outcomes),
                "recovered": sum(o[0] for o in outcomes),
                "identical": sum(o[1] for o in outcomes),
                "data_lost": sum(o[2] for o in outcomes),
                "note": note,
            }
        )

    def print(self) -> None:
        print(f"\n{'fault':<52} {'trials':>6} {'recovered':>9} {'identical':>9} {'data lost':>9}")
        for r in self.rows:
            print(f"{r['fault']:<52} {r['trials']:>6} {r['recovered']:>9} {r['identical']:>9} {r['data_lost']:>9}")
            if r["note"]:
                print(f"    {r['note']}")


def killed_run(command: list[str], draw) -> None:
    """Start a fresh run that a fault kills; `draw(last)` gives (fault, k, kill_after),
    where `last` is the wall time of a run that finished before a timed kill came (None at
    first): a draw that missed is drawn again, within that shorter time."""
    last = None
    for _ in range(5):
        fault, k, kill_after = draw(last)
        started = time.perf_counter()
        code, output = run([*command, "--overwrite"], fault, k, kill_after)
        if code == -signal.SIGKILL:
            return
        last = time.perf_counter() - started
    raise SystemExit(f"five draws in a row did not kill the run ({fault}); last output:\n{output[-2000:]}")


def kill_and_resume(config: Path, reference: Path, draw) -> tuple:
    run_dir = reference.parent / f"{reference.name}-trial"
    command = ["train", str(config), "--set", f"run.output_dir={run_dir}"]
    killed_run(command, draw)
    recovered, output = resume_until_finished(command)
    if not recovered:
        print(f"not recovered:\n{output[-2000:]}")
    identical, lost = compare_training(reference, run_dir)
    return recovered, identical, lost


def training_faults(name: str, config: Path, root: Path, args, table: Table, rng: random.Random) -> Path:
    reference = root / name
    started = time.perf_counter()
    code, output = run(["train", str(config), "--set", f"run.output_dir={reference}", "--overwrite"])
    if code != 0:
        raise SystemExit(f"the uninterrupted {name} run failed:\n{output}")
    elapsed = time.perf_counter() - started
    # kill moments: anywhere from the first training step to the end of the run
    first = elapsed - float(json.loads((reference / "run.json").read_text())["final_metrics"]["train_runtime"])
    saves = args.steps // args.save_every
    evals = args.steps // args.eval_every

    def random_moment(last: float | None) -> tuple[str, int, float]:
        end = 0.9 * (last or elapsed)  # a run that ended before its kill shortens the window
        return "none", 0, rng.uniform(min(first, end / 2), end)

    outcomes = [kill_and_resume(config, reference, random_moment) for _ in range(args.random_kills)]
    table.add(f"{name}: SIGKILL at a random moment", outcomes)
    if args.eval_kills:
        eval_batches = 1  # the tiny validation split is one batch
        outcomes = [
            kill_and_resume(config, reference, lambda _: ("eval_batch", rng.randint(1, evals * eval_batches), None))
            for _ in range(args.eval_kills)
        ]
        table.add(f"{name}: SIGKILL during evaluation", outcomes)
    if args.save_kills:
        outcomes, complete = [], 0
        for _ in range(args.save_kills):
            outcome = kill_and_resume_checking_choice(config, reference, lambda _: draw_save_kill(rng, saves))
            complete += outcome[3]
            outcomes.append(outcome[:3])
        table.add(
            f"{name}: SIGKILL during a checkpoint write",
            outcomes,
            f"resume chose a complete checkpoint (or none) and removed the partial one in {complete}/{len(outcomes)}",
        )
    if args.disk_full:
        outcomes = [disk_full_trial(config, reference, rng.randint(2, saves * SAVES_PER_CHECKPOINT))]
        table.add(f"{name}: disk full during a save (ENOSPC)", outcomes)
    return reference


def draw_save_kill(rng: random.Random, saves: int) -> tuple[str, int, None]:
    fault = rng.choice(["torch_save", "before_manifest", "after_manifest"])
    return fault, rng.randint(1, saves * SAVES_PER_CHECKPOINT if fault == "torch_save" else saves), None


def kill_and_resume_checking_choice(config: Path, reference: Path, draw) -> tuple:
    """A kill inside a save, then: resume picks the newest checkpoint whose files all match
    their hashes (never a staging directory), and the staging leftovers are gone."""
    from lmforge import checkpoints
    from lmforge.rundir import read_run

    run_dir = reference.parent / f"{reference.name}-trial"
    command = ["train", str(config), "--set", f"run.output_dir={run_dir}"]
    killed_run(command, draw)
    # checked here independently: the newest checkpoint-N whose every file matches its hash
    complete = next((c for c in checkpoints.candidates(run_dir) if checkpoints.problem(c) is None), None)
    recovered, output = resume_until_finished(command)
    if not recovered:
        print(f"not recovered:\n{output[-2000:]}")
    resumed_from = (read_run(run_dir) or {}).get("resumed_from")
    good_choice = resumed_from == (str(complete) if complete else None) and not list(
        run_dir.glob(f"{checkpoints.PARTIAL_PREFIX}*")
    )
    identical, lost = compare_training(reference, run_dir)
    return recovered, identical, lost, good_choice


def disk_full_trial(config: Path, reference: Path, k: int) -> tuple:
    """ENOSPC in a save: a one-line error, exit code 2, the run marked failed, the previous
    checkpoint still verifies, no partial directory; then --resume finishes identically."""
    from lmforge import checkpoints
    from lmforge.rundir import read_run

    run_dir = reference.parent / f"{reference.name}-trial"
    command = ["train", str(config), "--set", f"run.output_dir={run_dir}"]
    code, output = run([*command, "--overwrite"], "disk_full", k)
    error_lines = [line for line in output.splitlines() if line.startswith("lmforge: error:")]
    clean = (
        code == 2
        and len(error_lines) == 1
        and "disk is full" in error_lines[0]
        and (read_run(run_dir) or {}).get("status") == "failed"
        and not list(run_dir.glob(f"{checkpoints.PARTIAL_PREFIX}*"))
        and all(checkpoints.problem(c) is None for c in checkpoints.candidates(run_dir))
    )
    if not clean:
        print(f"disk-full trial (k={k}) did not fail cleanly: exit {code}\n{output[-2000:]}")
    recovered, _ = resume_until_finished(command)
    identical, lost = compare_training(reference, run_dir)
    return recovered and clean, identical, lost


def bootstrap_faults(root: Path, start_model: Path, args, table: Table, rng: random.Random) -> None:
    config = bootstrap_config(root, start_model)
    reference = root / "bootstrap"
    code, output = run(["bootstrap", str(config), "--set", f"run.output_dir={reference}", "--overwrite"])
    if code != 0:
        raise SystemExit(f"the uninterrupted bootstrap run failed:\n{output}")
    sample_calls = 2 * sum(1 for _ in (root / "questions.jsonl").open())  # two rounds, a question a chunk
    outcomes = []
    for _ in range(args.bootstrap_kills):
        trial = root / "bootstrap-trial"
        command = ["bootstrap", str(config), "--set", f"run.output_dir={trial}"]
        killed_run(command, lambda _: ("sample", rng.randint(1, sample_calls), None))
        code, _ = run([*command, "--resume"])
        outcomes.append((code == 0, *compare_bootstrap(reference, trial)))
    table.add("bootstrap: SIGKILL during generation", outcomes)


def compare_bootstrap(reference: Path, resumed: Path) -> tuple[bool, int]:
    """(identical, samples lost or duplicated): every round's generations and pairs, and
    the final model."""
    identical, lost = True, 0
    for round_dir in sorted(reference.glob("round-*")):
        theirs = resumed / round_dir.name
        expected = [json.loads(line) for line in (round_dir / "generations.jsonl").read_text().splitlines()]
        path = theirs / "generations.jsonl"
        got = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
        want = {(q["question_id"], i) for row in expected for q in row["questions"] for i in range(len(q["samples"]))}
        have = [(q["question_id"], i) for row in got for q in row["questions"] for i in range(len(q["samples"]))]
        lost += len(want - set(have)) + (len(have) - len(set(have)))
        identical &= expected == got
        identical &= (round_dir / "pairs.jsonl").read_bytes() == (theirs / "pairs.jsonl").read_bytes()
    last = sorted(reference.glob("round-*"))[-1].name
    identical &= same_weights(reference / last / "train" / "model", resumed / last / "train" / "model")
    return identical, lost


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random-kills", type=int, default=10)
    parser.add_argument("--eval-kills", type=int, default=3)
    parser.add_argument("--save-kills", type=int, default=20)
    parser.add_argument("--disk-full", type=int, default=1, choices=[0, 1])
    parser.add_argument("--bootstrap-kills", type=int, default=5)
    parser.add_argument("--objectives", default="ce,remask")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--save-every", type=int, default=3)
    parser.add_argument("--eval-every", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reduced", action="store_true", help="the make-test version: ce, one trial of each fault")
    parser.add_argument("--json", default=None, help="also write the table here as JSON")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    if args.reduced:
        args.random_kills, args.eval_kills, args.save_kills, args.bootstrap_kills = 1, 0, 2, 1
        args.objectives, args.steps, args.save_every, args.eval_every = "ce", 6, 2, 3
    rng = random.Random(args.seed)
    root = Path(args.workdir or tempfile.mkdtemp(prefix="lmforge-faults-"))
    root.mkdir(parents=True, exist_ok=True)
    configs = write_inputs(root, args.steps, args.save_every, args.eval_every)
    table = Table()
    started = time.perf_counter()
    references = {
        name: training_faults(name, configs[name], root, args, table, rng) for name in args.objectives.split(",")
    }
    if args.bootstrap_kills:
        bootstrap_faults(root, next(iter(references.values())) / "model", args, table, rng)
    table.print()
    print(f"\n{time.perf_counter() - started:.0f} s in {root}")
    if args.json:
        Path(args.json).write_text(json.dumps(table.rows, indent=2) + "\n")
    ok = all(r["recovered"] == r["identical"] == r["trials"] and r["data_lost"] == 0 for r in table.rows)
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.exit(child_main(sys.argv[2:]))
    sys.exit(main())
