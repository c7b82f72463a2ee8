"""Byte-level BPE tokenizers trained with the `tokenizers` library: `lmforge tokenizer
train` for pretraining (GPT-NeoX style), and the demo's small tokenizer (demo/tokenizer.py).

GPT-NeoX style: a ByteLevel pre-tokenizer (GPT-2's split regex over UTF-8 bytes mapped to
256 printable symbols, so any text encodes, nothing is unknown, and decoding gives the
text back byte for byte), no normalizer (no lowercasing, no Unicode normalization), and
`<|endoftext|>` as both bos and eos, `<|padding|>` as pad (ids 0 and 1, as in NeoX). The
special tokens of every lmforge prompt format and the masking objectives' `<|mask|>` are
in the vocabulary from the start, so training never has to grow the embeddings for them.

Training is deterministic: the same files in the same order give a byte-identical
tokenizer.json (tests/e2e/test_tokenizer_train.py).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from lmforge.data.formats import FORMATS
from lmforge.data.streaming import TextSource, documents
from lmforge.errors import LmforgeError

BYTE_ALPHABET = len(pre_tokenizers.ByteLevel.alphabet())  # 256
END_OF_TEXT, PADDING = "<|endoftext|>", "<|padding|>"
RECORD = "lmforge_tokenizer.json"
"""How the tokenizer was trained, written beside it."""
_TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", RECORD}


def train_bpe_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    special_tokens: list[str],
    bos: str,
    eos: str,
    pad: str,
    split_digits: bool = False,
    show_progress: bool = False,
) -> PreTrainedTokenizerFast:
    """A byte-level BPE of at most `vocab_size` tokens (fewer when the texts hold fewer
    merges), `special_tokens` first (ids 0, 1, ...), then the 256 byte symbols, then the
    merges. `split_digits`: every digit its own pre-token (the demo's arithmetic)."""
    backend = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.pre_tokenizer = (
        pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
        if split_digits
        else byte_level
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos, eos_token=eos, pad_token=pad)
    extra = [t for t in special_tokens if t not in (bos, eos, pad)]
    if extra:  # marked special in the wrapper too: never split, skipped when decoding
        tokenizer.add_special_tokens({"additional_special_tokens": extra}, replace_extra_special_tokens=False)
    return tokenizer


def prompt_format_tokens() -> list[str]:
    """The special tokens of every prompt format and of the masking objectives, in a fixed
    order (the formats' declaration order)."""
    from lmforge.objectives.remask import MASK_TOKEN

    tokens = [t for prompt_format in FORMATS.values() for t in prompt_format.special_tokens(None)]
    return list(dict.fromkeys([END_OF_TEXT, PADDING, *tokens, MASK_TOKEN]))


@dataclass(frozen=True)
class TokenizerRequest:
    data: list[str]
    vocab_size: int
    output: Path
    text_field: str = "text"
    overwrite: bool = False
    show_progress: bool = True


@dataclass
class _Counted:
    """Documents of every file in order, counted as they stream past the trainer."""

    sources: list[TextSource]
    documents: int = 0
    characters: int = 0

    def __iter__(self) -> Iterator[str]:
        for source in self.sources:
            for text in documents(source):
                self.documents += 1
                self.characters += len(text)
                yield text


def _check_output(output: Path, overwrite: bool) -> None:
    """An existing non-empty --output is replaced only with --overwrite, and only when it
    holds nothing but a tokenizer's files (never someone else's directory)."""
    if output.exists() and not output.is_dir():
        raise LmforgeError(f"--output {output}: exists and is not a directory")
    if not output.is_dir() or not any(output.iterdir()):
        return
    if not overwrite:
        raise LmforgeError(f"--output {output}: directory exists and is not empty; pass --overwrite to replace it")
    foreign = sorted(p.name for p in output.iterdir() if p.name not in _TOKENIZER_FILES)
    if foreign:
        raise LmforgeError(
            f"--output {output}: holds files that are not a tokenizer's ({', '.join(foreign[:3])}); "
            "not replacing it, choose another directory"
        )


def train_tokenizer(request: TokenizerRequest) -> tuple[PreTrainedTokenizerFast, int]:
    """Train on the request's files and save to request.output (replaced whole, from a
    staging directory); (the tokenizer, documents read)."""
    for path in request.data:
        if not Path(path).is_file():
            raise LmforgeError(f"--data {path}: no such file")
    specials = prompt_format_tokens()
    smallest = BYTE_ALPHABET + len(specials)
    if request.vocab_size < smallest:
        raise LmforgeError(
            f"--vocab-size {request.vocab_size}: must be at least {smallest} "
            f"({BYTE_ALPHABET} byte symbols + {len(specials)} special tokens)"
        )
    output = request.output
    _check_output(output, request.overwrite)
    corpus = _Counted([TextSource(path, text_field=request.text_field) for path in request.data])
    tokenizer = train_bpe_tokenizer(
        corpus,
        request.vocab_size,
        specials,
        bos=END_OF_TEXT,
        eos=END_OF_TEXT,
        pad=PADDING,
        show_progress=request.show_progress,
    )
    if corpus.documents == 0:
        raise LmforgeError(f"--data {' '.join(request.data)}: no documents (empty lines are skipped)")
    staging = output.with_name(output.name + ".tmp")
    if staging.exists():
        shutil.rmtree(staging)  # our own leftover from an interrupted run
    tokenizer.save_pretrained(str(staging))
    record = {
        "data": list(request.data),
        "text_field": request.text_field,
        "vocab_size": request.vocab_size,
        "tokens": len(tokenizer),
        "documents": corpus.documents,
        "characters": corpus.characters,
        "special_tokens": specials,
    }
    (staging / RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    if output.exists():
        shutil.rmtree(output)  # checked above: empty, or only a tokenizer's files
    staging.rename(output)
    return tokenizer, corpus.documents
