"""Label masks per prompt format and per role, at exact positions.

Each expected sequence is written out by hand as the text the format should render,
split where the role changes. Every split falls right after a newline or next to a
special token, where the tokenizer never merges (checked by `parts`), so tokenizing the
pieces one by one gives the ids the whole text must tokenize to; labels are -100 over the
prompt pieces and equal to the ids over the trained ones."""

from __future__ import annotations

import pytest

from lmforge.data.conversation import ROLE_IDS, Conversation, Segment
from lmforge.data.formats import FORMATS, ChatTemplateFormat, OpenAssistantFormat, ReMaskFormat, get_format
from lmforge.data.tokenize import IGNORE_INDEX, encode_conversation
from lmforge.errors import LmforgeError

PROMPT, ASSISTANT, RATIONALE, ANSWER = (ROLE_IDS[r] for r in ("prompt", "assistant", "rationale", "answer"))
assert (PROMPT, ASSISTANT, RATIONALE, ANSWER) == (0, 1, 2, 3)
M = IGNORE_INDEX

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

SINGLE = Conversation((Segment("user", "What is 12 plus 7?"), Segment("assistant", "12 plus 7 is 19.")), "s.jsonl:1")
MULTI = Conversation(
    (
        Segment("user", "What is 12 plus 7?"),
        Segment("assistant", "19"),
        Segment("user", "And 3 times 4?"),
        Segment("assistant", "12"),
    ),
    "m.jsonl:1",
)
SYSTEM = Conversation(
    (Segment("system", "You are a helpful assistant."), Segment("user", "Name a color."), Segment("assistant", "Red.")),
    "sys.jsonl:1",
)
COT = Conversation(
    (Segment("user", "What is 12 plus 7?"), Segment("rationale", "12 plus 7 is 19."), Segment("answer", "19")),
    "cot.jsonl:1",
)


def use_format(tokenizer, name: str):
    fmt = get_format(name)
    tokenizer.add_special_tokens(
        {"additional_special_tokens": fmt.special_tokens(tokenizer)}, replace_extra_special_tokens=False
    )
    if name == "chat_template":
        tokenizer.add_special_tokens(
            {"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]}, replace_extra_special_tokens=False
        )
        tokenizer.chat_template = CHATML
    return fmt


def ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def parts(tokenizer, *texts: str) -> list[list[int]]:
    """Ids of each text alone, after checking the joined text tokenizes to their concatenation."""
    pieces = [ids(tokenizer, t) for t in texts]
    assert ids(tokenizer, "".join(texts)) == [i for p in pieces for i in p], "a piece boundary merged tokens"
    assert all(pieces), "every piece holds at least one token"
    return pieces


def trained_text(tokenizer, encoded) -> str:
    return tokenizer.decode([label for label in encoded.labels if label != M])


# --------------------------------------------------------------------------- fixtures work


def test_tokenizer_fixture_is_a_private_copy(tiny_tokenizer, tokenizer):
    before = len(tiny_tokenizer)
    use_format(tokenizer, "remask")
    assert len(tokenizer) == before + 5
    assert len(tiny_tokenizer) == before
    assert tokenizer.bos_token == "<s>" and tokenizer.eos_token == "</s>"


def test_format_tokens_are_single_tokens(tokenizer):
    for name in FORMATS:
        use_format(tokenizer, name)
    for token in [
        *ReMaskFormat().special_tokens(tokenizer),
        *OpenAssistantFormat().special_tokens(tokenizer),
        "<|im_start|>",
        "<|im_end|>",
        "</s>",
    ]:
        assert len(ids(tokenizer, token)) == 1, token


# --------------------------------------------------------------------------- remask


def test_remask_single_turn(tokenizer):
    fmt = use_format(tokenizer, "remask")
    prompt, reply = parts(tokenizer, "<|user|>\nWhat is 12 plus 7?\n<|assistant|>\n", "12 plus 7 is 19.\n</s>")
    encoded = encode_conversation(SINGLE, fmt, tokenizer)
    bos = tokenizer.bos_token_id
    assert encoded.input_ids == [bos] + prompt + reply
    assert encoded.labels == [M] * (1 + len(prompt)) + reply
    assert encoded.token_roles == [PROMPT] * (1 + len(prompt)) + [ASSISTANT] * len(reply)
    assert encoded.input_ids[0] == bos and encoded.labels[-1] == tokenizer.eos_token_id
    assert trained_text(tokenizer, encoded) == "12 plus 7 is 19.\n</s>"


def test_remask_multi_turn_trains_every_assistant_turn(tokenizer):
    fmt = use_format(tokenizer, "remask")
    user1, reply1, user2, reply2 = parts(
        tokenizer,
        "<|user|>\nWhat is 12 plus 7?\n<|assistant|>\n",
        "19\n",
        "<|user|>\nAnd 3 times 4?\n<|assistant|>\n",
        "12\n</s>",  # eos only after the last turn
    )
    encoded = encode_conversation(MULTI, fmt, tokenizer)
    assert encoded.input_ids == [tokenizer.bos_token_id] + user1 + reply1 + user2 + reply2
    assert encoded.labels == [M] * (1 + len(user1)) + reply1 + [M] * len(user2) + reply2
    assert encoded.token_roles == (
        [PROMPT] * (1 + len(user1)) + [ASSISTANT] * len(reply1) + [PROMPT] * len(user2) + [ASSISTANT] * len(reply2)
    )
    assert trained_text(tokenizer, encoded) == "19\n12\n</s>"


def test_remask_system_message_is_prompt(tokenizer):
    fmt = use_format(tokenizer, "remask")
    prompt, reply = parts(
        tokenizer, "<|system|>\nYou are a helpful assistant.\n<|user|>\nName a color.\n<|assistant|>\n", "Red.\n</s>"
    )
    encoded = encode_conversation(SYSTEM, fmt, tokenizer)
    assert encoded.input_ids == [tokenizer.bos_token_id] + prompt + reply
    assert encoded.labels == [M] * (1 + len(prompt)) + reply
    assert encoded.token_roles == [PROMPT] * (1 + len(prompt)) + [ASSISTANT] * len(reply)


def test_remask_cot_trains_rationale_then_answer_tag_answer_and_eos(tokenizer):
    fmt = use_format(tokenizer, "remask")
    prompt, rationale, answer = parts(
        tokenizer,
        "<|user|>\nWhat is 12 plus 7?\n<|rationale|>\n",  # the rationale tag is given, not trained
        "12 plus 7 is 19.\n",
        "<|answer|>\n19\n</s>",  # the model writes the answer tag itself
    )
    encoded = encode_conversation(COT, fmt, tokenizer)
    assert encoded.input_ids == [tokenizer.bos_token_id] + prompt + rationale + answer
    assert encoded.labels == [M] * (1 + len(prompt)) + rationale + answer
    assert encoded.token_roles == [PROMPT] * (1 + len(prompt)) + [RATIONALE] * len(rationale) + [ANSWER] * len(answer)
    assert answer[0] == tokenizer.convert_tokens_to_ids("<|answer|>")
    assert encoded.labels[-1] == tokenizer.eos_token_id and encoded.token_roles[-1] == ANSWER


# --------------------------------------------------------------------------- openassistant


def test_openassistant_single_turn(tokenizer):
    fmt = use_format(tokenizer, "openassistant")
    prompt, reply = parts(
        tokenizer, "<|prompter|>What is 12 plus 7?<|endoftext|><|assistant|>", "12 plus 7 is 19.<|endoftext|>"
    )
    encoded = encode_conversation(SINGLE, fmt, tokenizer)
    assert encoded.input_ids == [tokenizer.bos_token_id] + prompt + reply
    assert encoded.labels == [M] * (1 + len(prompt)) + reply
    assert encoded.token_roles == [PROMPT] * (1 + len(prompt)) + [ASSISTANT] * len(reply)
    assert encoded.labels[-1] == tokenizer.convert_tokens_to_ids("<|endoftext|>")


def test_openassistant_multi_turn(tokenizer):
    fmt = use_format(tokenizer, "openassistant")
    user1, reply1, user2, reply2 = parts(
        tokenizer,
        "<|prompter|>What is 12 plus 7?<|endoftext|><|assistant|>",
        "19<|endoftext|>",
        "<|prompter|>And 3 times 4?<|endoftext|><|assistant|>",
        "12<|endoftext|>",
    )
    encoded = encode_conversation(MULTI, fmt, tokenizer)
    assert encoded.input_ids == [tokenizer.bos_token_id] + user1 + reply1 + user2 + reply2
    assert encoded.labels == [M] * (1 + len(user1)) + reply1 + [M] * len(user2) + reply2
    assert encoded.token_roles == (
        [PROMPT] * (1 + len(user1)) + [ASSISTANT] * len(reply1) + [PROMPT] * len(user2) + [ASSISTANT] * len(reply2)
    )
    assert tokenizer.eos_token_id not in encoded.input_ids  # this format ends turns with <|endoftext|>


def test_openassistant_system_message_is_prompt(tokenizer):
    fmt = use_format(tokenizer, "openassistant")
    prompt, reply = parts(
        tokenizer,
        "<|system|>You are a helpful assistant.<|endoftext|><|prompter|>Name a color.<|endoftext|><|assistant|>",
        "Red.<|endoftext|>",
    )
    encoded = encode_conversation(SYSTEM, fmt, tokenizer)
    assert encoded.input_ids == [tokenizer.bos_token_id] + prompt + reply
    assert encoded.labels == [M] * (1 + len(prompt)) + reply


def test_openassistant_cot_writes_rationale_then_hash_answer(tokenizer):
    fmt = use_format(tokenizer, "openassistant")
    prompt, rationale, answer = parts(
        tokenizer,
        "<|prompter|>What is 12 plus 7?<|endoftext|><|assistant|>",
        "12 plus 7 is 19.\n",
        "#### 19<|endoftext|>",
    )
    encoded = encode_conversation(COT, fmt, tokenizer)
    assert encoded.input_ids == [tokenizer.bos_token_id] + prompt + rationale + answer
    assert encoded.labels == [M] * (1 + len(prompt)) + rationale + answer
    assert encoded.token_roles == [PROMPT] * (1 + len(prompt)) + [RATIONALE] * len(rationale) + [ANSWER] * len(answer)


# --------------------------------------------------------------------------- chat_template


def test_chat_template_single_turn_has_no_bos(tokenizer):
    fmt = use_format(tokenizer, "chat_template")
    prompt, reply = parts(
        tokenizer,
        "<|im_start|>user\nWhat is 12 plus 7?<|im_end|>\n<|im_start|>assistant\n",
        "12 plus 7 is 19.<|im_end|>\n",
    )
    encoded = encode_conversation(SINGLE, fmt, tokenizer)
    assert encoded.input_ids == prompt + reply
    assert encoded.labels == [M] * len(prompt) + reply
    assert encoded.token_roles == [PROMPT] * len(prompt) + [ASSISTANT] * len(reply)
    assert encoded.input_ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert tokenizer.bos_token_id not in encoded.input_ids


def test_chat_template_multi_turn(tokenizer):
    fmt = use_format(tokenizer, "chat_template")
    user1, reply1, user2, reply2 = parts(
        tokenizer,
        "<|im_start|>user\nWhat is 12 plus 7?<|im_end|>\n<|im_start|>assistant\n",
        "19<|im_end|>\n",
        "<|im_start|>user\nAnd 3 times 4?<|im_end|>\n<|im_start|>assistant\n",
        "12<|im_end|>\n",
    )
    encoded = encode_conversation(MULTI, fmt, tokenizer)
    assert encoded.input_ids == user1 + reply1 + user2 + reply2
    assert encoded.labels == [M] * len(user1) + reply1 + [M] * len(user2) + reply2
    assert encoded.token_roles == (
        [PROMPT] * len(user1) + [ASSISTANT] * len(reply1) + [PROMPT] * len(user2) + [ASSISTANT] * len(reply2)
    )
    assert trained_text(tokenizer, encoded) == "19<|im_end|>\n12<|im_end|>\n"


def test_chat_template_system_message_is_prompt(tokenizer):
    fmt = use_format(tokenizer, "chat_template")
    prompt, reply = parts(
        tokenizer,
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nName a color.<|im_end|>\n<|im_start|>assistant\n",
        "Red.<|im_end|>\n",
    )
    encoded = encode_conversation(SYSTEM, fmt, tokenizer)
    assert encoded.input_ids == prompt + reply
    assert encoded.labels == [M] * len(prompt) + reply


def test_chat_template_cot_marks_the_hash_answer_tail(tokenizer):
    fmt = use_format(tokenizer, "chat_template")
    prompt, rationale, answer = parts(
        tokenizer,
        "<|im_start|>user\nWhat is 12 plus 7?<|im_end|>\n<|im_start|>assistant\n",
        "12 plus 7 is 19.\n",
        "#### 19<|im_end|>\n",
    )
    encoded = encode_conversation(COT, fmt, tokenizer)
    assert encoded.input_ids == prompt + rationale + answer
    assert encoded.labels == [M] * len(prompt) + rationale + answer
    assert encoded.token_roles == [PROMPT] * len(prompt) + [RATIONALE] * len(rationale) + [ANSWER] * len(answer)


@pytest.mark.parametrize(
    "template",
    [
        # a header that changes with the number of messages
        "{{ messages|length }}{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}",
        # a generation prompt that differs from how an assistant turn is written
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}bot: {% endif %}",
    ],
    ids=["length-header", "mismatched-generation-prompt"],
)
def test_chat_template_that_is_not_prefix_stable_is_rejected(tokenizer, template):
    fmt = ChatTemplateFormat()
    tokenizer.chat_template = template
    with pytest.raises(LmforgeError) as info:
        encode_conversation(SINGLE, fmt, tokenizer)
    assert str(info.value).startswith(
        "s.jsonl:1: the tokenizer's chat_template does not render conversations prefix by prefix"
    )


def test_chat_template_format_needs_a_template(tokenizer):
    tokenizer.chat_template = None
    with pytest.raises(LmforgeError, match="tokenizer has no chat_template"):
        encode_conversation(SINGLE, ChatTemplateFormat(), tokenizer)


def test_chat_template_needs_an_assistant_turn(tokenizer):
    fmt = use_format(tokenizer, "chat_template")
    with pytest.raises(LmforgeError, match=r"^q\.jsonl:2: conversation has no assistant turn to train on$"):
        encode_conversation(Conversation((Segment("user", "Hello"),), "q.jsonl:2"), fmt, tokenizer)


# --------------------------------------------------------------------------- saved templates


def _messages(conversation: Conversation) -> list[dict[str, str]]:
    return [{"role": s.role, "content": s.text} for s in conversation.segments]


def _text_before_first_trained(pieces) -> str:
    text = ""
    for piece, role in pieces:
        if role != "prompt":
            return text
        text += piece
    raise AssertionError("no trained piece")


CHAT = Conversation(
    SYSTEM.segments[:2] + (Segment("assistant", "Red."), Segment("user", "And another?"), Segment("assistant", "Blue."))
)


@pytest.mark.parametrize("name", ["remask", "openassistant"])
def test_saved_chat_template_renders_the_training_text(tokenizer, name):
    fmt = use_format(tokenizer, name)
    tokenizer.chat_template = fmt.chat_template(cot=False)
    rendered = "".join(piece for piece, _ in fmt.render(CHAT, tokenizer))
    templated = tokenizer.apply_chat_template(_messages(CHAT), tokenize=False)
    assert templated == rendered
    assert not templated.startswith(tokenizer.bos_token)  # bos is added at tokenization, not in the text


def test_remask_saved_chat_template_literal_text(tokenizer):
    fmt = use_format(tokenizer, "remask")
    tokenizer.chat_template = fmt.chat_template(cot=False)
    assert tokenizer.apply_chat_template(_messages(CHAT), tokenize=False) == (
        "<|system|>\nYou are a helpful assistant.\n<|user|>\nName a color.\n<|assistant|>\nRed.\n"
        "<|user|>\nAnd another?\n<|assistant|>\nBlue.\n</s>"
    )


def test_remask_saved_cot_template_renders_the_training_text(tokenizer):
    fmt = use_format(tokenizer, "remask")
    tokenizer.chat_template = fmt.chat_template(cot=True)
    rendered = "".join(piece for piece, _ in fmt.render(COT, tokenizer))
    assert (
        tokenizer.apply_chat_template(_messages(COT), tokenize=False)
        == rendered
        == ("<|user|>\nWhat is 12 plus 7?\n<|rationale|>\n12 plus 7 is 19.\n<|answer|>\n19\n</s>")
    )


@pytest.mark.parametrize(
    "cot, conversation, expected",
    [
        (False, CHAT, "<|system|>\nYou are a helpful assistant.\n<|user|>\nName a color.\n<|assistant|>\n"),
        (True, COT, "<|user|>\nWhat is 12 plus 7?\n<|rationale|>\n"),
    ],
)
def test_remask_generation_prompt_is_the_text_before_the_first_trained_piece(tokenizer, cot, conversation, expected):
    fmt = use_format(tokenizer, "remask")
    prompt = conversation.prompt_segments()
    assert fmt.generation_prompt(prompt, tokenizer, cot=cot) == expected
    assert _text_before_first_trained(fmt.render(conversation, tokenizer)) == expected
    # and the saved template's generation prompt agrees
    tokenizer.chat_template = fmt.chat_template(cot=cot)
    assert (
        tokenizer.apply_chat_template(_messages(Conversation(prompt)), tokenize=False, add_generation_prompt=True)
        == expected
    )


@pytest.mark.parametrize("name", ["openassistant", "chat_template"])
@pytest.mark.parametrize("conversation, cot", [(CHAT, False), (COT, True)], ids=["chat", "cot"])
def test_generation_prompt_matches_training_prompt(tokenizer, name, conversation, cot):
    fmt = use_format(tokenizer, name)
    assert fmt.generation_prompt(conversation.prompt_segments(), tokenizer, cot=cot) == (
        _text_before_first_trained(fmt.render(conversation, tokenizer))
    )


def test_remask_conversation_ending_with_a_user_turn_gets_no_eos(tokenizer):
    # Once render appended eos (trained as assistant) right after the trailing user turn.
    fmt = use_format(tokenizer, "remask")
    tokenizer.chat_template = fmt.chat_template(cot=False)
    conversation = Conversation(MULTI.segments[:3])
    rendered = "".join(piece for piece, _ in fmt.render(conversation, tokenizer))
    assert (
        rendered
        == tokenizer.apply_chat_template(_messages(conversation), tokenize=False)
        == ("<|user|>\nWhat is 12 plus 7?\n<|assistant|>\n19\n<|user|>\nAnd 3 times 4?\n")
    )
    user1, reply1, user2 = parts(
        tokenizer, "<|user|>\nWhat is 12 plus 7?\n<|assistant|>\n", "19\n", "<|user|>\nAnd 3 times 4?\n"
    )
    encoded = encode_conversation(conversation, fmt, tokenizer)
    assert encoded.input_ids == [tokenizer.bos_token_id] + user1 + reply1 + user2
    assert encoded.labels == [M] * (1 + len(user1)) + reply1 + [M] * len(user2)


# --------------------------------------------------------------------------- plain text


@pytest.mark.parametrize("name", ["remask", "openassistant", "chat_template"])
def test_plain_text_trains_every_token_in_every_format(tokenizer, name):
    fmt = use_format(tokenizer, name)
    text = Conversation((Segment("text", "The cat sat on the mat."),), "c4.jsonl:1")
    [body] = parts(tokenizer, "The cat sat on the mat.</s>")
    encoded = encode_conversation(text, fmt, tokenizer)
    assert encoded.input_ids == [tokenizer.bos_token_id] + body  # no tags, bos even with chat_template
    assert encoded.labels == [M] + body  # every token after bos is a target, eos included
    assert encoded.token_roles == [PROMPT] + [ROLE_IDS["text"]] * len(body)
