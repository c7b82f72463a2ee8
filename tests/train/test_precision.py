"""Mixed precision: bf16 autocast trains on CPU (the Trainer is told there is no
accelerator) and its losses track fp32; every objective runs under it; fp16 needs a GPU;
one process that sees several GPUs is refused."""

from __future__ import annotations

import json

import pytest
import torch

from lmforge.cli import main
from lmforge.errors import LmforgeError
from lmforge.train.distributed import check_devices
from tests.e2e.conftest import write_config
from tests.train.conftest import tiny_model
from tests.train.objective_batches import OBJECTIVE_PARAMS, objective_and_count, objective_batch

# bf16 keeps 8 bits of mantissa: logits differ from fp32 by ~1e-2 relative, so losses of
# a few nats agree to a few hundredths. Stated tolerance for every logged step:
LOSS_TOLERANCE = 0.05


def _logged(run_dir, key):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [row[key] for row in rows if key in row]


def test_bf16_on_cpu_tracks_fp32(tmp_path, user_files):
    losses = {}
    for precision in ("fp32", "bf16"):
        config = write_config(
            tmp_path / f"{precision}.yaml",
            user_files,
            tmp_path / precision,
            max_steps=8,
            precision=precision,
            eval_every=4,
        )
        assert main(["train", str(config)]) == 0
        losses[precision] = _logged(tmp_path / precision, "loss") + _logged(tmp_path / precision, "eval_loss")
    assert len(losses["bf16"]) == len(losses["fp32"]) == 8 + 3  # evaluations at steps 4, 8 and the final one
    for fp32, bf16 in zip(losses["fp32"], losses["bf16"]):
        assert bf16 == pytest.approx(fp32, abs=LOSS_TOLERANCE)
    assert losses["bf16"][7] < losses["bf16"][0]  # it trains
    assert losses["bf16"] != losses["fp32"]  # and autocast really ran


@pytest.mark.parametrize("name", list(OBJECTIVE_PARAMS))
def test_every_objective_runs_in_bf16(name):
    model = tiny_model()
    model.train()
    batch = objective_batch(name)
    objective, count = objective_and_count(name, batch, neftune_alpha=5.0)
    torch.manual_seed(0)  # the same NEFTune noise for both
    fp32_loss, _ = objective(model, batch, count)
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = objective(model, batch, count)
    loss.backward()
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(fp32_loss.item(), abs=LOSS_TOLERANCE)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_remask_trains_end_to_end_in_bf16(tmp_path, user_files):
    config = write_config(
        tmp_path / "c.yaml",
        user_files,
        tmp_path / "run",
        max_steps=2,
        precision="bf16",
        objective={"name": "remask_cot"},
        neftune_alpha=10.0,
    )
    assert main(["train", str(config)]) == 0
    assert all(torch.isfinite(torch.tensor(_logged(tmp_path / "run", "loss"))))


def test_fp16_on_cpu_is_a_one_line_error(tmp_path, user_files, capsys):
    config = write_config(tmp_path / "c.yaml", user_files, tmp_path / "run", precision="fp16")
    assert main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train.precision: fp16 needs a GPU" in err
    assert not (tmp_path / "run").exists()


def test_one_process_seeing_several_gpus_is_refused(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    with pytest.raises(
        LmforgeError, match=r"sees 4 GPUs; launch one process per GPU with `torchrun --nproc_per_node 4"
    ):
        check_devices("bf16")
    monkeypatch.setenv("WORLD_SIZE", "4")  # under torchrun each process takes its own GPU
    check_devices("bf16")
