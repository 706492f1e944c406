"""Attention for the static decoder (lab.eval.decoder): grouped-query SDPA that reads the KV cache
in place, and, stepping eagerly, only the part of the cache each group of rows can attend to.

A batch's cache is as wide as its longest prompt plus the new tokens, every row left-padded to that
width, and future slots are empty until their step. A one-token decode step reads every key and
value it is given, so on CPU, where that read is the step's cost beyond the weights, the rows of
short prompts would pay for the longest one's padding and every step for the slots not yet written.
Eager steps therefore pass `decode_spans`: contiguous runs of rows with the first cache slot any of
them uses, and the end of the written slots; each run attends over that window only. The masked
slots left out would only have added exact zeros to the softmax.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

ATTENTION_NAME = "lab_static_gqa_sdpa"
# A run of rows ends when the padded key slots its rows would read in vain (its first slot against
# each row's own first) pass this many. On the fine-tuned embedded model, 2 CPU cores, one row's key
# and value slot costs ~4 us a step over all layers and one more run ~1 ms a step (30 more SDPA calls).
_SPLIT_AT_PAD_SLOTS = 256


@dataclass(frozen=True)
class DecodeSpans:
    """Which cache slots a decode step's rows attend over: (first row, end row, first slot) per run
    of rows, and the end of the written slots (the new token's slot + 1)."""

    runs: tuple[tuple[int, int, int], ...]
    end: int


def row_runs(first_slots: list[int]) -> tuple[tuple[int, int, int], ...]:
    """Rows (in batch order) cut into contiguous runs whose padded slots stay within
    _SPLIT_AT_PAD_SLOTS: (first row, end row, the run's first slot). Rows sorted by prompt length,
    longest first (as lab.eval.generation batches them), make the runs tight."""
    runs: list[tuple[int, int, int]] = []
    start_row, first, padded = 0, None, 0
    for row, slot in enumerate(first_slots):
        if first is not None:
            low = min(first, slot)
            # Moving the run's first slot earlier pads every row already in it.
            extra = (first - low) * (row - start_row) + (slot - low)
            if padded + extra <= _SPLIT_AT_PAD_SLOTS:
                first, padded = low, padded + extra
                continue
            runs.append((start_row, row, first))
        start_row, first, padded = row, slot, 0
    if first is not None:
        runs.append((start_row, len(first_slots), first))
    return tuple(runs)


def gqa_sdpa(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float = 0.0,
             scaling: float | None = None, decode_spans: DecodeSpans | None = None,
             **kwargs: Any) -> tuple[Any, None]:
    """SDPA for the static decoder. A one-token decode step folds each key/value head's group of
    query heads into the query-length axis, so the cache is read in place, and with `decode_spans`
    each run of rows reads only its window of the cache; everything else (the prefill) is
    transformers' own SDPA path."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    batch, heads, q_len, dim = query.shape
    kv_heads = key.shape[1]
    if q_len != 1 or attention_mask is None or attention_mask.ndim != 4 or heads % kv_heads:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    # Query head h attends with key/value head h // group (transformers' repeat_kv order).
    folded = query.reshape(batch, kv_heads, heads // kv_heads, dim)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    if decode_spans is None:
        mask = attention_mask[:, :, :, : key.shape[2]]  # [batch, 1, 1, keys]: broadcast over heads and the group
        out = sdpa(folded, key, value, attn_mask=mask, scale=scaling)
    else:
        end = decode_spans.end
        out = torch.cat([sdpa(folded[top:bottom], key[top:bottom, :, first:end], value[top:bottom, :, first:end],
                              attn_mask=attention_mask[top:bottom, :, :, first:end], scale=scaling)
                         for top, bottom, first in decode_spans.runs])
    return out.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous(), None


@contextlib.contextmanager
def static_attention(model: Any):
    """Route the model's attention through gqa_sdpa for the duration, then restore it."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION_NAME, gqa_sdpa)
    previous = model.config._attn_implementation
    model.config._attn_implementation = ATTENTION_NAME
    try:
        yield
    finally:
        model.config._attn_implementation = previous
