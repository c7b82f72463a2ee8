"""One CLI contract (issue 17 item 2): every command that writes a run directory (train,
bootstrap, ablate, demo) refuses an existing one without --resume (continue) or
--overwrite (replace), never deletes a directory lmforge did not make, and refuses both
flags together; flags mean one thing everywhere; logging, --version and --help."""

from __future__ import annotations

import json

import pytest
import yaml

from lmforge.bootstrap.loop import run_bootstrap
from lmforge.cli import main
from lmforge.config import load_config
from lmforge.train.pipeline import run_training
from tests.e2e.conftest import write_config
from tests.e2e.test_bootstrap import _bootstrap_config, sft_model  # noqa: F401 (fixture)
from tests.e2e.test_resume import Interrupt


def _error(capsys, argv) -> str:
    """The one stderr line of a command that must exit with code 2."""
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _refuses_existing(capsys, argv, directory) -> str:
    message = _error(capsys, argv)
    assert str(directory) in message and "--resume" in message and "--overwrite" in message, message
    return message


def _foreign(tmp_path, name):
    directory = tmp_path / name
    directory.mkdir()
    (directory / "precious.txt").write_text("keep me")
    return directory


BOTH = "--resume and --overwrite exclude each other"


# ----------------------------------------------------------------------------- train


def test_train_contract(tmp_path, user_files, capsys):
    run = tmp_path / "run"
    config = write_config(tmp_path / "c.yaml", user_files, run, max_steps=2, save_every=1)
    with pytest.raises(KeyboardInterrupt):  # killed after its first checkpoint
        run_training(load_config(config), extra_callbacks=[Interrupt(at_step=1)])

    assert "holds a failed run; pass --resume to continue it or --overwrite" in _refuses_existing(
        capsys, ["train", str(config)], run
    )
    assert BOTH in _error(capsys, ["train", str(config), "--resume", "--overwrite"])
    assert main(["train", str(config), "--resume"]) == 0
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "finished" and record["resumed_from"].endswith("checkpoint-1")

    assert "holds a finished run" in _refuses_existing(capsys, ["train", str(config)], run)
    assert "nothing to resume" in _error(capsys, ["train", str(config), "--resume"])
    capsys.readouterr()
    assert main(["train", str(config), "--overwrite"]) == 0
    assert f"[lmforge] {user_files / 'train.jsonl'}: detected format cot" in capsys.readouterr().out  # log.info
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "finished" and "resumed_from" not in record  # a new run, not the resumed one

    foreign = _foreign(tmp_path, "mine")
    other = write_config(tmp_path / "f.yaml", user_files, foreign, max_steps=1)
    for flags in ([], ["--overwrite"], ["--resume"]):
        assert str(foreign) in _error(capsys, ["train", str(other), *flags])
    assert (foreign / "precious.txt").read_text() == "keep me"


# ----------------------------------------------------------------------------- bootstrap


class Kill(Exception):
    pass


def _kill(chunk):
    raise Kill


def test_bootstrap_contract(tmp_path, user_files, sft_model, capsys):  # noqa: F811 (fixture)
    config = _bootstrap_config(tmp_path, user_files, sft_model, "boot", rounds=1)
    root = tmp_path / "boot"
    with pytest.raises(Kill):  # interrupted after its first chunk of questions
        run_bootstrap(load_config(config), after_chunk=_kill)
    first_chunk = (root / "round-1" / "generations.jsonl").read_text()

    # an existing run is no longer resumed silently
    assert "holds a running bootstrap run" in _refuses_existing(capsys, ["bootstrap", str(config)], root)
    assert BOTH in _error(capsys, ["bootstrap", str(config), "--resume", "--overwrite"])
    assert main(["bootstrap", str(config), "--resume"]) == 0
    generations = (root / "round-1" / "generations.jsonl").read_text()
    assert generations.startswith(first_chunk) and len(generations.splitlines()) == 4  # chunk 0 kept, 1-3 added
    assert json.loads((root / "bootstrap.json").read_text())["status"] == "finished"

    assert "holds a finished bootstrap run" in _refuses_existing(capsys, ["bootstrap", str(config)], root)
    assert "nothing to resume" in _error(capsys, ["bootstrap", str(config), "--resume"])
    (root / "note.txt").write_text("from the previous run")
    assert main(["bootstrap", str(config), "--overwrite"]) == 0
    assert not (root / "note.txt").exists() and (root / "round-1" / "stats.json").is_file()

    foreign = _foreign(tmp_path, "mine")
    for flags in ([], ["--overwrite"], ["--resume"]):
        assert str(foreign) in _error(capsys, ["bootstrap", str(config), "--set", f"run.output_dir={foreign}", *flags])
    assert (foreign / "precious.txt").read_text() == "keep me"


# ----------------------------------------------------------------------------- ablate


def test_ablate_contract(tmp_path, user_files, capsys):
    root = tmp_path / "ablation"
    config = write_config(tmp_path / "c.yaml", user_files, root, max_steps=2, eval_every=2)
    argv = ["ablate", str(config), "--variants", "sft", "--test", str(user_files / "test.jsonl")]
    assert main([*argv, "--seeds", "1"]) == 0
    weights = (root / "sft" / "seed-0" / "model" / "model.safetensors").stat().st_mtime_ns

    assert "holds a finished ablation" in _refuses_existing(capsys, [*argv, "--seeds", "1"], root)
    assert BOTH in _error(capsys, [*argv, "--resume", "--overwrite"])
    assert "ran with a different config.train.optimizer.lr" in _error(
        capsys, [*argv, "--resume", "--set", "train.optimizer.lr=0.1"]
    )

    # --resume keeps the finished run and trains the one a second seed adds
    capsys.readouterr()
    assert main([*argv, "--seeds", "2", "--resume"]) == 0
    out = capsys.readouterr().out
    assert "ablation: sft, seed 1/2 finished earlier; kept" in out and "ablation: sft, seed 2/2" in out
    assert (root / "sft" / "seed-0" / "model" / "model.safetensors").stat().st_mtime_ns == weights
    assert json.loads((root / "sft" / "seed-1" / "run.json").read_text())["status"] == "finished"
    result = json.loads((root / "ablation.json").read_text())
    assert len(result["variants"][0]["accuracies"]) == 2

    # an unfinished run without a checkpoint trains again
    record = json.loads((root / "sft" / "seed-1" / "run.json").read_text())
    (root / "sft" / "seed-1" / "run.json").write_text(json.dumps({**record, "status": "running"}))
    capsys.readouterr()
    assert main([*argv, "--seeds", "2", "--resume"]) == 0
    assert "ablation: sft, seed 2/2\n" in capsys.readouterr().out
    assert json.loads((root / "sft" / "seed-1" / "run.json").read_text())["status"] == "finished"

    # --overwrite clears the directory: the second seed's run is gone
    assert main([*argv, "--seeds", "1", "--overwrite"]) == 0
    assert not (root / "sft" / "seed-1").exists()
    assert len(json.loads((root / "ablation.json").read_text())["variants"][0]["accuracies"]) == 1

    foreign = _foreign(tmp_path, "mine")
    for flags in ([], ["--overwrite"], ["--resume"]):
        assert str(foreign) in _error(capsys, [*argv, "--set", f"run.output_dir={foreign}", *flags])
    assert (foreign / "precious.txt").read_text() == "keep me"


# ----------------------------------------------------------------------------- demo


def test_demo_contract(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--size", "smoke", "--output-dir", str(out)]
    assert main(argv) == 0
    started = json.loads((out / "run" / "run.json").read_text())["started"]
    weights = (out / "run" / "model" / "model.safetensors").stat().st_mtime_ns

    assert "holds a demo" in _refuses_existing(capsys, argv, out)
    assert BOTH in _error(capsys, [*argv, "--resume", "--overwrite"])
    assert "ran with --size smoke --seed 0" in _error(capsys, [*argv, "--seed", "1", "--resume"])
    assert "--resume needs --output-dir" in _error(capsys, ["demo", "--size", "smoke", "--resume"])

    assert main([*argv, "--resume"]) == 0  # the finished training is kept, the scores computed again
    assert json.loads((out / "run" / "run.json").read_text())["started"] == started
    assert (out / "run" / "model" / "model.safetensors").stat().st_mtime_ns == weights
    assert "| after SFT |" in (out / "run" / "summary.md").read_text()
    # a bootstrap demo trains its own (shorter) SFT: a plain demo is not continued as one
    assert "ran with --size smoke --seed 0" in _error(capsys, [*argv, "--resume", "--bootstrap"])

    boot = ["demo", "--size", "smoke", "--output-dir", str(tmp_path / "boot"), "--bootstrap"]
    assert main(boot) == 0
    assert "after bootstrap round 1" in capsys.readouterr().out
    stats = (tmp_path / "boot" / "bootstrap" / "round-1" / "stats.json").stat().st_mtime_ns
    assert main([*boot, "--resume"]) == 0  # finished rounds are scored again, not run again
    assert "after bootstrap round 1" in capsys.readouterr().out
    assert (tmp_path / "boot" / "bootstrap" / "round-1" / "stats.json").stat().st_mtime_ns == stats
    assert "ran with --size smoke --bootstrap --seed 0" in _error(capsys, [*boot[:-1], "--resume"])

    (out / "note.txt").write_text("from the previous demo")
    assert main([*argv, "--overwrite"]) == 0
    assert not (out / "note.txt").exists() and (out / "run" / "model" / "model.safetensors").is_file()

    foreign = _foreign(tmp_path, "mine")
    for flags in ([], ["--overwrite"], ["--resume"]):
        assert str(foreign) in _error(capsys, ["demo", "--size", "smoke", "--output-dir", str(foreign), *flags])
    assert (foreign / "precious.txt").read_text() == "keep me"


# ----------------------------------------------------------------------------- global flags


def test_version(capsys):
    from importlib import metadata

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"lmforge {metadata.version('lmforge')}"


def test_help_lists_every_command_on_one_line(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    for command in (
        "train",
        "config",
        "schedule",
        "generate",
        "bootstrap",
        "ablate",
        "demo",
        "eval",
        "sweep",
        "data",
        "export",
        "estimate",
    ):
        (line,) = [line for line in lines if line.split()[:1] == [command]]
        assert len(line.split()) > 2, line  # the name, then its one-line help


def test_log_lines_default_quiet_and_verbose(tmp_path, user_files, capsys):
    """`data inspect`'s stdout is its report, so its log lines go to stderr; train's join
    its [lmforge] lines on stdout (test_train_contract)."""
    config = write_config(tmp_path / "c.yaml", user_files, tmp_path / "run")
    detected = f"[lmforge] {user_files / 'train.jsonl'}: detected format cot"
    assert main(["data", "inspect", str(config)]) == 0
    captured = capsys.readouterr()
    assert detected in captured.err and captured.out.startswith("dataset")
    assert main(["-q", "data", "inspect", str(config)]) == 0
    captured = capsys.readouterr()
    assert "detected format" not in captured.out + captured.err
    assert main(["-v", "data", "inspect", str(config), "--json"]) == 0
    captured = capsys.readouterr()
    json.loads(captured.out)
    assert detected in captured.err


# ----------------------------------------------------------------------------- renamed flags


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, user_files):
    root = tmp_path_factory.mktemp("contract-run")
    config = write_config(root / "c.yaml", user_files, root / "run", max_steps=2)
    assert main(["train", str(config)]) == 0
    return root / "run"


def test_eval_fewshot_seed_and_format(finished_run, user_files, tmp_path, capsys):
    test = str(user_files / "test.jsonl")
    common = ["eval", str(finished_run), "--task", test, "--limit", "3", "--max-new-tokens", "8"]
    output = tmp_path / "seeded.json"
    assert main([*common, "--shots", "1", "--fewshot-seed", "7", "--output", str(output)]) == 0
    assert json.loads(output.read_text())["tasks"][0]["fewshot_seed"] == 7
    assert _error(capsys, [*common, "--shots", "1", "--seed", "7"]) == "lmforge: error: --seed is now --fewshot-seed"
    assert _error(capsys, [*common, "--formats", "plain,remask"]) == "lmforge: error: --formats is now --format A,B,..."
    assert "--seed is now --fewshot-seed" in _error(capsys, ["sweep", str(finished_run), "--task", test, "--seed", "3"])

    output = tmp_path / "robust.json"
    capsys.readouterr()
    assert main([*common, "--format", "plain,remask", "--output", str(output)]) == 0
    report = json.loads(output.read_text())
    assert report["formats"] == ["plain", "remask"] and set(report["summary"]) == {"test"}
    assert "spread" in capsys.readouterr().out
    output = tmp_path / "plain.json"
    assert main([*common, "--format", "plain", "--output", str(output)]) == 0
    assert json.loads(output.read_text())["tasks"][0]["prompt_format"] == "plain"
    assert "--harness evaluates one prompt format" in _error(capsys, [*common, "--format", "plain,remask", "--harness"])


def test_eval_tasks_config_key_is_fewshot_seed(tmp_path, user_files, capsys):
    config = write_config(tmp_path / "c.yaml", user_files, tmp_path / "run")
    entry = "train.eval_tasks=[{task: t.jsonl, every: 2, shots: 1, fewshot_seed: 5}]"
    assert main(["config", "show", str(config), "--set", entry]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["train"]["eval_tasks"][0]["fewshot_seed"] == 5
    message = _error(
        capsys, ["config", "show", str(config), "--set", "train.eval_tasks=[{task: t.jsonl, every: 2, seed: 5}]"]
    )
    assert "unknown key" in message and "seed" in message
