"""`lmforge estimate`: the memory terms by hand, the activation formula against what autograd
really keeps, the whole estimate against the measured peak of real CPU training steps,
and the command line."""

from __future__ import annotations

import contextlib
import json

import pytest
import torch
from torch.profiler import ProfilerActivity, profile
from transformers import AutoConfig, AutoModelForCausalLM

from lmforge.cli import main
from lmforge.estimate import parse_memory
from lmforge.estimate.activations import FAMILIES, Dims, activation_bytes_per_token, logits_bytes_per_value
from lmforge.estimate.memory import Setup, estimate_engine
from lmforge.estimate.shape import ModelShape, measure_model
from lmforge.objectives import ce_objective, remask_objective
from lmforge.optim.optimizers import build_optimizer

GB = 10**9


def shape_of(
    parameters: int,
    trainable: int | None = None,
    hidden: int = 10,
    layers: int = 2,
    layer_parameters: int = 0,
    trainable_shapes=(),
) -> ModelShape:
    """A hand-made shape: only the fields a test reads matter."""
    return ModelShape(
        source="test",
        model_type="llama",
        family="llama",
        dims=Dims(hidden, hidden, 4 * hidden, 2, layers),
        vocab=100,
        max_positions=None,
        parallel_residual=False,
        parameters=parameters,
        trainable=parameters if trainable is None else trainable,
        linear_parameters=parameters,
        layer_parameters=layer_parameters,
        largest_module=0,
        small_parameters=0,
        trainable_shapes=tuple(trainable_shapes),
    )


# --------------------------------------------------------------------------- terms by hand


def test_adamw_state_is_two_values_per_trainable_parameter_in_the_weight_dtype():
    # 1000 parameters, 600 trainable: fp32 AdamW keeps exp_avg and exp_avg_sq,
    # 2 x 600 x 4 bytes = 4800; gradients 600 x 4 = 2400; weights 1000 x 4 = 4000
    e = estimate_engine(shape_of(1000, trainable=600), Setup(1, 8, "float32", "fp32", "adamw"), "ddp", GB)
    assert (e.weights, e.gradients, e.optimizer) == (4000, 2400, 4800)
    # two processes: DDP's reducer keeps a second copy of the gradients in its buckets
    e = estimate_engine(shape_of(1000, trainable=600), Setup(1, 8, "float32", "fp32", "adamw", gpus=2), "ddp", GB)
    assert e.gradients == 4800


def test_lilith_keeps_three_states_and_a_fourth_with_ema():
    setup = Setup(1, 8, "bfloat16", "bf16", "lilith")
    assert estimate_engine(shape_of(1000), setup, "ddp", GB).optimizer == 3 * 1000 * 2  # m1, m2, v in bf16
    with_ema = Setup(1, 8, "bfloat16", "bf16", "lilith", lilith_ema=True)
    assert estimate_engine(shape_of(1000), with_ema, "ddp", GB).optimizer == 4 * 1000 * 2


def test_adalite_state_is_factored_except_under_zero():
    # a [30, 20] matrix keeps row and column second moments (30 + 20), the row/column/scalar
    # factors of the first moment (30 + 20 + 1); a [20] vector keeps m and v (2 x 20)
    shape = shape_of(620, trainable_shapes=[(30, 20), (20,)])
    ddp = estimate_engine(shape, Setup(1, 8, "float32", "fp32", "adalite"), "ddp", GB)
    assert ddp.optimizer == (2 * (30 + 20) + 1 + 2 * 20) * 4
    # ZeRO hands the optimizer flat 1-D fp32 partitions: 2 values per parameter, / 2 GPUs
    zero = estimate_engine(shape, Setup(1, 8, "float32", "fp32", "adalite", gpus=2), "zero2", GB)
    assert zero.optimizer == 2 * 620 * 4 / 2


def test_zero3_divides_weights_gradients_and_optimizer_by_the_world_size():
    # 8e9 parameters, fp16 mixed precision, 8 GPUs, hidden 10 (buckets of 100 values):
    # weights 2 x 8e9 / 8 = 2e9 (+ gathered 0.9 x 100 values x 2 bytes = 180),
    # gradients 2 x 8e9 / 8 + 100 x 2, optimizer (4 master + 2 x 4 Adam) x 8e9 / 8 = 12e9
    e = estimate_engine(shape_of(8 * 10**9), Setup(1, 8, "float32", "fp16", "adamw", gpus=8), "zero3", GB)
    assert (e.weights, e.gradients, e.optimizer) == (2 * 10**9 + 180, 2 * 10**9 + 200, 12 * 10**9)
    # ZeRO-2 keeps the whole 16-bit model on every GPU
    e2 = estimate_engine(shape_of(8 * 10**9), Setup(1, 8, "float32", "fp16", "adamw", gpus=8), "zero2", GB)
    assert e2.weights == 16 * 10**9 and e2.optimizer == e.optimizer


def test_a_deepspeed_optimizer_block_replaces_the_configs_optimizer_under_zero_only():
    # Lilith (3 states) in the config, AdamW in the DeepSpeed config: ZeRO-2 on 4 GPUs keeps
    # (4 master + 2 x 4) x 1000 / 4 = 3000 bytes; DDP still runs Lilith: 3 x 1000 x 4
    setup = Setup(1, 8, "float32", "bf16", "lilith", gpus=4, zero_optimizer="adamw")
    assert estimate_engine(shape_of(1000), setup, "zero2", GB).optimizer == 3000
    assert estimate_engine(shape_of(1000), setup, "ddp", GB).optimizer == 12000


def test_fsdp_shards_in_the_weight_dtype_and_gathers_root_plus_two_layers():
    # 1000 parameters: 2 layers of 300, root 400; 4 GPUs, fp32, no mixed precision
    shape = shape_of(1000, layers=2, layer_parameters=300)
    e = estimate_engine(shape, Setup(1, 8, "float32", "fp32", "adamw", gpus=4), "fsdp", GB)
    assert e.weights == 1000 * 4 / 4 + (400 + 2 * 300) * 4
    assert e.gradients == 1000 * 4 / 4 + (400 + 300) * 4
    assert e.optimizer == 2 * 1000 * 4 / 4


def test_llama_activation_formula_by_hand():
    # h = 8, kv = 4, i = 16, 2 heads, 3 layers, fp32: per layer (8h + 2kv + 4i) values
    # + 2 x 1/rms + 2 logsumexp = 64 + 8 + 64 + 4 = 140 values = 560 bytes; outside the layers
    # the input id (8 bytes), the final norm (input, x/rms, output: 3h + 1 values = 100 bytes)
    dims = Dims(hidden=8, kv=4, intermediate=16, heads=2, layers=3)
    assert activation_bytes_per_token("llama", dims, "fp32", checkpointing=False) == 3 * 560 + 8 + 100
    # checkpointing: each layer's input (h x 4 bytes) plus one layer recomputed
    assert activation_bytes_per_token("llama", dims, "fp32", checkpointing=True) == 3 * 32 + 560 + 8 + 100


def test_logits_bytes_per_value():
    # CE: logits + label-position copy + fp32 log-softmax; 16-bit logits add an fp32 upcast
    assert logits_bytes_per_value("fp32", passes=1) == 4 + 4 + 4
    assert logits_bytes_per_value("half", passes=1) == 2 + 2 + 4 + 4
    # ReMask: two passes' logits and copies, 7 fp32 [N, V] tensors inside the symmetric KL
    assert logits_bytes_per_value("fp32", passes=2) == 4 * 4 + 7 * 4


@pytest.mark.parametrize(
    "text, expected",
    [
        ("80GB", 80 * 10**9),
        ("24GiB", 24 * 2**30),
        ("40000MB", 4 * 10**10),
        ("141", 141 * 10**9),
        ("0.5 tb", 5 * 10**11),
    ],
)
def test_parse_memory(text, expected):
    assert parse_memory(text) == expected


# --------------------------------------------------------------------------- formula vs autograd

H, KV_HEADS, INTER, HEADS = 64, 2, 160, 4


def _tiny_config(architecture: str, layers: int, **extra):
    size = dict(
        hidden_size=H,
        num_hidden_layers=layers,
        num_attention_heads=HEADS,
        intermediate_size=INTER,
        vocab_size=100,
        max_position_embeddings=64,
    )
    if architecture != "gpt_neox":
        size["num_key_value_heads"] = KV_HEADS
    return AutoConfig.for_model(architecture, **size, **extra)


def _saved_bytes(model, ids: torch.Tensor, autocast: bool) -> int:
    """Bytes of the distinct storages autograd keeps for backward, parameters excluded."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept: dict[int, torch.Tensor] = {}  # the tensors themselves, so no storage is freed and reused meanwhile

    def pack(tensor):
        if tensor.untyped_storage().data_ptr() not in parameters:
            kept[tensor.untyped_storage().data_ptr()] = tensor
        return tensor

    cast = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), cast:
        model(input_ids=ids, use_cache=False)
    return sum(t.untyped_storage().nbytes() for t in kept.values())


@pytest.mark.parametrize(
    "architecture, extra",
    [
        ("llama", {}),
        ("qwen2", {}),
        ("stablelm", {}),
        ("gpt_neox", {"use_parallel_residual": False}),
        ("gpt_neox", {"use_parallel_residual": True}),
    ],
)
@pytest.mark.parametrize("regime", ["fp32", "autocast", "half"])
def test_activation_formula_matches_what_autograd_keeps(architecture, extra, regime):
    """The formula against the storages autograd saves in a real forward (2 layers, 2 x 16
    tokens). Under autocast the 16-bit weight copies are saved too: the estimate counts them
    with the weights (2 bytes per nn.Linear weight). Tolerance 1.5%: the rotary cos/sin
    tables ([1, T, d], not per example) and the dtype of LayerNorm's statistics (bf16 on
    CPU, fp32 on GPU) are left out of the formula."""
    torch.manual_seed(0)
    config = _tiny_config(architecture, layers=2, **extra)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16 if regime == "half" else torch.float32)
    model.train()
    batch, tokens = 2, 16
    saved = _saved_bytes(model, torch.randint(0, 100, (batch, tokens)), autocast=regime == "autocast")
    if regime == "autocast":
        saved -= 2 * sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    kv = H if architecture == "gpt_neox" else KV_HEADS * H // HEADS
    per_token = activation_bytes_per_token(
        FAMILIES[architecture], Dims(H, kv, INTER, HEADS, 2), regime, False, extra.get("use_parallel_residual", False)
    )
    assert saved / (batch * tokens) == pytest.approx(per_token, rel=0.015)


# --------------------------------------------------------------------------- estimate vs measured


def measured_peak_bytes(model, batch: dict, objective, optimizer, autocast: bool) -> int:
    """Peak bytes allocated by torch during one steady-state training step on CPU: the step
    the Trainer runs (forward and loss under autocast, backward, gradient clipping,
    optimizer.step, zero_grad(set_to_none=True)) after a first step has allocated the
    optimizer state.

    The profiler's memory events ("[memory]", with profile_memory=True) carry every
    allocation (+bytes) and free (-bytes) of the CPU allocator in order; the running sum
    from the start of the step, at its maximum, plus what was live when the step began
    (weights and optimizer state; the gradients were freed by zero_grad) is the peak.
    """

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss, _ = objective(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    live = sum(p.numel() * p.element_size() for p in model.parameters())
    live += sum(
        t.numel() * t.element_size() for state in optimizer.state.values() for t in state.values() if torch.is_tensor(t)
    )
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"), key=lambda e: e.start_ns()
    )
    running = peak = 0
    for event in events:
        running += event.nbytes()
        peak = max(peak, running)
    return live + peak


CASES = {
    # activations dominate: hidden 256, 4 layers, vocab 2000, 4 x 256 tokens, fp32
    "activations": dict(
        hidden=256, layers=4, vocab=2000, seq=256, micro_batch=4, precision="fp32", checkpointing=False, objective="ce"
    ),
    # logits dominate: vocab 32000 on a 2-layer hidden-64 model, bf16 autocast over fp32 weights
    "logits": dict(
        hidden=64, layers=2, vocab=32000, seq=128, micro_batch=2, precision="bf16", checkpointing=False, objective="ce"
    ),
    # gradient checkpointing: 6 layers keep only their inputs, one layer is recomputed at a time
    "checkpointing": dict(
        hidden=128, layers=6, vocab=1000, seq=256, micro_batch=4, precision="fp32", checkpointing=True, objective="ce"
    ),
    # gradients dominate: wide layers, short sequences; the peak is the backward's end
    "gradients": dict(
        hidden=512, layers=4, vocab=2000, seq=64, micro_batch=4, precision="fp32", checkpointing=False, objective="ce"
    ),
    # ReMask, fused: two passes stacked on the batch, and the symmetric KL over the vocabulary
    "remask": dict(
        hidden=64,
        layers=2,
        vocab=8000,
        seq=128,
        micro_batch=2,
        precision="fp32",
        checkpointing=False,
        objective="remask",
    ),
}
TOLERANCE = 0.20  # the estimate must be within 20% of the measured peak


@pytest.mark.parametrize("case", list(CASES))
def test_estimate_is_within_20_percent_of_measured_peak(case):
    c = CASES[case]
    config = AutoConfig.for_model(
        "llama",
        hidden_size=c["hidden"],
        num_hidden_layers=c["layers"],
        num_attention_heads=4,
        intermediate_size=(8 * c["hidden"]) // 3,
        vocab_size=c["vocab"],
        max_position_embeddings=c["seq"],
    )
    shape = measure_model(config, "test", "float32", freeze=False, added_rows=0, tokens_added=False)
    passes = 2 if c["objective"] == "remask" else 1
    setup = Setup(
        c["micro_batch"],
        c["seq"],
        "float32",
        c["precision"],
        "adamw",
        passes=passes,
        gradient_checkpointing=c["checkpointing"],
    )
    estimate = estimate_engine(shape, setup, "ddp", 80 * GB).total

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.train()
    if c["checkpointing"]:
        model.activation_checkpointing_enable()  # what the Trainer calls for activation_checkpointing=True
    assert sum(p.numel() for p in model.parameters()) == shape.parameters
    ids = torch.randint(0, c["vocab"], (c["micro_batch"], c["seq"]))
    # every position a label, as the estimate assumes; the masked pass masks nothing (same memory)
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "labels": ids.clone(),
        "masked_input_ids": ids.clone(),
    }
    objective = remask_objective(0.1, fused=True) if passes == 2 else ce_objective()
    optimizer = build_optimizer("adamw", [{"params": list(model.parameters())}], lr=1e-4)
    measured = measured_peak_bytes(model, batch, objective, optimizer, autocast=c["precision"] == "bf16")
    print(f"{case}: estimate {estimate:,} bytes, measured {measured:,} bytes, ratio {estimate / measured:.3f}")
    assert abs(estimate - measured) <= TOLERANCE * measured, (estimate, measured)


# --------------------------------------------------------------------------- exact parameter counts


@pytest.mark.parametrize(
    "overrides", [[], ["model.freeze_embeddings=true"], ["model.freeze_embeddings=true", "data.prompt_format=qa"]]
)
def test_parameter_counts_match_the_model_training_builds(overrides):
    """The meta-device count against the model train/pipeline.py builds (special tokens
    added, embeddings resized, frozen as training freezes them). With the remask format
    lmforge adds its tags, so frozen embeddings keep their gradients; the qa format adds
    none (this objective needs no mask token), so they really freeze."""
    from lmforge.config import load_config
    from lmforge.estimate import estimate_config
    from lmforge.models.freezing import freeze_embeddings
    from lmforge.train.pipeline import prepare_model_and_tokenizer

    config = load_config("presets/memphis-cot.yaml", ["defaults", "tiny-sft"], overrides)
    shape = estimate_config(config).shape
    prepared = prepare_model_and_tokenizer(config, seed=0)
    model = prepared.model
    if config.model.freeze_embeddings:
        freeze_embeddings(model, prepared.new_ids)
    params = list(model.parameters())
    assert shape.parameters == sum(p.numel() for p in params)
    assert shape.trainable == sum(p.numel() for p in params if p.requires_grad)
    assert shape.vocab == model.get_input_embeddings().weight.shape[0]
    if overrides[1:]:
        assert shape.trainable < shape.parameters


def test_a_local_directory_with_config_json_is_enough(tmp_path, capsys):
    config = _tiny_config("gpt_neox", layers=3)
    config.save_pretrained(tmp_path)  # config.json only: no weights, no tokenizer
    assert (
        main(["estimate", "presets/oasst-sft.yaml", "defaults", "--set", f"model.name_or_path={tmp_path}", "--json"])
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    model = AutoModelForCausalLM.from_config(config)
    assert result["model"]["parameters"] == sum(p.numel() for p in model.parameters())
    assert result["model"]["source"] == f"local config.json ({tmp_path / 'config.json'})"


# --------------------------------------------------------------------------- command line


def test_cli_estimates_seed_001_redpajama_on_8_gpus(capsys):
    assert main(["estimate", "presets/oasst-sft.yaml", "defaults", "redpajama-3b", "--gpus", "8"]) == 0
    out = capsys.readouterr().out
    assert "2,775,864,320" in out and "RedPajama-INCITE-Base-3B-v1" in out  # 2.78B parameters, the known table
    assert "8 GPUs" in out and "1 x 8196 tokens" in out
    # ZeRO-3 optimizer: (4 fp32 master + 2 x 4 Adam) x 2,775,864,320 / 8 = 4.16e9 bytes
    assert "4.16" in out.split("optimizer state")[1].splitlines()[0]


def test_cli_estimates_seed_000_memphis_cot(capsys):
    assert main(["estimate", "presets/memphis-cot.yaml", "defaults"]) == 0
    out = capsys.readouterr().out
    assert "2,795,443,200" in out and "stablelm" in out
    # fp32 weights 2,795,443,200 x 4 bytes = 11.18 GB under DDP
    assert "11.18" in out.split("weights")[1].splitlines()[0]
    assert "freeze_embeddings" in out


def test_cli_json_parses_and_agrees_with_the_terms(capsys):
    assert main(["estimate", "presets/oasst-sft.yaml", "defaults", "redpajama-3b", "--gpus", "8", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    zero3 = result["engines"]["zero3"]
    assert result["model"]["parameters"] == 2775864320
    assert zero3["optimizer"] == 12 * 2775864320 // 8
    # ZeRO keeps its gradient partitions across steps; with checkpointing the loss phase holds
    # the layer inputs (no recomputed layer yet) and the logits, 4.96 GB, more than the
    # backward's one recomputed layer: peak = weights + optimizer + gradients + inputs + logits
    assert zero3["persistent_gradients"] == zero3["gradients"]
    kept = zero3["activations_checkpointed"] - zero3["layer_activations"]
    assert zero3["total"] == zero3["weights"] + zero3["optimizer"] + zero3["gradients"] + kept + zero3["logits"]
    assert zero3["logits"] == 8196 * 50432 * 12
    assert result["setup"]["gpus"] == 8 and result["setup"]["seq_len"] == 8196


def test_cli_marks_the_engine_the_config_selects(capsys):
    # the shipped ZeRO-3 config names its own AdamW, which the ZeRO columns then count
    assert (
        main(
            [
                "estimate",
                "presets/oasst-sft.yaml",
                "defaults",
                "redpajama-3b",
                "--gpus",
                "8",
                "--set",
                "train.deepspeed=examples/deepspeed/zero3_config_sft.json",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["configured_engine"] == "zero3"
    assert (
        main(
            [
                "estimate",
                "presets/oasst-sft.yaml",
                "defaults",
                "redpajama-3b",
                "--set",
                "train.deepspeed=null",
                "--set",
                "train.fsdp={reshard_after_forward: false}",
            ]
        )
        == 0
    )
    assert "FSDP (config)" in capsys.readouterr().out


SEED_001 = ["presets/oasst-sft.yaml", "defaults", "redpajama-3b"]


@pytest.mark.parametrize(
    "args, message",
    [
        ([*SEED_001, "--gpus", "0"], "--gpus 0: need at least one GPU"),
        ([*SEED_001, "--gpu-memory", "banana"], "--gpu-memory 'banana'"),
        (
            [*SEED_001, "--set", "model.name_or_path=nowhere/unknown-model-7b"],
            "model.name_or_path: 'nowhere/unknown-model-7b' is not a local directory",
        ),
        (
            ["presets/oasst-sft.yaml", "defaults", "tiny", "--set", "model.architecture=gpt2"],
            "model.architecture: lmforge estimate has no activation formula for model_type 'gpt2'",
        ),
        # not a full-finetuning figure for an adapter run: it would overstate its memory
        (
            ["presets/minisymposium.yaml", "defaults"],
            "model.adapter: lmforge estimate models full finetuning only; adapters and quantized bases are not modelled",
        ),
    ],
)
def test_cli_bad_inputs_exit_2_with_one_line(capsys, args, message):
    assert main(["estimate", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
