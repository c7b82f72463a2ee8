"""The fixed-text prompt formats (ChatML, Alpaca, ### Instruction, Q:/A:) with their label
masks, their saved chat templates, and format augmentation (deterministic by seed, masks
right in every format)."""

from __future__ import annotations

import pytest

from lmforge.data.conversation import Conversation, Segment
from lmforge.data.formats import get_format
from lmforge.data.pipeline import DatasetSpec, build_datasets
from lmforge.data.tokenize import IGNORE_INDEX, encode_conversation
from tests.data.test_label_masks import CHATML, COT, MULTI, SINGLE, parts

M = IGNORE_INDEX
CHAT = Conversation(
    (
        Segment("system", "You are a helpful assistant."),
        Segment("user", "Name a color."),
        Segment("assistant", "Red."),
        Segment("user", "And another?"),
        Segment("assistant", "Blue."),
    )
)

# (format, conversation) -> the rendered text split where the role changes: prompt, trained, prompt, ...
EXPECTED = {
    ("chatml", "single"): [
        "<|im_start|>user\nWhat is 12 plus 7?<|im_end|>\n<|im_start|>assistant\n",
        "12 plus 7 is 19.<|im_end|>\n",
    ],
    ("chatml", "cot"): [
        "<|im_start|>user\nWhat is 12 plus 7?<|im_end|>\n<|im_start|>assistant\n",
        "12 plus 7 is 19.\n#### 19<|im_end|>\n",
    ],
    ("instruction", "multi"): [
        "### Instruction:\nWhat is 12 plus 7?\n\n### Response:\n",
        "19\n\n",
        "### Instruction:\nAnd 3 times 4?\n\n### Response:\n",
        "12\n\n</s>",
    ],
    ("alpaca", "single"): [
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\nWhat is 12 plus 7?\n\n### Response:\n",
        "12 plus 7 is 19.\n\n</s>",
    ],
    ("qa", "single"): ["Q: What is 12 plus 7?\nA: ", "12 plus 7 is 19.\n</s>"],
    ("qa", "cot"): ["Q: What is 12 plus 7?\nA: ", "12 plus 7 is 19.\n#### 19\n</s>"],
}
CONVERSATIONS = {"single": SINGLE, "multi": MULTI, "cot": COT}


def with_tokens(tokenizer, name):
    fmt = get_format(name)
    tokenizer.add_special_tokens(
        {"additional_special_tokens": fmt.special_tokens(tokenizer)}, replace_extra_special_tokens=False
    )
    return fmt


@pytest.mark.parametrize("name, which", list(EXPECTED), ids=[f"{n}-{w}" for n, w in EXPECTED])
def test_text_format_label_masks(tokenizer, name, which):
    fmt = with_tokens(tokenizer, name)
    texts = EXPECTED[(name, which)]
    pieces = parts(tokenizer, *texts)
    encoded = encode_conversation(CONVERSATIONS[which], fmt, tokenizer)
    bos = [tokenizer.bos_token_id]
    assert encoded.input_ids == bos + [i for p in pieces for i in p]
    assert encoded.labels == [M] + [i if k % 2 else M for k, p in enumerate(pieces) for i in p]


@pytest.mark.parametrize("name", ["chatml", "alpaca", "instruction", "qa"])
def test_text_format_saved_chat_template_renders_the_training_text(tokenizer, name):
    fmt = with_tokens(tokenizer, name)
    tokenizer.chat_template = fmt.chat_template(cot=False)
    messages = [{"role": s.role, "content": s.text} for s in CHAT.segments]
    rendered = "".join(piece for piece, _ in fmt.render(CHAT, tokenizer))
    assert tokenizer.apply_chat_template(messages, tokenize=False) == rendered
    prompt = CHAT.segments[:2]
    assert tokenizer.apply_chat_template(
        messages[:2], tokenize=False, add_generation_prompt=True
    ) == fmt.generation_prompt(prompt, tokenizer, cot=False)


AUGMENT = ["remask", "openassistant", "chatml", "alpaca", "instruction", "qa", "chat_template"]


def test_augmentation_uses_every_format_with_right_masks_and_is_deterministic(tmp_path, tokenizer, write_jsonl):
    formats = [with_tokens(tokenizer, name) for name in AUGMENT]
    tokenizer.add_special_tokens(
        {"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]}, replace_extra_special_tokens=False
    )
    tokenizer.chat_template = CHATML
    path = write_jsonl(
        tmp_path / "q.jsonl", [{"instruction": f"What is {a} plus 7?", "output": f"It is {a + 7}."} for a in range(60)]
    )

    def build(seed):
        return build_datasets(
            [DatasetSpec(str(path), val_split=0.0)], formats[0], tokenizer, 512, "drop", seed, augment=formats
        )

    data = build(3)
    texts = [tokenizer.decode(ids) for ids in data.train["input_ids"]]
    markers = {
        "remask": "<|user|>",
        "openassistant": "<|prompter|>",
        "chatml": "<|im_start|>user",
        "alpaca": "Below is an instruction",
        "instruction": "### Instruction:",
        "qa": "Q: ",
    }
    seen = {name for name, marker in markers.items() for text in texts if marker in text}
    assert seen == set(markers)  # chat_template renders like chatml here
    for ids, labels in zip(data.train["input_ids"], data.train["labels"]):
        trained = tokenizer.decode([t for t, label in zip(ids, labels) if label != M])
        question = tokenizer.decode(ids)
        a = int(question.split("What is ")[1].split(" plus")[0])
        assert trained.startswith(f"It is {a + 7}.")  # exactly the response (and its closing tokens)
        assert "What is" not in trained
    assert data.train["input_ids"] == build(3).train["input_ids"]
    assert data.train["input_ids"] != build(4).train["input_ids"]


def test_augmentation_with_chat_template_needs_one(tokenizer, tmp_path, write_jsonl):
    from lmforge.errors import LmforgeError

    tokenizer.chat_template = None
    path = write_jsonl(tmp_path / "q.jsonl", [{"instruction": "Hi", "output": "Hello."}])
    with pytest.raises(LmforgeError, match=r"^data\.format_augmentation: chat_template needs a tokenizer"):
        build_datasets(
            [DatasetSpec(str(path), val_split=0.0)],
            get_format("remask"),
            tokenizer,
            512,
            "drop",
            0,
            augment=[get_format("chat_template")],
        )
