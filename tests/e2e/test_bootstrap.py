"""`lmforge bootstrap` on a tiny model: rounds, files, stats, kill-and-resume exactness,
and the bad inputs."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from lmforge.bootstrap.loop import run_bootstrap
from lmforge.bootstrap.verify import Verdict
from lmforge.cli import main
from lmforge.config import load_config
from tests.e2e.conftest import write_config


def parity_verifier(response: str, gold: str) -> Verdict:
    """Test verifier: deterministic in the text, about half right, so pairs always exist."""
    return Verdict(True, len(response) % 2 == 0, None)


def always_right(response: str, gold: str) -> bool:
    return True


@pytest.fixture(scope="module")
def sft_model(tmp_path_factory, user_files):
    root = tmp_path_factory.mktemp("sft")
    config = write_config(root / "c.yaml", user_files, root / "run", max_steps=3)
    assert main(["train", str(config)]) == 0
    return root / "run" / "model"


def _bootstrap_config(
    tmp_path, user_files, sft_model, out, verifier="tests.e2e.test_bootstrap:parity_verifier", rounds=2
):
    path = write_config(
        tmp_path / f"{out}.yaml",
        user_files,
        tmp_path / out,
        objective={"name": "rank", "weight": 5},
        global_batch_size=4,
        micro_batch_size=2,
        max_steps=None,
        epochs=1,
    )
    config = yaml.safe_load(path.read_text())
    config["defaults"]["model"] = {"name_or_path": str(sft_model), "freeze_embeddings": True}
    config["defaults"]["data"]["datasets"] = [{"path": str(user_files / "test.jsonl")}]  # 8 questions
    config["defaults"]["bootstrap"] = {
        "rounds": rounds,
        "samples": 4,
        "max_new_tokens": 12,
        "temperature": 1.0,
        "top_p": 1.0,
        "generation_batch_size": 8,
        "verifier": verifier,
        "backend": "transformers",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_bootstrap_rounds_write_their_files(tmp_path, user_files, sft_model):
    config = _bootstrap_config(tmp_path, user_files, sft_model, "boot")
    assert main(["bootstrap", str(config)]) == 0
    root = tmp_path / "boot"
    for r in (1, 2):
        stats = json.loads((root / f"round-{r}" / "stats.json").read_text())
        assert stats["questions"] == 8 and stats["samples"] == 32 and stats["valid"] == 32
        pairs = [json.loads(line) for line in (root / f"round-{r}" / "pairs.jsonl").read_text().splitlines()]
        assert stats["pairs"] == len(pairs) > 0
        for q in {p["question_id"] for p in pairs}:  # each response used at most once
            mine = [p for p in pairs if p["question_id"] == q]
            assert len({p["chosen"] for p in mine}) == len(mine) == len({p["rejected"] for p in mine})
            assert all(len(p["chosen"]) % 2 == 0 and len(p["rejected"]) % 2 == 1 for p in mine)
        assert 0.0 <= stats["pass@1"] <= stats["pass@4"] <= 1.0
        assert (root / f"round-{r}" / "train" / "model" / "model.safetensors").is_file()
    round2 = yaml.safe_load((root / "round-2" / "train" / "config.yaml").read_text())
    assert round2["model"]["name_or_path"] == str(root / "round-1" / "train" / "model")  # r+1 starts from r
    assert json.loads((root / "bootstrap.json").read_text())["status"] == "finished"


def test_groups_pairing_and_dpo_rounds(tmp_path, user_files, sft_model):
    """`pairing: groups` ranks every correct response above every incorrect one; a round
    can finetune with DPO (reference log-probs from the round's starting model), and the
    pairs file of `pairing: pairs` is a `pairs` dataset lmforge train reads."""
    config = _bootstrap_config(tmp_path, user_files, sft_model, "groups", rounds=1)
    data = yaml.safe_load(config.read_text())
    data["defaults"]["bootstrap"]["pairing"] = "groups"
    data["defaults"]["train"]["objective"] = {"name": "dpo", "beta": 0.1}
    config.write_text(yaml.safe_dump(data))
    assert main(["bootstrap", str(config)]) == 0
    round_dir = tmp_path / "groups" / "round-1"
    groups = [json.loads(line) for line in (round_dir / "pairs.jsonl").read_text().splitlines()]
    stats = json.loads((round_dir / "stats.json").read_text())
    assert stats["groups"] == len(groups) > 0 and "pairs" not in stats
    for group in groups:
        assert group["correct"] and group["incorrect"]
        assert all(len(t) % 2 == 0 for t in group["correct"]) and all(len(t) % 2 == 1 for t in group["incorrect"])
    assert (round_dir / "train" / "reference" / "reference_logps.json").is_file()
    first_loss = next(
        json.loads(line)["loss"]
        for line in (round_dir / "train" / "metrics.jsonl").read_text().splitlines()
        if "loss" in json.loads(line)
    )
    assert first_loss == pytest.approx(0.693147, rel=1e-4)  # the policy starts as its reference


def test_rejection_sampling_rounds_with_objective_ce(tmp_path, user_files, sft_model):
    """Objective ce: each round finetunes plain CE on every question's unique valid correct
    samples, written to correct.jsonl and counted in stats.json (no pairs, no gold)."""
    config = _bootstrap_config(tmp_path, user_files, sft_model, "rs", rounds=2)
    data = yaml.safe_load(config.read_text())
    data["defaults"]["train"]["objective"] = {"name": "ce"}
    config.write_text(yaml.safe_dump(data))
    assert main(["bootstrap", str(config)]) == 0
    for r in (1, 2):
        round_dir = tmp_path / "rs" / f"round-{r}"
        generations = [
            q
            for line in (round_dir / "generations.jsonl").read_text().splitlines()
            for q in json.loads(line)["questions"]
        ]
        expected = []
        for g in generations:  # the valid correct samples, whitespace-duplicates removed
            seen = set()
            for s in g["samples"]:
                key = " ".join(s["text"].split())
                if s["valid"] and key not in seen:
                    seen.add(key)
                    if s["correct"]:
                        expected.append((g["question_id"], s["text"]))
        correct = [json.loads(line) for line in (round_dir / "correct.jsonl").read_text().splitlines()]
        assert [(c["question_id"], c["response"]) for c in correct] == expected and expected
        assert all(len(c["response"]) % 2 == 0 and c["prompt"] for c in correct)
        assert not (round_dir / "pairs.jsonl").exists()
        stats = json.loads((round_dir / "stats.json").read_text())
        assert stats["unique_correct"] == len(correct) and "pairs" not in stats
        run = json.loads((round_dir / "train" / "run.json").read_text())
        assert run["correct"] == len(correct)
        assert stats["optimizer_steps"] == run["global_step"] == -(-len(correct) // 4)  # one epoch, batch 4
    round2 = yaml.safe_load((tmp_path / "rs" / "round-2" / "train" / "config.yaml").read_text())
    assert round2["model"]["name_or_path"] == str(tmp_path / "rs" / "round-1" / "train" / "model")


def test_pairs_file_of_a_round_trains_with_lmforge_train(tmp_path, user_files, sft_model):
    config = _bootstrap_config(tmp_path, user_files, sft_model, "pairs_round", rounds=1)
    assert main(["bootstrap", str(config)]) == 0
    pairs = tmp_path / "pairs_round" / "round-1" / "pairs.jsonl"
    train = write_config(tmp_path / "dpo.yaml", user_files, tmp_path / "dpo", max_steps=2, objective={"name": "dpo"})
    assert (
        main(
            [
                "train",
                str(train),
                "--set",
                f"data.datasets=[{{path: {pairs}, val_split: 0}}]",
                "--set",
                f"model.name_or_path={sft_model}",
                "--set",
                "model.tokenizer=null",
            ]
        )
        == 0
    )


class Kill(Exception):
    pass


def test_kill_and_resume_matches_an_uninterrupted_run(tmp_path, user_files, sft_model):
    straight = load_config(_bootstrap_config(tmp_path, user_files, sft_model, "straight"))
    run_bootstrap(straight)

    resumed = load_config(_bootstrap_config(tmp_path, user_files, sft_model, "resumed"))
    seen = []

    def kill_in_round_two(chunk):
        seen.append(chunk)
        if len(seen) == 6:  # rounds have 4 chunks of 2 questions: this is round 2, chunk 1
            raise Kill

    with pytest.raises(Kill):
        run_bootstrap(resumed, after_chunk=kill_in_round_two)
    regenerated = []
    run_bootstrap(resumed, after_chunk=regenerated.append, resume=True)
    assert regenerated == [2, 3]  # round 1 and round 2's first chunks were not generated again

    for r in (1, 2):
        for name in ("generations.jsonl", "pairs.jsonl"):
            assert (tmp_path / "resumed" / f"round-{r}" / name).read_text() == (
                tmp_path / "straight" / f"round-{r}" / name
            ).read_text()
    a = load_file(tmp_path / "straight" / "round-2" / "train" / "model" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "round-2" / "train" / "model" / "model.safetensors")
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=0, rtol=0, msg=name)


def _error(capsys, argv) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    return capsys.readouterr().err.strip()


def test_two_empty_rounds_stop_with_a_clear_message(tmp_path, user_files, sft_model, capsys):
    config = _bootstrap_config(
        tmp_path, user_files, sft_model, "empty", verifier="tests.e2e.test_bootstrap:always_right", rounds=3
    )
    message = _error(capsys, ["bootstrap", str(config)])
    assert "bootstrap stopped after round 2: 2 rounds in a row built no (correct, incorrect) pair" in message
    assert not (tmp_path / "empty" / "round-3").exists()


def test_bad_inputs(tmp_path, user_files, sft_model, capsys):
    config = _bootstrap_config(tmp_path, user_files, sft_model, "bad")
    assert "cannot import 'nope.module:fn'" in _error(
        capsys, ["bootstrap", str(config), "--set", "bootstrap.verifier=nope.module:fn"]
    )
    assert "bootstrap.samples = 1" in _error(capsys, ["bootstrap", str(config), "--set", "bootstrap.samples=1"])
    chat = tmp_path / "chat.jsonl"
    chat.write_text(
        json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}) + "\n"
    )
    message = _error(capsys, ["bootstrap", str(config), "--set", "train.objective={name: mixce, ratio: 0.5}"])
    assert "got 'mixce'" in message and "rank, dpo" in message and "ce on its verified correct samples" in message
    assert "no record has a gold answer" in _error(
        capsys, ["bootstrap", str(config), "--set", f"data.datasets=[{{path: {chat}}}]"]
    )
