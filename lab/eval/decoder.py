"""The lab's greedy decoder over a static KV cache, replayed as a CUDA graph on a GPU.

transformers' `generate` launches ~1,000 small kernels from Python per new token; at the lab's
batch sizes that launch overhead, not the GPU, sets the pace. Here the KV cache is preallocated,
every decode step only updates fixed buffers in place, so one step is captured as a CUDA graph
and replayed for every further token. Attention (lab.eval.span_attention) reads the cached keys and
values in place instead of copying them once per query head (transformers' SDPA path copies them
whenever there is a padding mask). No compilation: the capture costs about one decode step. On CPU
the same loop runs eagerly, which is how the tests pin it token for token against `generate`.
Stepping eagerly, rows that have stopped leave the batch as it goes, and each run of rows attends
over only the cache slots its prompts and the tokens so far fill (part of an eager step's cost grows
with its rows and their keys; a captured graph's buffers are fixed, so there every row runs to the
batch's end over the whole cache).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from lab.eval.span_attention import DecodeSpans, row_runs, static_attention

log = logging.getLogger(__name__)

# Generation-config settings that change greedy choices, which only transformers' generate applies:
# with any of them set to a non-neutral value, the static decoder is not used.
_LOGITS_SETTINGS = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "encoder_no_repeat_ngram_size": 0,
                    "bad_words_ids": None, "suppress_tokens": None, "begin_suppress_tokens": None,
                    "forced_bos_token_id": None, "forced_eos_token_id": None, "sequence_bias": None,
                    "min_length": 0, "min_new_tokens": None, "exponential_decay_length_penalty": None}
_CACHE_ALIGN = 16  # the static cache's length is rounded up to this (aligned attention-mask rows)
_DONE_CHECK_EVERY = 8  # decode steps between checks whether every row has stopped (a host sync)
# Stepping eagerly, finished rows leave the batch once this share of the rows still decoding has
# stopped since they last left. Not at every stop: leaving copies the kept rows' KV cache, while a
# step's cost is mostly fixed (the weights' reads). On the fine-tuned embedded model, 2 CPU cores,
# a batch of 16 with a 562-token prompt: a step costs ~90 ms plus ~6 ms a row, the copy ~2.5 ms a
# kept row; the 64 eval prompts' generation took 67 s dropping a quarter at a time, 70 s dropping
# every stopped row at each check, 72-78 s keeping every row to the batch's end.
_SHRINK_AT_DONE_SHARE = 0.25
# A batch's prompts are prefilled in groups whose padded positions stay within this factor of their real
# tokens (prefill_groups): a group costs one more forward pass of fixed overhead, a pad costs a token's compute.
# On the embedded eval sample in one batch of 64 (2 CPU cores) prefill took 13-15 s at 1.05 (15 groups, 4% pads),
# 14-18 s at 1.1, 16-20 s at 1.3 (5 groups, 26% pads) and 15 s at 1.0 (49 groups, no pads).
_PREFILL_PAD_SLACK = 1.05


def static_decoder_unsupported(model: Any) -> str | None:
    """Why the static decoder cannot reproduce transformers' greedy output for this model, or None."""
    config = model.config
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder model"
    if getattr(config, "_attn_implementation", None) != "sdpa":
        return f"attention implementation {getattr(config, '_attn_implementation', None)!r} (needs sdpa)"
    if getattr(config, "sliding_window", None) or "sliding_attention" in (getattr(config, "layer_types", None) or []):
        return "sliding-window attention"
    generation = model.generation_config
    for name, neutral in _LOGITS_SETTINGS.items():
        if getattr(generation, name, neutral) not in (neutral, None):
            return f"generation_config.{name}={getattr(generation, name)!r} (applied by transformers' generate only)"
    return None


@dataclass
class _DecodeState:
    """The fixed buffers one decode step reads and updates in place (what makes it graph-capturable)."""

    cache: Any
    key_ok: Any  # [rows, cache length] bool: key slots a query may attend to
    tokens: Any  # [rows, max_new_tokens] the chosen tokens
    done: Any  # [rows] bool: row has produced a stop token
    current: Any  # [rows, 1] the token fed to the next step
    position: Any  # [rows, 1] its position id
    slot: Any  # [1] its cache slot
    step_index: Any  # [1] its column in `tokens`
    stop_ids: Any
    width: int  # the prompts' width: the first new token's cache slot
    first_slots: list[int]  # each row's first real cache slot (its prompt's, left-padded)
    runs: tuple[tuple[int, int, int], ...]  # row_runs(first_slots): what eager steps attend over


def prefill_groups(lengths: list[int]) -> list[list[int]]:
    """Rows (indices into `lengths`, longest first) in groups that each prefill at their longest row's
    width: a row joins the current group while the group's padded positions stay within
    _PREFILL_PAD_SLACK of its real tokens. One long prompt among short ones then no longer pads every
    row of the batch to its length (on the embedded eval sample, a 562-token prompt padded 16 rows:
    3,700 real tokens in 9,000 positions)."""
    order = sorted(range(len(lengths)), key=lambda row: -lengths[row])
    groups: list[list[int]] = []
    for row in order:
        group = groups[-1] if groups else None
        if group and lengths[group[0]] * (len(group) + 1) <= _PREFILL_PAD_SLACK * (
                sum(lengths[r] for r in group) + lengths[row]):
            group.append(row)
        else:
            groups.append([row])
    return groups


def _positions(real: Any) -> Any:
    """Position ids of left-padded rows as transformers' generate numbers them (pads get 1)."""
    return (real.long().cumsum(-1) - 1).masked_fill(~real, 1)


def _prefill_rows(model: Any, ids: Any, real: Any, length: int) -> tuple[Any, Any, Any]:
    """Left-padded rows through the model into a fresh static cache of `length` slots: the cache, the
    rows' position ids (_positions) and the last logits."""
    import torch
    from transformers import StaticCache

    width = ids.shape[1]
    slots = torch.arange(length, device=ids.device)
    key_ok = torch.zeros(ids.shape[0], length, dtype=torch.bool, device=ids.device)
    key_ok[:, :width] = real
    positions = _positions(real)
    causal = slots[None, :width, None] >= slots[None, None, :]  # [1, query, key]
    # A pad query sees only itself, so no attention row is empty (an empty one would give NaN keys).
    prefill_mask = (causal & (key_ok[:, None, :] | (slots[:width, None] == slots[None, :])[None]))[:, None]
    cache = StaticCache(config=model.config, max_cache_len=length)
    out = model(input_ids=ids, attention_mask=prefill_mask, position_ids=positions, past_key_values=cache,
                use_cache=True, logits_to_keep=1)
    return cache, positions, out.logits[:, -1]


def _ragged_prefill(model: Any, ids: Any, real: Any, length: int, groups: list[list[int]]) -> tuple[Any, Any]:
    """Each group prefilled alone at its own width, its keys and values then copied into one cache of
    the batch's rows, right-aligned at the batch's width (left padding, as one batch prefill lays them
    out): the cache and the last logits. Pad slots stay masked (key_ok), whatever they hold."""
    import torch
    from transformers import StaticCache

    rows, width = ids.shape
    cache, logits = StaticCache(config=model.config, max_cache_len=length), None
    for group in groups:
        index = torch.tensor(group, device=ids.device)
        group_width = int(real[index].sum(-1).max())
        part, _, part_logits = _prefill_rows(model, ids[index, width - group_width:],
                                             real[index, width - group_width:], group_width)
        if logits is None:
            logits = part_logits.new_empty(rows, part_logits.shape[-1])
            keys = part.layers[0].keys
            cache.early_initialization(rows, keys.shape[1], keys.shape[-1], keys.dtype, keys.device)
        logits[index] = part_logits
        for layer, part_layer in zip(cache.layers, part.layers, strict=True):
            layer.keys[index, :, width - group_width:width] = part_layer.keys
            layer.values[index, :, width - group_width:width] = part_layer.values
    for layer in cache.layers:
        layer.cumulative_length.fill_(width)  # the next token goes to slot `width`, as after one prefill
    return cache, logits


def _prefill(model: Any, ids: Any, mask: Any, max_new_tokens: int, stops: list[int]) -> _DecodeState:
    """Run the left-padded prompts through the model into a fresh static cache (in groups of similar
    lengths: prefill_groups); the first new token."""
    import torch

    device = model.device
    rows, width = ids.shape
    length = -(-(width + max_new_tokens) // _CACHE_ALIGN) * _CACHE_ALIGN
    real = mask.bool()
    key_ok = torch.zeros(rows, length, dtype=torch.bool, device=device)
    key_ok[:, :width] = real
    groups = prefill_groups(real.sum(-1).tolist())
    if len(groups) == 1:
        cache, positions, logits = _prefill_rows(model, ids, real, length)
    else:
        cache, logits = _ragged_prefill(model, ids, real, length, groups)
        positions = _positions(real)
    first = logits.argmax(-1)
    stop_ids = torch.tensor(stops or [-1], device=device)
    tokens = torch.empty(rows, max_new_tokens, dtype=torch.long, device=device)
    tokens[:, 0] = first
    first_slots = [width - length for length in real.sum(-1).tolist()]
    return _DecodeState(cache=cache, key_ok=key_ok, tokens=tokens, done=torch.isin(first, stop_ids),
                        current=first[:, None].clone(), position=positions[:, -1:] + 1,
                        slot=torch.tensor([width], device=device), step_index=torch.tensor([1], device=device),
                        stop_ids=stop_ids, width=width, first_slots=first_slots, runs=row_runs(first_slots))


def _step(model: Any, state: _DecodeState, spans: DecodeSpans | None = None) -> None:
    """One decode step; only in-place updates of fixed buffers, so it can be graph-captured (without
    `spans`, which eager steps pass: lab.eval.span_attention)."""
    import torch

    state.key_ok.index_fill_(1, state.slot, True)
    logits = model(input_ids=state.current, attention_mask=state.key_ok[:, None, None, :],
                   position_ids=state.position, past_key_values=state.cache, use_cache=True,
                   **({"decode_spans": spans} if spans is not None else {})).logits
    chosen = logits[:, -1].argmax(-1)
    state.tokens.index_copy_(1, state.step_index, chosen[:, None])
    state.done.logical_or_(torch.isin(chosen, state.stop_ids))
    state.current.copy_(chosen[:, None])
    state.position.add_(1)
    state.slot.add_(1)
    state.step_index.add_(1)


def _capture(model: Any, state: _DecodeState) -> Any:
    """Run one step eagerly on a side stream (as capture wants: it also warms up the libraries'
    handles and workspaces), then record the next one; the graph, or None where capture fails."""
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        _step(model, state)
    torch.cuda.current_stream().wait_stream(side)
    try:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            _step(model, state)
        return graph
    except torch.OutOfMemoryError:
        raise  # no fallback for memory: the caller reports it with the params to lower
    except Exception as error:  # capture refused by some op: the same loop, eagerly
        log.warning("CUDA graph capture failed (%s); decoding eagerly", error)
        torch.cuda.synchronize()
        return None


def _drop_finished(state: _DecodeState, original: Any, ran: int, out: list[list[int]]) -> Any:
    """Write the finished rows' tokens so far into `out` (their original rows) and keep only the rows
    still decoding in every per-row buffer; the original row of each kept row."""
    finished = state.done.nonzero().squeeze(1)
    for row, tokens in zip(original[finished].tolist(), state.tokens[finished, :ran].tolist(), strict=True):
        out[row] = tokens
    active = (~state.done).nonzero().squeeze(1)
    # The library's own batch reordering (StaticCache's layers have no batch_select_indices): each
    # layer's keys and values become their rows at `active`; the batch size each layer recorded at
    # allocation stays, which nothing in a forward pass reads.
    state.cache.reorder_cache(active)
    for name in ("key_ok", "tokens", "done", "current", "position"):
        setattr(state, name, getattr(state, name).index_select(0, active))
    state.first_slots = [state.first_slots[row] for row in active.tolist()]
    state.runs = row_runs(state.first_slots)
    return original[active]


def _decode_eagerly(model: Any, state: _DecodeState, ran: int, max_new_tokens: int) -> list[list[int]]:
    """Step until every row has stopped or max_new_tokens; rows that stopped leave the batch on the
    way (see _SHRINK_AT_DONE_SHARE), since part of an eager step's cost grows with its rows. A row
    that left comes back with the tokens up to then: its stop token and possibly a few after it."""
    import torch

    out: list[list[int]] = [[] for _ in range(state.tokens.shape[0])]
    original = torch.arange(len(out), device=state.done.device)
    # The done check rides on the cadence of the all-done check: on CUDA each one is a host sync.
    while ran < max_new_tokens:
        if ran % _DONE_CHECK_EVERY == 0:
            stopped = int(state.done.sum())
            if stopped == len(original):
                break
            if stopped >= _SHRINK_AT_DONE_SHARE * len(original):
                original = _drop_finished(state, original, ran, out)
        # The step writes slot width + ran - 1 (the prefill gave token 0): keys up to it are written.
        _step(model, state, DecodeSpans(state.runs, end=state.width + ran))
        ran += 1
    for row, tokens in zip(original.tolist(), state.tokens[:, :ran].tolist(), strict=True):
        out[row] = tokens
    return out


def _replay(graph: Any, state: _DecodeState, ran: int, max_new_tokens: int) -> list[list[int]]:
    """Replay the captured step until every row has stopped or max_new_tokens (fixed buffers: all rows
    stay in the batch to the end)."""
    while ran < max_new_tokens:
        if ran % _DONE_CHECK_EVERY == 0 and bool(state.done.all()):
            break
        graph.replay()
        ran += 1
    return state.tokens[:, :ran].tolist()


def static_batch(model: Any, ids: Any, mask: Any, max_new_tokens: int, stops: list[int],
                 cuda_graph: bool) -> tuple[list[list[int]], str]:
    """Greedy decoding of one left-padded batch (ids and attention mask, as transformers' generate
    takes them) over a static KV cache; (new tokens, how it stepped).

    Rows are not cut at their stop token here (the caller cuts there), nor all of one length: the
    loop ends once every row has produced one, or after max_new_tokens, and stepping eagerly, a row
    that stopped early may come back shorter than the rest (though never before its stop token)."""
    import torch

    with torch.inference_mode(), static_attention(model):
        state = _prefill(model, ids, mask, max_new_tokens, stops)
        ran, graph = 1, None
        if max_new_tokens > 2 and cuda_graph and model.device.type == "cuda":
            graph = _capture(model, state)
            ran += 1  # the eager warm-up step; the captured one has not run yet
        if graph is not None:
            return _replay(graph, state, ran, max_new_tokens), "cuda_graph"
        return _decode_eagerly(model, state, ran, max_new_tokens), "eager"
