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

ReMask's shared prompt (`pack_shared_prompt`): the two passes of ReMask / ReMask-CoT read
the same sequence x and its masked copy m, equal up to the first masked index P. The row
`[x[:P] | x[P:L] | m[P:L]]` is a group with prompt x[:P] and two "responses", so the tokens
before P are computed once instead of twice. Unlike candidate responses, the shared part
carries labels too (e.g. earlier assistant turns of a chat): their predictions are the same
for both passes and are read from the one shared position.

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


def _log_fallback_once(model) -> None:
    key = (type(_inner_model(model)), attention_implementation(model))
    if key not in _FALLBACK_LOGGED:
        _FALLBACK_LOGGED.add(key)
        logger.warning(
            "prefix sharing unavailable for %s with attention %r: one row per response", key[0].__name__, key[1]
        )


def shared_prefix_or_log(model) -> bool:
    """`supports_shared_prefix`, with the one-time log line when it says no."""
    supported = supports_shared_prefix(model)
    if not supported:
        _log_fallback_once(model)
    return supported


def response_logps(
    model, groups: list[ResponseGroup], pad_token_id: int = 0, shared: bool | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequence log-prob sums and label counts [R] of every response of every group (group-major),
    computed on shared rows when the model supports them (`shared=None`: decide with
    `supports_shared_prefix`), else on one row per response with a one-time log line."""
    if shared is None:
        shared = shared_prefix_or_log(model)
    device = _model_device(model)
    if shared:
        batch = pack_shared_prefix(groups, pad_token_id, mask_dtype=_model_dtype(model)).to(device)
        return shared_sequence_logps(_forward(model, batch.model_inputs()), batch)
    rows = {k: v.to(device) for k, v in pack_unshared(groups, pad_token_id).items()}
    labels = rows.pop("labels")
    return sequence_logps(_forward(model, rows), labels)


# --------------------------------------------------------------------------- ReMask's shared prompt


@dataclass
class SharedPromptRows:
    """The clean and the masked pass of a ReMask batch as shared rows `[x[:P] | x[P:L] | m[P:L]]`.

    rows: the packed rows (`rows.model_inputs()` is the forward's input)
    full_index, masked_index: [N] flat index (row * width + position) into the packed rows'
        outputs of the position predicting each label, for the clean and the masked pass;
        equal where the predictor lies in the shared prefix (position < P)
    targets: [N] the labels, in `ce.label_positions` order (row-major over labels[:, 1:])
    mask: [B, T-1] labels[:, 1:] != IGNORE_INDEX, as `ce.label_positions` returns it
    prefix_lengths: [B] P per row (the row length where nothing differs)
    """

    rows: SharedPrefixBatch
    full_index: torch.Tensor
    masked_index: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor
    prefix_lengths: torch.Tensor


def pack_shared_prompt(
    input_ids: torch.Tensor,
    masked_input_ids: torch.Tensor,
    labels: torch.Tensor,
    lengths: torch.Tensor,
    pad_token_id: int = 0,
    mask_dtype: torch.dtype = torch.float32,
) -> SharedPromptRows | None:
    """Shared rows for a right-padded batch whose row b has `lengths[b]` real tokens (no
    packing: positions 0..L-1). P is the first real index where `masked_input_ids` differs;
    a row with nothing masked has P = L and becomes `[x]` alone (both passes read it).
    None when some row differs at index 0 (no position left to predict from; the caller
    falls back to two full rows).

    Label shift (see the module docstring): the label at index s is predicted from s - 1;
    from the shared position for s - 1 < P, so the first masked token's label, at s = P, is
    predicted from P - 1 by both passes; else from s - 1 in the clean copy and from
    L + (s - 1 - P) in the masked copy."""
    width = input_ids.shape[1]
    device = input_ids.device
    lengths = lengths.to(device=device, dtype=torch.long)
    real = torch.arange(width, device=device).unsqueeze(0) < lengths.unsqueeze(1)
    differs = masked_input_ids.ne(input_ids) & real
    prefix = torch.where(differs.any(dim=1), differs.long().argmax(dim=1), lengths)  # [B]
    if bool(prefix.eq(0).any()):
        return None
    clean_rows, masked_rows = input_ids.tolist(), masked_input_ids.tolist()
    groups = [
        ResponseGroup(clean[:p], [clean[p:n], masked[p:n]])
        for clean, masked, p, n in zip(clean_rows, masked_rows, prefix.tolist(), lengths.tolist())
    ]
    rows = pack_shared_prefix(groups, pad_token_id, mask_dtype=mask_dtype).to(device)
    mask = labels[:, 1:].ne(IGNORE_INDEX)
    row, predictor = mask.nonzero(as_tuple=True)  # row-major: the order of labels[:, 1:][mask]
    row_prefix, row_length = prefix[row], lengths[row]
    packed_width = rows.input_ids.shape[1]
    masked_predictor = torch.where(predictor < row_prefix, predictor, row_length + predictor - row_prefix)
    return SharedPromptRows(
        rows,
        row * packed_width + predictor,
        row * packed_width + masked_predictor,
        labels[:, 1:][mask],
        mask,
        prefix,
    )
