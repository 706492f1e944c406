"""Attention for padding-free training batches: each example attends to itself only.

A padding-free batch is one row of several examples back to back, their position ids restarting at
0. transformers' SDPA path turns those ids into a block-diagonal causal mask over the whole row and
computes every query against every key under it: for eight examples of equal length, eight times the
score entries that the examples need, and, because of the mask, grouped-query keys and values copied
once per query head. Here the row is cut at the restarts instead:

- on CUDA (bf16/fp16), one variable-length flash-attention call per layer over the whole row
  (PyTorch's own kernel: `torch.nn.attention.varlen.varlen_attn`, or on PyTorch before 2.12, whose
  varlen_attn lacks grouped-query attention, the same aten flash operators it wraps);
- elsewhere (CPU), PyTorch's SDPA example by example, with `is_causal` and `enable_gqa`.

Either way the same attention, with neither the cross-example nor the future half computed. Anything
else (a padded batch, generation with a KV cache) goes to transformers' own SDPA unchanged.

Unsloth has the same per-layer varlen route for its packed batches, but takes it only where
`varlen_attn` has `enable_gqa` (PyTorch 2.12+, the lab's pinned version); `use_unsloth_varlen`
gives it the aten route on older PyTorch, so that a GPU image with PyTorch 2.11 trains as the pinned
install does.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

# The name under which the model's config selects this function (transformers' AttentionInterface).
ATTENTION_NAME = "lab_packed_sdpa"
_layout_cache: list[Any] = [None, None]  # [position_ids tensor, its layout]: one forward's layers share it
_unsloth_shipped: dict[str, tuple[Any, bool]] = {}  # Unsloth's own varlen settings, before any change
# The routes packed rows took in this process ("varlen", "per-example"): metrics record what ran, not what
# the settings meant to run.
routes_taken: set[str] = set()


def example_bounds(position_ids: Any, length: int) -> list[tuple[int, int]] | None:
    """(start, end) of each example in a one-row padding-free batch, or None when the row holds one
    sequence or the ids are not such a batch (several rows, or a length other than the queries')."""
    if position_ids is None or position_ids.ndim != 2 or position_ids.shape != (1, length):
        return None
    starts = (position_ids[0] == 0).nonzero().flatten().tolist()
    if len(starts) < 2 or starts[0] != 0:
        return None
    return list(zip(starts, starts[1:] + [length], strict=True))


def _row_layout(position_ids: Any, length: int) -> tuple[list[tuple[int, int]], Any] | None:
    """example_bounds and the cumulative lengths as an int32 tensor on the ids' device, computed once
    per forward pass (every layer gets the same position_ids tensor): one host sync, not one a layer."""
    if _layout_cache[0] is position_ids and position_ids is not None:
        return _layout_cache[1]
    bounds = example_bounds(position_ids, length)
    layout = None
    if bounds is not None:
        import torch

        ends = [0] + [end for _, end in bounds]
        layout = (bounds, torch.tensor(ends, dtype=torch.int32, device=position_ids.device))
    _layout_cache[:] = [position_ids, layout]
    return layout


@functools.cache
def _flash_varlen() -> Any:
    """Causal variable-length flash attention through aten's flash operators (what varlen_attn wraps),
    for PyTorch whose varlen_attn takes no `enable_gqa`; the kernel itself handles grouped queries.
    Built on first use: this module is imported before torch may be."""
    import torch

    class FlashVarlen(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, query: Any, key: Any, value: Any, cu_seqlens: Any, max_len: int, scale: float | None):
            out, lse, rng_state, unused, _ = torch.ops.aten._flash_attention_forward(
                query, key, value, cu_seqlens, cu_seqlens, max_len, max_len, 0.0, True, False, scale=scale)
            ctx.save_for_backward(query, key, value, out, lse, cu_seqlens, rng_state, unused)
            ctx.max_len, ctx.scale = max_len, scale
            return out

        @staticmethod
        def backward(ctx: Any, grad_out: Any):
            query, key, value, out, lse, cu_seqlens, rng_state, unused = ctx.saved_tensors
            dq, dk, dv = torch.ops.aten._flash_attention_backward(
                grad_out.contiguous(), query, key, value, out, lse, cu_seqlens, cu_seqlens, ctx.max_len,
                ctx.max_len, 0.0, True, rng_state, unused, scale=ctx.scale)
            return dq, dk, dv, None, None, None

    return FlashVarlen


@functools.cache
def public_varlen() -> Any:
    """PyTorch's varlen_attn where it takes grouped-query attention (2.12+), else None."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    parameters = inspect.signature(varlen_attn).parameters
    return varlen_attn if {"enable_gqa", "window_size"} <= parameters.keys() else None


def varlen_causal(query: Any, key: Any, value: Any, cu_seqlens: Any, max_len: int, scale: float | None,
                  use_public: bool | None = None) -> Any:
    """Causal attention of each segment of a packed row: query (T, Hq, D), key and value (T, Hkv, D),
    segments cut at cu_seqlens (int32, on the GPU); returns (T, Hq, D). use_public: PyTorch's
    varlen_attn (None: where it takes grouped queries) or the aten operators it wraps."""
    public = public_varlen() if use_public is not False else None
    if use_public and public is None:
        raise RuntimeError("this PyTorch's varlen_attn takes no enable_gqa (PyTorch 2.12+ does)")
    if public is not None:
        return public(query, key, value, cu_seqlens, cu_seqlens, max_len, max_len, scale=scale,
                      window_size=(-1, 0), enable_gqa=key.shape[1] != query.shape[1])
    return _flash_varlen().apply(query, key, value, cu_seqlens, max_len, scale)


def varlen_dtype(query: Any, dropout: float) -> Any:
    """The half-precision dtype the flash varlen kernel computes this call in, or None where it does not
    apply (CPU, fp32 outside autocast, dropout, heads wider than 256). Under autocast, the autocast dtype:
    on a k-bit base, peft keeps the norms in fp32, so queries arrive in fp32 and SDPA would cast them."""
    import torch

    if not query.is_cuda or dropout != 0.0 or query.shape[-1] > 256:
        return None
    dtype = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else query.dtype
    half = dtype in (torch.bfloat16, torch.float16) and torch.backends.cuda.is_flash_attention_available()
    return dtype if half else None


def packed_sdpa(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float = 0.0,
                scaling: float | None = None, **kwargs: Any) -> tuple[Any, None]:
    """An AttentionInterface function: per-example causal attention on a padding-free row (no KV
    cache, so keys and values are as long as the queries), transformers' SDPA otherwise. Inputs are
    (1, heads, T, D); the output is (1, T, heads, D), as transformers' attention functions return."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    layout = _row_layout(kwargs.get("position_ids"), query.shape[2])
    if layout is None or key.shape[2] != query.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    bounds, cu_seqlens = layout
    dtype = varlen_dtype(query, dropout)
    routes_taken.add("varlen" if dtype is not None else "per-example")
    if dtype is not None:
        rows = [tensor[0].transpose(0, 1).to(dtype) for tensor in (query, key, value)]  # (T, heads, D)
        longest = max(end - start for start, end in bounds)
        return varlen_causal(*rows, cu_seqlens, longest, scaling)[None], None
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


def _unsloth_varlen_attn(query: Any, key: Any, value: Any, cu_seq_q: Any, cu_seq_k: Any, max_q: int, max_k: int, *,
                         scale: float | None = None, window_size: tuple[int, int] = (-1, -1),
                         enable_gqa: bool = False) -> Any:
    """varlen_attn's signature over varlen_causal, for the calls Unsloth makes: causal, equal q/k cuts."""
    if tuple(window_size) != (-1, 0) or cu_seq_k is not cu_seq_q or max_q != max_k:
        raise NotImplementedError(f"varlen attention with window {window_size} or separate key cuts")
    routes_taken.add("varlen")
    return varlen_causal(query, key, value, cu_seq_q, max_q, scale, use_public=False)


def use_unsloth_varlen(on: bool) -> bool:
    """on: give Unsloth's packed-batch attention the varlen route where its PyTorch lacks the public
    one; off: leave Unsloth as shipped (undoing an earlier call in this process). Returns whether
    Unsloth now takes a varlen route (its own on PyTorch 2.12+)."""
    import torch

    try:
        from unsloth.utils import attention_dispatch
    except ImportError:
        return False
    if not hasattr(attention_dispatch, "_TORCH_VARLEN_ATTN"):
        return False  # an Unsloth without the varlen route keeps its own attention
    shipped = _unsloth_shipped.setdefault("varlen", (attention_dispatch._TORCH_VARLEN_ATTN,
                                                     attention_dispatch._LEAN_VARLEN))
    if on and shipped[0] is None and torch.cuda.is_available():
        attention_dispatch._TORCH_VARLEN_ATTN = _unsloth_varlen_attn
        attention_dispatch._LEAN_VARLEN = False  # its lean path reads version-specific torch internals
    else:
        attention_dispatch._TORCH_VARLEN_ATTN, attention_dispatch._LEAN_VARLEN = shipped
    return attention_dispatch._TORCH_VARLEN_ATTN is not None


def attention_path(model: Any, backend: str, device: str) -> str:
    """What computed padding-free batches' attention, for metrics/train.json's `ran`: on the hf backend the
    route packed rows took since the model loaded (lab.train.attention's), else what the settings select."""
    taken = " + ".join(sorted(routes_taken))
    if backend == "unsloth":
        try:
            from unsloth.utils import attention_dispatch
        except ImportError:
            return "unsloth"
        varlen = getattr(attention_dispatch, "_TORCH_VARLEN_ATTN", None)
        if varlen is None:
            return "unsloth per-example"
        return "unsloth varlen (flash)" if varlen is _unsloth_varlen_attn else "unsloth varlen (flash, its own)"
    if getattr(model.config, "_attn_implementation", None) != ATTENTION_NAME:
        return f"transformers {model.config._attn_implementation} (masked)"
    if taken:
        return {"varlen": "varlen (flash)", "per-example": "per-example sdpa"}.get(taken, taken)
    return "varlen (flash)" if device == "cuda" else "per-example sdpa"
