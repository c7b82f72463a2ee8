"""`.gguf` models: a tiny Llama written with the gguf package's GGUFWriter (F32 tensors, so
dequantizing is exact) loads as the same weights and tokenizer, converts once into a
safetensors directory that reloads, trains through the ordinary pipeline, and bad files
give one-line errors naming model.name_or_path."""

from __future__ import annotations

import json
import os
from functools import partial

import gguf
import numpy as np
import pytest
import torch
import yaml
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from lmforge.config import load_config
from lmforge.errors import LmforgeError
from lmforge.models import gguf as lmgguf
from lmforge.models.loading import load_model, load_tokenizer
from tests.conftest import CORPUS

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
HEADS, KV_HEADS, LAYERS = 4, 2, 2


def byte_level_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE with GPT-2's split rule: what a GGUF "gpt2" tokenizer rebuilds. (The demo
    tokenizer splits digits one by one, which a GGUF file has no way to say.)"""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=SPECIAL,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )


def _permute(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's rotary layout of q/k rows (convert_hf_to_gguf's LlamaModel.permute);
    transformers undoes it on load."""
    return (
        weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)
    )


def write_llama_gguf(path, model: LlamaForCausalLM, tokenizer, architecture: str = "llama") -> None:
    """The model's F32 tensors under llama.cpp's names and the tokenizer as tokenizer.ggml.*
    metadata (the keys transformers' GGUF tokenizer reads), as convert_hf_to_gguf writes them."""
    config = model.config
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name("tiny-llama")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_vocab_size(config.vocab_size)

    backend = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    tokens = sorted(backend["vocab"], key=backend["vocab"].get)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_merges([" ".join(pair) if isinstance(pair, list) else pair for pair in backend["merges"]])
    writer.add_token_types([gguf.TokenType.CONTROL if t in SPECIAL else gguf.TokenType.NORMAL for t in tokens])
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        weight = tensor.numpy().astype(np.float32)
        if name.endswith("q_proj.weight"):
            weight = _permute(weight, config.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            weight = _permute(weight, config.num_key_value_heads)
        writer.add_tensor(names.get_name(name, try_suffixes=(".weight",)), weight)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    """(path of the .gguf, the model written into it, its tokenizer)."""
    tokenizer = byte_level_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=128,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config).eval()
    path = tmp_path_factory.mktemp("gguf") / "tiny-llama.F32.gguf"
    write_llama_gguf(path, model, tokenizer)
    return path, model, tokenizer


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(lmgguf.CACHE_ENV, str(tmp_path / "cache"))


def assert_same_weights(loaded, original) -> None:
    expected, got = original.state_dict(), loaded.state_dict()
    assert set(got) == set(expected)
    for name, tensor in expected.items():
        assert torch.equal(got[name], tensor), name


TEXTS = CORPUS[:6] + ["What is 123 plus 45?\n  Tom has 3 apples.<|im_end|>"]


def test_is_gguf():
    assert lmgguf.is_gguf("a/b/Model.Q4_K_M.GGUF") and not lmgguf.is_gguf("HuggingFaceTB/SmolLM2-135M")


def test_load_model_dequantizes_to_the_original_weights(tiny_gguf):
    path, original, _ = tiny_gguf
    model = load_model(str(path))
    assert_same_weights(model, original)
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    assert torch.equal(model(ids).logits, original(ids).logits)
    # an ordinary model: trainable and saveable, no GGUF quantizer left on it
    assert not getattr(model, "is_quantized", False) and getattr(model, "hf_quantizer", None) is None
    assert all(p.requires_grad for p in model.parameters())


def test_tokenizer_encodes_the_same_ids(tiny_gguf):
    path, _, original = tiny_gguf
    tokenizer = load_tokenizer(str(path), key="model.name_or_path")
    for text in TEXTS:
        assert tokenizer(text).input_ids == original(text).input_ids, text
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|im_end|>", "<|endoftext|>")
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert chat == "<|im_start|>user\nhi<|im_end|>\n"


def test_convert_gguf_writes_a_directory_that_reloads(tiny_gguf, tmp_path, monkeypatch):
    path, original, original_tokenizer = tiny_gguf
    out = lmgguf.convert_gguf(path, tmp_path / "converted")
    assert [p.name for p in tmp_path.iterdir()] == ["converted"]  # no staging directory left
    assert list(out.glob("*.safetensors"))
    assert_same_weights(load_model(str(out)), original)
    tokenizer = load_tokenizer(str(out))
    for text in TEXTS:
        assert tokenizer(text).input_ids == original_tokenizer(text).input_ids, text
    assert tokenizer.chat_template == CHAT_TEMPLATE

    # once: a second call finds the finished directory and converts nothing
    def fail(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(lmgguf, "load_gguf_model", fail)
    assert lmgguf.convert_gguf(path, out) == out


def test_convert_gguf_never_overwrites_a_foreign_directory(tiny_gguf, tmp_path):
    path, _, _ = tiny_gguf
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(LmforgeError, match="exists and is not an lmforge GGUF conversion") as error:
        lmgguf.convert_gguf(path, foreign)
    assert "\n" not in str(error.value)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_quantized_load_goes_through_a_cached_conversion(tiny_gguf):
    pytest.importorskip("bitsandbytes")
    from transformers import BitsAndBytesConfig

    path, original, _ = tiny_gguf
    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.float32,
        bnb_4bit_use_double_quant=True,
    )
    model = load_model(str(path), quantization_config=quantization)
    cached = lmgguf.conversion_dir(path)
    assert cached.is_dir() and cached.parent.parent == lmgguf.cache_root()
    assert_same_weights(load_model(str(cached)), original)
    assert type(model.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    assert torch.equal(model.model.embed_tokens.weight, original.model.embed_tokens.weight)  # not quantized


def test_trains_from_a_gguf_file(tiny_gguf, tmp_path, write_jsonl):
    """The whole pipeline on a .gguf name_or_path: tokenizer and model from the file, the
    chat template as prompt format, a saved model/ that loads again."""
    from lmforge.train.pipeline import run_training

    path, _, _ = tiny_gguf
    rows = [
        {
            "question": f"Tom has {i} apples and buys {i + 2} more. How many apples does Tom have now?",
            "answer": f"Tom has {i} + {i + 2} = {2 * i + 2} apples now.\n#### {2 * i + 2}",
        }
        for i in range(16)
    ]
    data = write_jsonl(tmp_path / "gsm8k.jsonl", rows)
    config = {
        "run": {"output_dir": str(tmp_path / "run"), "seed": 3},
        "model": {"name_or_path": str(path)},
        "data": {
            "datasets": [{"path": str(data), "val_split": 0.0}],
            "prompt_format": "chat_template",
            "max_length": 96,
            "dedup": {"near": False},
        },
        "train": {
            "max_steps": 2,
            "global_batch_size": 4,
            "micro_batch_size": 4,
            "logging_steps": 1,
            "optimizer": {"lr": 1e-3},
        },
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    result = run_training(load_config(tmp_path / "c.yaml"))
    assert result.metrics["skipped_updates"] == 0
    assert load_model(str(result.model_dir)).config.vocab_size == len(load_tokenizer(str(result.model_dir)))


# ----------------------------------------------------------------------------- errors


def one_line_error(call, *args) -> str:
    with pytest.raises(LmforgeError) as error:
        call(*args)
    message = str(error.value)
    assert "\n" not in message and message.startswith("model.name_or_path: "), message
    return message


@pytest.mark.parametrize("loader", [load_model, partial(load_tokenizer, key="model.name_or_path")])
def test_missing_file(tmp_path, loader):
    message = one_line_error(loader, str(tmp_path / "nowhere.gguf"))
    assert "nowhere.gguf' does not exist" in message


def test_not_a_gguf_file(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 a zip archive, renamed")
    message = one_line_error(load_model, str(fake))
    assert "is not a GGUF file" in message and "b'PK\\x03\\x04'" in message
    assert "is not a GGUF file" in one_line_error(lmgguf.convert_gguf, fake, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_architecture_transformers_cannot_dequantize(tmp_path):
    path = tmp_path / "rwkv.gguf"
    writer = gguf.GGUFWriter(str(path), "rwkv6")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    message = one_line_error(load_model, str(path))
    assert "holds a 'rwkv6' model, which transformers cannot dequantize" in message
    assert "rwkv6" in one_line_error(load_tokenizer, str(path), False, "model.name_or_path")
    assert os.listdir(tmp_path) == ["rwkv.gguf"]


def test_truncated_file(tiny_gguf, tmp_path):
    path, _, _ = tiny_gguf
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[:3000])
    assert "cannot be read (truncated or damaged?)" in one_line_error(load_model, str(cut))
