"""train.deepspeed: seed 001's ZeRO-3 JSON validates and its "auto" values resolve to the
config's numbers; bad DeepSpeed configs stop `lmforge config show` with one line and exit
code 2. None of this needs the deepspeed package."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path

import pytest

from lmforge.cli import main
from lmforge.config import load_config
from lmforge.errors import LmforgeError
from lmforge.train import deepspeed as ds_module
from lmforge.train.deepspeed import (
    deepspeed_training_arguments,
    load_deepspeed_config,
    require_deepspeed,
    resolve_deepspeed_config,
)
from lmforge.train.steps import estimate_total_steps

REPO = Path(__file__).resolve().parents[2]
PRESET = REPO / "presets" / "oasst-sft.yaml"
SEED_JSON = "examples/deepspeed/zero3_config_sft.json"  # seed 001's zero3_config_sft.json, verbatim
DATA = "examples/data/arithmetic-chat.jsonl"


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # the preset and the JSON name files relative to the repository
    monkeypatch.delenv("WORLD_SIZE", raising=False)


def seed_json() -> dict:
    return json.loads((REPO / SEED_JSON).read_text(encoding="utf-8"))


def oasst(sections: list[str], *overrides: str):
    return load_config(PRESET, sections, [f"train.deepspeed={SEED_JSON}", *overrides])


def write_json(path: Path, content) -> str:
    path.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    return str(path)


def show(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["config", "show", str(PRESET), *args])
    out, err = capsys.readouterr()
    return code, out, err


def deepspeed_block(out: str) -> tuple[list[str], dict]:
    """The `# deepspeed` comment lines and the JSON that `config show` prints after the config."""
    start = out.index("# deepspeed (")
    comments, _, body = out[start:].partition("\n{")
    return comments.splitlines(), json.loads("{" + body)


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    assert err.startswith("lmforge: error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err


# --------------------------------------------------------------------------- seed 001's JSON


def test_seed_json_is_the_cards_zero3_config_verbatim():
    card = next((REPO.parent / "shared" / "seeds").glob("001_*.txt"), None)
    if card is None:
        pytest.skip("the seed cards are not beside this checkout")
    block = card.read_text(encoding="utf-8").split("zero config:", 1)[1].strip()
    assert (REPO / SEED_JSON).read_text(encoding="utf-8").strip() == block


def test_seed_json_validates_unchanged():
    assert load_deepspeed_config(SEED_JSON) == seed_json()
    assert load_deepspeed_config(seed_json()) == seed_json()  # the same, inline


def test_seed_json_resolves_to_the_redpajama_config_on_8_processes():
    config = oasst(["defaults", "redpajama-3b"], f"data.datasets=[{{path: {DATA}}}]")
    train, world = config.train, 8
    total = estimate_total_steps(config)
    resolved = resolve_deepspeed_config(load_deepspeed_config(SEED_JSON), config, world, total)

    assert resolved["train_micro_batch_size_per_gpu"] == train.micro_batch_size == 1
    assert resolved["gradient_accumulation_steps"] == train.global_batch_size // (train.micro_batch_size * world) == 4
    assert resolved["train_batch_size"] == train.global_batch_size == 32
    assert resolved["gradient_clipping"] == train.max_grad_norm
    assert resolved["fp16"]["enabled"] is True and resolved["bf16"]["enabled"] is False  # precision fp16
    assert resolved["optimizer"]["params"] == {
        "lr": train.optimizer.lr,
        "betas": list(train.optimizer.betas),
        "eps": train.optimizer.eps,
        "weight_decay": train.optimizer.weight_decay,
    }
    assert resolved["scheduler"]["params"] == {
        "warmup_min_lr": 0,
        "warmup_max_lr": train.optimizer.lr,
        "warmup_num_steps": train.schedule.warmup_steps,
        "warmup_type": "linear",
        "total_num_steps": total,
    }
    # the 3B model is not on this disk: its hidden size, hence the bucket sizes, come at train time
    for key in ("reduce_bucket_size", "stage3_prefetch_bucket_size", "stage3_param_persistence_threshold"):
        assert resolved["zero_optimization"][key] == "auto"
    # every value the JSON sets itself passes through untouched, in the file's order
    original = seed_json()
    for path, value in ds_module._leaves(original):
        if value != "auto":
            assert ds_module._get(resolved, path) == value, path
    assert list(resolved["zero_optimization"]) == list(original["zero_optimization"])


def test_bucket_sizes_follow_the_hidden_size_of_a_fresh_model():
    config = oasst(["defaults", "tiny"])
    hidden = config.model.size.hidden_size
    zero = resolve_deepspeed_config(load_deepspeed_config(SEED_JSON), config, 2)["zero_optimization"]
    assert zero["reduce_bucket_size"] == hidden * hidden
    assert zero["stage3_prefetch_bucket_size"] == int(0.9 * hidden * hidden)
    assert zero["stage3_param_persistence_threshold"] == 10 * hidden


def test_bucket_sizes_follow_a_local_models_config_json(tmp_path):
    from transformers import GPT2Config

    GPT2Config(n_embd=48, n_layer=1, n_head=4).save_pretrained(tmp_path)  # hidden_size is n_embd for GPT-2
    config = oasst(["defaults", "redpajama-3b"], f"model.name_or_path={tmp_path}")
    zero = resolve_deepspeed_config(load_deepspeed_config(SEED_JSON), config, 8)["zero_optimization"]
    assert zero["reduce_bucket_size"] == 48 * 48


def test_a_warmup_ratio_waits_for_the_total_steps():
    config = oasst(["defaults", "tiny"], "train.schedule={name: linear, warmup_ratio: 0.3}")
    ds = load_deepspeed_config(SEED_JSON)
    assert resolve_deepspeed_config(ds, config, 1)["scheduler"]["params"]["warmup_num_steps"] == "auto"
    params = resolve_deepspeed_config(ds, config, 1, total_steps=25)["scheduler"]["params"]
    assert params["warmup_num_steps"] == math.ceil(25 * 0.3) and params["total_num_steps"] == 25


def test_explicit_values_that_disagree_with_the_config_are_named_by_lmforge_key():
    ds = {**seed_json(), "train_micro_batch_size_per_gpu": 4, "gradient_clipping": 0.5}
    with pytest.raises(LmforgeError) as caught:
        resolve_deepspeed_config(ds, oasst(["defaults", "tiny"]), 2)
    message = str(caught.value)
    assert "train_micro_batch_size_per_gpu = 4 but train.micro_batch_size gives 8" in message
    assert "gradient_clipping = 0.5 but train.max_grad_norm gives 2.0" in message
    assert "\n" not in message


def test_the_fill_values_are_the_ones_lmforges_training_arguments_pass(tmp_path):
    """resolve_deepspeed_config stands in for the TrainingArguments of the run (whose world
    size comes from the launched processes): it must read the same numbers."""
    from lmforge.train.pipeline import training_arguments

    config = oasst(
        ["defaults", "tiny"],
        "train.precision=bf16",
        "train.optimizer.betas=[0.8, 0.95]",
        "train.optimizer.weight_decay=0.1",
    )
    ds = load_deepspeed_config(SEED_JSON)
    extra = {k: v for k, v in deepspeed_training_arguments(ds, config).items() if k != "deepspeed"}
    # the pipeline's own arguments plus deepspeed_training_arguments (deepspeed itself left
    # out: TrainingArguments refuses it without the package)
    real = dataclasses.replace(training_arguments(config, tmp_path, 2, False), **extra)
    stand_in = ds_module._trainer_args(config, world_size=1)
    for name in (
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "max_grad_norm",
        "learning_rate",
        "fp16",
        "bf16",
        "adam_beta1",
        "adam_beta2",
        "adam_epsilon",
        "weight_decay",
        "warmup_steps",
    ):
        assert getattr(stand_in, name) == getattr(real, name), name
    assert stand_in.get_warmup_steps(100) == real.get_warmup_steps(100)


def test_resolving_leaves_the_loaded_config_and_the_process_alone():
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

    ds = load_deepspeed_config(SEED_JSON)
    before = copy.deepcopy(ds)
    resolve_deepspeed_config(ds, oasst(["defaults", "tiny"]), 2, 10)
    assert ds == before
    assert not is_deepspeed_zero3_enabled()  # would make from_pretrained partition the weights


# --------------------------------------------------------------------------- config show


def test_config_show_prints_the_resolved_values(capsys):
    code, out, _ = show(
        capsys,
        "defaults",
        "redpajama-3b",
        "--set",
        f"train.deepspeed={SEED_JSON}",
        "--set",
        f"data.datasets=[{{path: {DATA}}}]",
        "--processes",
        "8",
    )
    assert code == 0
    assert f"deepspeed: {SEED_JSON}" in out  # the config itself comes first
    comments, printed = deepspeed_block(out)
    config = oasst(["defaults", "redpajama-3b"], f"data.datasets=[{{path: {DATA}}}]")
    total = estimate_total_steps(config)
    assert comments[0] == f"# deepspeed (resolved for 8 processes): {SEED_JSON}"
    assert comments[1] == f"# total optimizer steps: {total} (estimated from data.datasets)"
    assert "zero_optimization.reduce_bucket_size" in comments[2]  # still "auto", and said so
    assert printed == resolve_deepspeed_config(load_deepspeed_config(SEED_JSON), config, 8, total)
    assert (printed["train_batch_size"], printed["gradient_accumulation_steps"]) == (32, 4)
    assert printed["scheduler"]["params"]["total_num_steps"] == total


def test_config_show_takes_the_process_count_from_world_size(capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    code, out, _ = show(capsys, "defaults", "redpajama-3b", "--set", f"train.deepspeed={SEED_JSON}")
    comments, printed = deepspeed_block(out)
    assert code == 0 and comments[0].startswith("# deepspeed (resolved for 4 processes)")
    assert printed["gradient_accumulation_steps"] == 32 // (1 * 4)
    assert comments[1] == "# total optimizer steps unknown: no data.datasets"
    assert printed["scheduler"]["params"]["total_num_steps"] == "auto"


def test_config_show_refuses_zero_processes(capsys):
    code, _, err = show(capsys, "defaults", "tiny", "--set", f"train.deepspeed={SEED_JSON}", "--processes", "0")
    assert_one_line_error(code, err, "--processes 0")


def test_config_show_without_deepspeed_prints_no_block(capsys):
    code, out, _ = show(capsys, "defaults", "tiny")
    assert code == 0 and "# deepspeed" not in out


# --------------------------------------------------------------------------- bad inputs


def test_missing_file(capsys):
    code, _, err = show(capsys, "defaults", "tiny", "--set", "train.deepspeed=configs/zero3.json")
    assert_one_line_error(code, err, "train.deepspeed", "configs/zero3.json", "not found")


def test_invalid_json_names_the_line(capsys, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text(
        '{\n  "fp16": {"enabled": "auto"},\n  "bf16": {"enabled": "auto"}\n  "train_batch_size": 8\n}\n',
        encoding="utf-8",
    )
    code, _, err = show(capsys, "defaults", "tiny", "--set", f"train.deepspeed={path}")
    assert_one_line_error(code, err, f"{path}:4:3:", "train.deepspeed", "invalid JSON", "delimiter")


def test_unknown_key_suggests_the_known_one(capsys, tmp_path):
    content = seed_json()
    content["zero_optimisation"] = content.pop("zero_optimization")
    path = write_json(tmp_path / "typo.json", content)
    code, _, err = show(capsys, "defaults", "tiny", "--set", f"train.deepspeed={path}")
    assert_one_line_error(code, err, "zero_optimisation", "did you mean 'zero_optimization'?")


def test_unknown_key_inside_zero_optimization(capsys):
    code, _, err = show(
        capsys, "defaults", "tiny", "--set", "train.deepspeed={zero_optimization: {stage: 3, overlap_com: true}}"
    )
    assert_one_line_error(code, err, "train.deepspeed.zero_optimization.overlap_com", "did you mean 'overlap_comm'?")


def test_zero_stage_5_names_file_line_and_key(capsys, tmp_path):
    content = seed_json()
    content["zero_optimization"]["stage"] = 5
    path = write_json(tmp_path / "stage5.json", content)
    line = next(n for n, text in enumerate(Path(path).read_text().splitlines(), 1) if '"stage": 5' in text)
    code, _, err = show(capsys, "defaults", "tiny", "--set", f"train.deepspeed={path}")
    assert_one_line_error(code, err, f"{path}:{line}:", "zero_optimization.stage = 5", "0, 1, 2 or 3")


@pytest.mark.parametrize(
    "inline, fragments",
    [
        ("{zero_optimization: {stage: 5}}", ["train.deepspeed.zero_optimization.stage = 5"]),
        ("{steps_per_print: auto}", ['steps_per_print = "auto"', "give a value"]),
        ("{zero_optimization: {stage: 2, stage3_prefetch_bucket_size: auto}}", ["only under ZeRO stage 3"]),
        ("{gradient_clipping: '1.0'}", ['gradient_clipping = "1.0"', 'must be a number or "auto"']),
        ("{zero_optimization: {stage: 3, sub_group_size: 1e9}}", ['sub_group_size = "1e9"', "must be a number"]),
        ("{fp16: {enabled: true}, bf16: {enabled: true}}", ["fp16.enabled and bf16.enabled are both true"]),
        ("{optimizer: {type: AdamW, params: {betas: [0.9]}}}", ["optimizer.params.betas", "two numbers"]),
        ("{fp16: true}", ["train.deepspeed.fp16 = true", "JSON object"]),
    ],
)
def test_bad_inline_values(capsys, inline, fragments):
    code, _, err = show(capsys, "defaults", "tiny", "--set", f"train.deepspeed={inline}")
    assert_one_line_error(code, err, *fragments)


def test_fsdp_and_deepspeed_both_set(capsys):
    code, _, err = show(capsys, "defaults", "tiny", "--set", f"train.deepspeed={SEED_JSON}", "--set", "train.fsdp={}")
    assert_one_line_error(code, err, "train.fsdp and train.deepspeed are both set")


def test_deepspeed_not_installed(monkeypatch):
    monkeypatch.setattr(ds_module, "is_deepspeed_available", lambda: False)
    with pytest.raises(
        LmforgeError,
        match=r"^train\.deepspeed: DeepSpeed is not installed; "
        r"pip install 'lmforge\[deepspeed\]'$",
    ):
        require_deepspeed()
    monkeypatch.setattr(ds_module, "is_deepspeed_available", lambda: True)
    require_deepspeed()


def test_config_show_needs_no_deepspeed(capsys, monkeypatch):
    monkeypatch.setattr(ds_module, "is_deepspeed_available", lambda: False)  # planning on a laptop
    assert show(capsys, "defaults", "tiny", "--set", f"train.deepspeed={SEED_JSON}")[0] == 0


# --------------------------------------------------------------------------- blocks that replace lmforge's


def test_an_optimizer_block_refuses_lmforges_other_optimizers(capsys):
    code, _, err = show(
        capsys,
        "defaults",
        "tiny",
        "--set",
        f"train.deepspeed={SEED_JSON}",
        "--set",
        "train.optimizer={name: lilith, lr: 1.0e-3}",
    )
    assert_one_line_error(code, err, "'optimizer' block", "lilith", f"remove the 'optimizer' block from {SEED_JSON}")


def test_without_the_optimizer_block_lilith_is_accepted():
    content = seed_json()
    del content["optimizer"]
    config = oasst(["defaults", "tiny"], "train.optimizer={name: lilith, lr: 1.0e-3}")
    resolved = resolve_deepspeed_config(load_deepspeed_config(content), config, 2, 12)
    assert "optimizer" not in resolved
    # the scheduler block still follows lmforge's peak lr
    assert resolved["scheduler"]["params"]["warmup_max_lr"] == config.train.optimizer.lr


def test_an_optimizer_block_of_another_kind_is_refused():
    content = {**seed_json(), "optimizer": {"type": "Lamb", "params": {"lr": "auto"}}}
    with pytest.raises(LmforgeError, match="is Lamb, which replaces train.optimizer adamw"):
        deepspeed_training_arguments(content, oasst(["defaults", "tiny"]))


@pytest.mark.parametrize(
    "schedule, fragment",
    [
        ("{name: wsd}", "DeepSpeed has no wsd schedule"),
        ("{name: sigmoid}", "DeepSpeed has no sigmoid schedule"),
        ("{name: cosine, warmup_steps: 5}", "which DeepSpeed writes as WarmupCosineLR"),
    ],
)
def test_a_scheduler_block_must_draw_lmforges_schedule(capsys, schedule, fragment):
    code, _, err = show(
        capsys, "defaults", "tiny", "--set", f"train.deepspeed={SEED_JSON}", "--set", f"train.schedule={schedule}"
    )
    assert_one_line_error(code, err, fragment, "remove the 'scheduler' block")


def test_a_scheduler_block_must_warm_up_linearly():
    content = seed_json()
    del content["scheduler"]["params"]["warmup_type"]  # DeepSpeed's default is log
    with pytest.raises(LmforgeError, match="warmup_type log"):
        resolve_deepspeed_config(content, oasst(["defaults", "tiny"]), 2)


def test_training_arguments_carry_the_values_deepspeed_fills_from():
    config = oasst(["defaults", "tiny"], "train.optimizer.betas=[0.8, 0.95]", "train.optimizer.eps=1.0e-6")
    ds = load_deepspeed_config(SEED_JSON)
    kwargs = deepspeed_training_arguments(ds, config)
    assert kwargs["deepspeed"] == ds  # "auto" kept: the Trainer fills it
    assert (kwargs["adam_beta1"], kwargs["adam_beta2"], kwargs["adam_epsilon"]) == (0.8, 0.95, 1e-6)
    assert kwargs["warmup_steps"] == config.train.schedule.warmup_steps
    assert kwargs["weight_decay"] == config.train.optimizer.weight_decay


def test_train_asking_for_deepspeed_without_it_fails_before_any_work(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(ds_module, "is_deepspeed_available", lambda: False)
    code = main(
        [
            "train",
            str(PRESET),
            "defaults",
            "tiny",
            "--set",
            f"run.output_dir={tmp_path / 'run'}",
            "--set",
            f"train.deepspeed={SEED_JSON}",
        ]
    )
    assert_one_line_error(code, capsys.readouterr().err, "DeepSpeed is not installed; pip install 'lmforge[deepspeed]'")
    assert not (tmp_path / "run").exists()
