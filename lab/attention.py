"""Attention for padding-free training batches on the transformers + peft backend on CPU: each
example attends to itself only, computed example by example.

A padding-free batch is one row of several examples back to back, their position ids restarting at
0. transformers' SDPA path turns those ids into a block-diagonal causal mask over the whole row and
computes every query against every key under it: for two examples of equal length, four times the
score entries that the examples need, and, because of the mask, grouped-query keys and values
copied once per query head. Here the row is cut at the restarts and each example runs through
PyTorch's SDPA with `is_causal` and `enable_gqa`: the same attention, with neither the cross-example
nor the future half computed, nor the copies. Anything else (a padded batch, generation with a KV
cache) goes to transformers' own SDPA unchanged.
"""

from __future__ import annotations

from typing import Any

# The name under which the model's config selects this function (transformers' AttentionInterface).
ATTENTION_NAME = "lab_packed_sdpa"


def example_bounds(position_ids: Any, length: int) -> list[tuple[int, int]] | None:
    """(start, end) of each example in a one-row padding-free batch, or None when the row holds one
    sequence or the ids are not such a batch (several rows, or a length other than the queries')."""
    if position_ids is None or position_ids.ndim != 2 or position_ids.shape != (1, length):
        return None
    starts = (position_ids[0] == 0).nonzero().flatten().tolist()
    if len(starts) < 2 or starts[0] != 0:
        return None
    return list(zip(starts, starts[1:] + [length], strict=True))


def packed_sdpa(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float = 0.0,
                scaling: float | None = None, **kwargs: Any) -> tuple[Any, None]:
    """An AttentionInterface function: per-example causal SDPA on a padding-free row (no KV cache,
    so keys and values are as long as the queries), transformers' SDPA otherwise."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    bounds = example_bounds(kwargs.get("position_ids"), query.shape[2])
    if bounds is None or key.shape[2] != query.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    outputs = [sdpa(query[:, :, start:end], key[:, :, start:end], value[:, :, start:end], dropout_p=dropout,
                    scale=scaling, is_causal=True, enable_gqa=key.shape[1] != query.shape[1])
               for start, end in bounds]
    return torch.cat(outputs, dim=2).transpose(1, 2).contiguous(), None


def use_packed_attention(model: Any) -> bool:
    """Route a transformers model's attention through packed_sdpa, if it runs on SDPA; returns
    whether it now does. The mask function stays SDPA's, which packed_sdpa ignores for packed rows."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return False
    AttentionInterface.register(ATTENTION_NAME, packed_sdpa)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION_NAME, sdpa_mask)
    model.set_attn_implementation(ATTENTION_NAME)
    return model.config._attn_implementation == ATTENTION_NAME
