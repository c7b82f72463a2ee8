"""Prefix sharing: each prompt computed once for all its candidate responses (issue 12, item 3).

A group (one prompt, N responses) becomes ONE row instead of N rows `[prompt | r_i]`:

    row:       p0 p1 p2 | a0 a1 | b0 b1 b2 | pad
    position:   0  1  2 |  3  4 |  3  4  5 |  0     (every response restarts at the prompt length)

    attention (row = query, column = key; x = attends):
              p0 p1 p2 a0 a1 b0 b1 b2 pad
        p0    x
        p1    x  x
        p2    x  x  x
        a0    x  x  x  x
        a1    x  x  x  x  x
        b0    x  x  x           x             b never sees a: as if a were not in the row
        b1    x  x  x           x  x
        b2    x  x  x           x  x  x
        pad                                x  padding sees only itself (no all-masked softmax row)

With these positions (RoPE only sees positions) and this mask, every response token computes
exactly what it computes in its own row `[prompt | r_i]`, so log-probs and gradients are the
same; the prompt's forward and backward are paid once instead of N times.

Label shift: lmforge's convention (objectives/ce.py `label_positions`) is that the logits at
position t predict labels[t + 1]. In the shared row that holds inside a response, but the FIRST
token of every response is predicted from the LAST PROMPT TOKEN (p2 above), not from the token
just before it in the row (a1 for b0). `SharedPrefixBatch.predictor_positions` records, per
label position, which position's logits predict it; `shared_sequence_logps` gathers with it.

Mask convention (transformers 5.24, read in masking_utils `_preprocess_mask_arguments` and the
attention functions): a 4-D `attention_mask` [B, 1, T, T] is passed to the attention function
as-is. SDPA takes either a bool mask (True = attend) or an additive float one, but eager
attention ADDS the mask to the scores, so a bool mask there is silently wrong (True adds 1).
The one form correct for both is additive float: 0.0 = attend, `torch.finfo(dtype).min` =
masked, in the dtype of the attention scores.

When shared rows are used (`supports_shared_prefix`), the rule is:
1. the model's `config._attn_implementation` must be in `SHARED_PREFIX_ATTENTION` ("sdpa",
   "eager"): flash-attention kernels take no arbitrary mask and flex attention wants a
   BlockMask; and
2. a one-time probe (cached per model class and attention implementation) must find equal
   response log-probs, shared vs unshared, on a tiny input. This catches model classes that
   build their own mask and ignore ours, or reject a 4-D mask (an exception counts as a no).
Otherwise `response_logps` falls back to one row per response, with one log line.

Hand-written on purpose: no maintained library packs shared-prefix rows for Hugging Face models
(TRL's and axolotl's packers concatenate independent sequences; they do not share a prefix).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from lmforge.data.tokenize import IGNORE_INDEX
from lmforge.objectives.head import model_outputs, select_rows, token_nll
from lmforge.objectives.rank import sequence_logps

SHARED_PREFIX_ATTENTION = frozenset({"sdpa", "eager"})

logger = logging.getLogger(__name__)


@dataclass
class ResponseGroup:
    """One prompt and its candidate responses (token ids). `labels`, if given, has one list
    per response, as long as that response, IGNORE_INDEX on tokens not to score; without it
    every response token is scored."""

    prompt: list[int]
    responses: list[list[int]]
    labels: list[list[int]] | None = None

    def response_labels(self, index: int) -> list[int]:
        return list(self.responses[index]) if self.labels is None else list(self.labels[index])


@dataclass
class SharedPrefixBatch:
    """Padded shared rows, one per group. Responses are numbered group-major (group 0's
    responses in order, then group 1's, ...), the order `pack_unshared` lists its rows in.

    input_ids, position_ids, labels, predictor_positions, response_index: [B, T] (long)
    attention_mask: [B, 1, T, T] additive float (0 = attend, dtype min = masked)
    spans: [R, 3] (row, start, length) of each response in the packed rows
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor  # aligned with input_ids (unshifted); IGNORE_INDEX on prompt and padding
    predictor_positions: torch.Tensor  # position whose logits predict labels[t]; -1 where unlabelled
    response_index: torch.Tensor  # which response (0..R-1) position t belongs to; -1 on prompt/padding
    spans: torch.Tensor
    group_sizes: list[int]

    @property
    def num_responses(self) -> int:
        return self.spans.shape[0]

    def model_inputs(self) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask, "position_ids": self.position_ids}

    def to(self, device: torch.device | str) -> SharedPrefixBatch:
        moved = {
            name: getattr(self, name).to(device)
            for name in (
                "input_ids",
                "attention_mask",
                "position_ids",
                "labels",
                "predictor_positions",
                "response_index",
                "spans",
            )
        }
        return SharedPrefixBatch(**moved, group_sizes=self.group_sizes)


def pack_shared_prefix(
    groups: list[ResponseGroup], pad_token_id: int = 0, mask_dtype: torch.dtype = torch.float32
) -> SharedPrefixBatch:
    """Pack each group into one row `[prompt | r_1 | ... | r_N]`, right-padded to the longest
    row; see the module docstring for the mask and positions. `mask_dtype` should be the dtype
    of the attention scores (the model's dtype), as SDPA wants the mask in the query's dtype."""
    if not groups:
        raise ValueError("pack_shared_prefix needs at least one group")
    row_lengths = [len(g.prompt) + sum(len(r) for r in g.responses) for g in groups]
    rows, width = len(groups), max(row_lengths)
    input_ids = torch.full((rows, width), pad_token_id, dtype=torch.long)
    position_ids = torch.zeros((rows, width), dtype=torch.long)
    labels = torch.full((rows, width), IGNORE_INDEX, dtype=torch.long)
    predictor_positions = torch.full((rows, width), -1, dtype=torch.long)
    response_index = torch.full((rows, width), -1, dtype=torch.long)
    allowed = torch.zeros((rows, width, width), dtype=torch.bool)
    spans = []
    for row, group in enumerate(groups):
        prompt_length = len(group.prompt)
        if prompt_length == 0:
            # the first response token would have no position to be predicted from
            raise ValueError("prefix sharing needs a non-empty prompt")
        input_ids[row, :prompt_length] = torch.tensor(group.prompt, dtype=torch.long)
        position_ids[row, :prompt_length] = torch.arange(prompt_length)
        allowed[row, :prompt_length, :prompt_length] = torch.ones(prompt_length, prompt_length).tril().bool()
        start = prompt_length
        for index, response in enumerate(group.responses):
            length = len(response)
            response_labels = group.response_labels(index)
            if len(response_labels) != length:
                raise ValueError(f"response {index}: {len(response_labels)} labels for {length} tokens")
            end = start + length
            spans.append((row, start, length))
            if length:
                input_ids[row, start:end] = torch.tensor(response, dtype=torch.long)
                position_ids[row, start:end] = torch.arange(prompt_length, prompt_length + length)
                labels[row, start:end] = torch.tensor(response_labels, dtype=torch.long)
                # token j is predicted by token j-1 of the same response, token 0 by the last prompt token
                predictors = torch.arange(start - 1, end - 1)
                predictors[0] = prompt_length - 1
                predictor_positions[row, start:end] = torch.where(
                    labels[row, start:end].ne(IGNORE_INDEX), predictors, torch.full_like(predictors, -1)
                )
                response_index[row, start:end] = len(spans) - 1
                allowed[row, start:end, :prompt_length] = True
                allowed[row, start:end, start:end] = torch.ones(length, length).tril().bool()
            start = end
        padding = torch.arange(row_lengths[row], width)
        allowed[row, padding, padding] = True  # padding attends to itself: never a fully masked softmax row
    attention_mask = torch.zeros((rows, 1, width, width), dtype=mask_dtype)
    attention_mask.masked_fill_(~allowed.unsqueeze(1), torch.finfo(mask_dtype).min)
    return SharedPrefixBatch(
        input_ids,
        attention_mask,
        position_ids,
        labels,
        predictor_positions,
        response_index,
        torch.tensor(spans, dtype=torch.long).reshape(-1, 3),
        [len(g.responses) for g in groups],
    )


def shared_sequence_logps(logits: torch.Tensor, batch: SharedPrefixBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Per response: sum of log p over its label tokens, and the label-token count, from the
    shared rows' logits. Same values (and order) as `rank.sequence_logps` over `pack_unshared`.

    logits [B, T, V] -> sums [R], counts [R]
    """
    scored = batch.predictor_positions.ge(0)  # [B, T]
    rows, positions = scored.nonzero(as_tuple=True)
    # only the scored positions go through the softmax, as in ce.label_positions. The last
    # prompt position predicts every response's first token, so positions repeat: index_select
    # (backward: index_add, in index order) keeps the gradient deterministic, where advanced
    # indexing's backward (index_put with accumulate) adds the repeats in thread order on CPU
    width = batch.input_ids.shape[1]
    flat = rows * width + batch.predictor_positions[rows, positions]
    logp = -token_nll(select_rows(logits, flat), batch.labels[rows, positions])  # [N]
    owners = batch.response_index[rows, positions]
    sums = torch.zeros(batch.num_responses, dtype=logp.dtype, device=logp.device).index_add(0, owners, logp)
    counts = torch.zeros(batch.num_responses, dtype=torch.long, device=logp.device).index_add(
        0, owners, torch.ones_like(owners)
    )
    return sums, counts


def pack_unshared(groups: list[ResponseGroup], pad_token_id: int = 0) -> dict[str, torch.Tensor]:
    """The fallback (and the reference): one right-padded row `[prompt | r_i]` per response,
    group-major, with a 2-D attention mask and lmforge's unshifted labels (prompt IGNORE_INDEX)."""
    sequences, sequence_labels = [], []
    for group in groups:
        for index, response in enumerate(group.responses):
            sequences.append(list(group.prompt) + list(response))
            sequence_labels.append([IGNORE_INDEX] * len(group.prompt) + group.response_labels(index))
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    labels = torch.full((len(sequences), width), IGNORE_INDEX, dtype=torch.long)
    for row, (tokens, row_labels) in enumerate(zip(sequences, sequence_labels)):
        input_ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        attention_mask[row, : len(tokens)] = 1
        labels[row, : len(tokens)] = torch.tensor(row_labels, dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def _inner_model(model):
    """The transformers model under DDP / DeepSpeed / compile wrappers (for its config only)."""
    while True:
        inner = getattr(model, "module", None)
        if inner is None:
            inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, torch.nn.Module):
            return model
        model = inner


def attention_implementation(model) -> str | None:
    config = getattr(_inner_model(model), "config", None)
    return getattr(config, "_attn_implementation", None)


def _model_dtype(model) -> torch.dtype:
    return next(_inner_model(model).parameters()).dtype


def _model_device(model) -> torch.device:
    return next(_inner_model(model).parameters()).device


def _forward(model, inputs: dict[str, torch.Tensor]):
    """Logits, or the hidden states the head is applied to at scored positions only."""
    return model_outputs(model, **inputs)


# (model class, attention implementation) -> probe verdict; one probe per process and kind
_PROBE_VERDICTS: dict[tuple[type, str], bool] = {}


def probe_shared_prefix(model) -> bool:
    """Whether shared rows give the unshared log-probs on a tiny input (two groups, ragged
    prompts and responses). Dropout is switched off for the probe and every module's train
    flag restored afterwards. Any exception (a model rejecting 4-D masks) counts as a no."""
    inner = _inner_model(model)
    vocab = int(getattr(inner.config, "vocab_size", 32))
    generator = torch.Generator().manual_seed(0)

    def tokens(count: int) -> list[int]:
        return torch.randint(0, min(vocab, 1000), (count,), generator=generator).tolist()

    groups = [
        ResponseGroup(tokens(3), [tokens(4), tokens(2), tokens(3)]),
        ResponseGroup(tokens(5), [tokens(2), tokens(4)]),
    ]
    training_flags = [(module, module.training) for module in inner.modules()]
    inner.eval()
    try:
        with torch.no_grad():
            device, dtype = _model_device(model), _model_dtype(model)
            shared = pack_shared_prefix(groups, mask_dtype=dtype).to(device)
            shared_sums, _ = shared_sequence_logps(_forward(model, shared.model_inputs()), shared)
            unshared = {k: v.to(device) for k, v in pack_unshared(groups).items()}
            labels = unshared.pop("labels")
            unshared_sums, _ = sequence_logps(_forward(model, unshared), labels)
    except Exception as error:  # noqa: BLE001 - any failure means "not supported"
        logger.info("prefix-sharing probe failed with %s: %s", type(error).__name__, error)
        return False
    finally:
        for module, was_training in training_flags:
            module.training = was_training
    # per-token tolerance: kernel-order noise of the dtype, far below what an ignored mask or ignored
    # position ids change on a random input
    per_token = 1e-4 if dtype in (torch.float32, torch.float64) else 5e-2
    tolerance = per_token * max(1, int(shared.labels.ne(IGNORE_INDEX).sum()))
    return bool((shared_sums.float() - unshared_sums.float()).abs().max() <= tolerance)


def supports_shared_prefix(model) -> bool:
    """The rule of the module docstring: whitelisted attention implementation, then a cached probe."""
    implementation = attention_implementation(model)
    if implementation not in SHARED_PREFIX_ATTENTION:
        return False
    key = (type(_inner_model(model)), implementation)
    if key not in _PROBE_VERDICTS:
        _PROBE_VERDICTS[key] = probe_shared_prefix(model)
    return _PROBE_VERDICTS[key]


_FALLBACK_LOGGED: set[tuple[type, str | None]] = set()


def response_logps(
    model, groups: list[ResponseGroup], pad_token_id: int = 0, shared: bool | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequence log-prob sums and label counts [R] of every response of every group (group-major),
    computed on shared rows when the model supports them (`shared=None`: decide with
    `supports_shared_prefix`), else on one row per response with a one-time log line."""
    if shared is None:
        shared = supports_shared_prefix(model)
        if not shared:
            key = (type(_inner_model(model)), attention_implementation(model))
            if key not in _FALLBACK_LOGGED:
                _FALLBACK_LOGGED.add(key)
                logger.warning(
                    "prefix sharing unavailable for %s with attention %r: one row per response", key[0].__name__, key[1]
                )
    device = _model_device(model)
    if shared:
        batch = pack_shared_prefix(groups, pad_token_id, mask_dtype=_model_dtype(model)).to(device)
        return shared_sequence_logps(_forward(model, batch.model_inputs()), batch)
    rows = {k: v.to(device) for k, v in pack_unshared(groups, pad_token_id).items()}
    labels = rows.pop("labels")
    return sequence_logps(_forward(model, rows), labels)
