"""The PaLM-style presets (models/presets.py, DESIGN 3.13): the parameter count of each,
worked out by hand below, against the model lmforge builds (on the meta device: no 1B
model is allocated) and the figure `lmforge config show` prints; the PaLM block checked
module by module on palm-tiny; a checkpoint loads with plain from_pretrained; bad
combinations are one-line errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM

from lmforge.cli import main
from lmforge.config import load_config
from lmforge.config.schema import ModelConfig
from lmforge.estimate.shape import meta_model
from lmforge.models import presets
from lmforge.models.loading import build_model, fresh_model_config, load_tokenizer

REPO = Path(__file__).resolve().parents[2]
TOKENIZER = str(REPO / "examples" / "tokenizer")  # 468 tokens, well inside palm-tiny's 8192


def _by_hand(dim: int, depth: int, heads: int, head_dim: int, vocab: int = 50304) -> int:
    """Tied embedding + per layer (q, k, v, o; SwiGLU gate, up, down; one LayerNorm weight)
    + the final LayerNorm weight; no biases anywhere."""
    q = dim * heads * head_dim
    kv = 2 * dim * head_dim  # one key/value head (multi-query)
    o = heads * head_dim * dim
    mlp = 3 * dim * (4 * dim)
    return vocab * dim + depth * (q + kv + o + mlp + dim) + dim


# The same arithmetic written out, number by number:
HAND_COUNTS = {
    # 8192*128 = 1,048,576; layer 128*128 + 2*128*32 + 128*128 + 3*128*512 + 128 = 237,696; x2 = 475,392; +128
    "palm-tiny": 1_048_576 + 475_392 + 128,  # 1,524,096
    # 50304*768 = 38,633,472; layer 786,432 + 196,608 + 786,432 + 7,077,888 + 768 = 8,848,128; x12 = 106,177,536
    "palm-150m": 38_633_472 + 106_177_536 + 768,  # 144,811,776
    # 50304*1024 = 51,511,296; layer 1,048,576 + 262,144 + 1,048,576 + 12,582,912 + 1024 = 14,943,232; x24
    "palm-410m": 51_511_296 + 358_637_568 + 1024,  # 410,149,888
    # 50304*2048 = 103,022,592; layer 2,097,152 + 524,288 + 2,097,152 + 50,331,648 + 2048 = 55,052,288; x16
    "palm-1b": 103_022_592 + 880_836_608 + 2048,  # 983,861,248
}


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(TOKENIZER)


def _model_config(name: str) -> ModelConfig:
    return ModelConfig(preset=name, tokenizer=TOKENIZER)


def test_the_schema_lists_every_preset():
    assert set(ModelConfig.model_fields["preset"].annotation.__args__[0].__args__) == set(presets.PRESETS)


@pytest.mark.parametrize("name", list(presets.PRESETS))
def test_parameter_count_matches_the_hand_count(name, tokenizer):
    p = presets.PRESETS[name]
    assert HAND_COUNTS[name] == _by_hand(p.hidden_size, p.num_layers, p.num_heads, p.head_dim, p.vocab_size)
    model_cfg = _model_config(name)
    config = fresh_model_config(model_cfg.architecture, model_cfg.size.model_dump(), tokenizer)
    built = sum(t.numel() for t in meta_model(config, "float32", None).parameters())
    assert built == pytest.approx(HAND_COUNTS[name], rel=0.01)
    assert built == HAND_COUNTS[name]  # in fact exact


def test_the_table_sizes_are_what_their_names_say():
    """Within 4% of 150M / 410M / 1B (the names round; 150M is 144.8M)."""
    for name, nominal in (("palm-150m", 150e6), ("palm-410m", 410e6), ("palm-1b", 1e9)):
        assert HAND_COUNTS[name] == pytest.approx(nominal, rel=0.04)


def test_config_show_prints_the_count(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"defaults": {"model": {"preset": "palm-1b", "tokenizer": TOKENIZER}}}))
    assert main(["config", "show", str(config)]) == 0
    out = capsys.readouterr().out
    shown = yaml.safe_load(out)  # still one YAML document: the count is a comment
    assert shown["model"]["architecture"] == "cohere" and shown["model"]["size"]["head_dim"] == 128
    assert f"# model: {HAND_COUNTS['palm-1b']:,} parameters (" in out and "model.preset palm-1b" in out


def test_palm_tiny_is_the_palm_block(tokenizer):
    """Parallel attention + MLP off one LayerNorm, SwiGLU, rotary over the whole head,
    multi-query attention, tied embeddings, no biases, logits unscaled."""
    model_cfg = _model_config("palm-tiny")
    model = build_model(model_cfg.architecture, model_cfg.size.model_dump(), tokenizer)
    config, layer = model.config, model.model.layers[0]
    assert config.model_type == "cohere" and config.logit_scale == 1.0 and not config.use_qk_norm
    assert not [n for n, _ in model.named_parameters() if n.endswith("bias")]
    assert model.lm_head.weight is model.model.embed_tokens.weight
    attn = layer.self_attn
    assert attn.q_proj.weight.shape == (4 * 32, 128)  # heads x head_dim, from dim
    assert attn.k_proj.weight.shape == attn.v_proj.weight.shape == (32, 128)  # one kv head
    assert layer.mlp.gate_proj.weight.shape == layer.mlp.up_proj.weight.shape == (512, 128)
    assert config.hidden_act == "silu"
    assert model.model.rotary_emb.inv_freq.shape == (32 // 2,)  # rotary over the whole head
    assert config.rope_parameters["rope_theta"] == 10000.0
    assert [n for n, _ in layer.named_children()] == ["self_attn", "mlp", "input_layernorm"]  # one norm

    # parallel: the layer's output is x + attention(norm(x)) + mlp(norm(x))
    torch.manual_seed(0)
    x = torch.randn(1, 5, 128)
    positions = torch.arange(5)[None]
    with torch.no_grad():
        cos_sin = model.model.rotary_emb(x, positions)
        out = layer(x, attention_mask=None, position_ids=positions, position_embeddings=cos_sin)
        out = out[0] if isinstance(out, tuple) else out
        normed = layer.input_layernorm(x)
        causal = torch.full((5, 5), float("-inf")).triu(1)[None, None]
        attention = layer.self_attn(normed, position_embeddings=cos_sin, attention_mask=causal)[0]
        expected = x + attention + layer.mlp(normed)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_a_checkpoint_loads_with_plain_from_pretrained(tokenizer, tmp_path):
    model_cfg = _model_config("palm-tiny")
    model = build_model(model_cfg.architecture, model_cfg.size.model_dump(), tokenizer).eval()
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()  # no trust_remote_code, no lmforge
    ids = torch.tensor([[1, 17, 42, 99, 3]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits)
    assert (loaded.config.head_dim, loaded.config.num_key_value_heads, loaded.config.vocab_size) == (32, 1, 8192)


def _config_error(tmp_path, capsys, model: dict) -> str:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"defaults": {"model": model}}))
    capsys.readouterr()
    code = main(["config", "show", str(config)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("lmforge: error: "), err
    return err.strip()


def test_a_preset_with_a_pretrained_model_is_an_error(tmp_path, capsys):
    message = _config_error(tmp_path, capsys, {"preset": "palm-150m", "name_or_path": "org/model"})
    assert "model.preset palm-150m builds a fresh model and cannot be combined with model.name_or_path" in message


def test_size_and_architecture_may_repeat_the_preset_but_not_contradict_it(tmp_path, capsys):
    same = {"preset": "palm-150m", "tokenizer": TOKENIZER, "architecture": "cohere", "size": {"hidden_size": 768}}
    config = tmp_path / "ok.yaml"
    config.write_text(yaml.safe_dump({"defaults": {"model": same}}))
    assert load_config(config).model.size.head_dim == 128
    message = _config_error(tmp_path, capsys, {**same, "size": {"hidden_size": 512}})
    assert "model.size.hidden_size 512 contradicts model.preset palm-150m (hidden_size 768)" in message
    message = _config_error(tmp_path, capsys, {**same, "size": {"tie_word_embeddings": False}})
    assert "model.size.tie_word_embeddings False contradicts model.preset palm-150m" in message
    message = _config_error(tmp_path, capsys, {**same, "architecture": "llama"})
    assert "model.architecture llama contradicts model.preset palm-150m, which builds a cohere model" in message


def test_a_resolved_config_loads_again(tmp_path):
    """run.json's resolved config repeats the preset's values: it must load as it was."""
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"defaults": {"model": {"preset": "palm-410m", "tokenizer": TOKENIZER}}}))
    first = load_config(config)
    config.write_text(yaml.safe_dump({"defaults": first.model_dump(mode="json")}))
    assert load_config(config) == first


def test_a_tokenizer_larger_than_the_embedding_is_an_error(tmp_path, capsys, monkeypatch):
    """examples/tokenizer has 468 tokens: a palm-tiny of 300 rows cannot hold it."""
    small = dataclasses.replace(presets.PRESETS["palm-tiny"], vocab_size=300)
    monkeypatch.setitem(presets.PRESETS, "palm-tiny", small)
    message = _config_error(tmp_path, capsys, {"preset": "palm-tiny", "tokenizer": TOKENIZER})
    assert message == (
        "lmforge: error: model.tokenizer: its 468 tokens do not fit model.preset palm-tiny's 300 embedding rows; "
        "use a tokenizer of at most 300 tokens (lmforge tokenizer train --vocab-size)"
    )


def test_head_dim_on_an_architecture_without_it_is_an_error(tokenizer):
    from lmforge.errors import LmforgeError

    with pytest.raises(LmforgeError, match="model.size.head_dim: a gpt2 model's head width is hidden_size / num_heads"):
        fresh_model_config("gpt2", {"hidden_size": 64, "num_layers": 1, "num_heads": 2, "head_dim": 16}, tokenizer)


@pytest.mark.parametrize("name", ["palm-150m", "palm-410m", "palm-1b"])
def test_the_pretraining_yaml_sets_the_tables_learning_rate(name):
    config = load_config(REPO / "presets" / "palm-pretrain.yaml", ["defaults", name])
    assert config.model.preset == name and config.model.architecture == "cohere"
    assert config.train.optimizer.lr == presets.PRESETS[name].lr
    assert (config.data.max_length, config.model.size.vocab_size) == (2048, 50304)  # the table's sequence, vocab
