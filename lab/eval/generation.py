"""Batched greedy generation over chat prompts, with what happened to each prompt recorded.

Two decoders give the same greedy continuations (a test pins them token for token):

- `generate`: transformers' `model.generate` with its dynamic KV cache;
- `static`: lab.eval.decoder's loop over a preallocated KV cache, replayed as a CUDA graph on
  a GPU: about 3x faster there at the lab's batch sizes, with no compilation. On CPU it steps
  eagerly and is still faster (no cache concatenation, no per-head key/value copies; 1.38x on the
  embedded model at batch 16, measured on 2 cores), and rows that have stopped leave its batch.

`decode="auto"` picks `static` wherever the model supports it, `generate` otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import Any

from lab.core.choices import Decode, allowed
from lab.core.errors import ConfigError
from lab.eval.decoder import static_batch, static_decoder_unsupported
from lab.model.chat_template import render_chat
from lab.model.runtime import out_of_memory_advice

log = logging.getLogger(__name__)
# What shrinks generation's memory (the KV cache grows with batch x (prompt + new tokens)).
GENERATION_MEMORY_REMEDIES = ["lower evaluate.batch_size",
                              "lower evaluate.max_input_tokens (prompts are left-truncated to it)",
                              "lower evaluate.max_new_tokens"]


def sequence_start(tokenizer: Any) -> list[int]:
    """[BOS] where the tokenizer starts every sequence with it (Llama 3's <|begin_of_text|>), else []
    (SmolLM2's template opens with its BOS token, <|im_start|>, as a turn marker, not a sequence start)."""
    bos = tokenizer.bos_token_id
    return [bos] if bos is not None and tokenizer("x")["input_ids"][:1] == [bos] else []


def encode_prompts(tokenizer: Any, conversations: list[list[dict[str, str]]], max_input_tokens: int) -> list[dict]:
    """Chat-template each history with the generation prompt; left-truncate the over-long ones
    (the question sits at the end), flagging them rather than dropping them. A model that starts
    every sequence with BOS keeps it: Llama 3 never saw a sequence without <|begin_of_text|>."""
    start = sequence_start(tokenizer)
    encoded = []
    for messages in conversations:
        ids = tokenizer(render_chat(tokenizer, messages, add_generation_prompt=True), add_special_tokens=False)[
            "input_ids"]
        kept = ids
        if len(ids) > max_input_tokens:
            head = start if ids[:len(start)] == start else []
            kept = head + ids[len(ids) - (max_input_tokens - len(head)):]
        encoded.append({"input_ids": kept, "prompt_tokens": len(ids), "prompt_truncated": len(ids) > max_input_tokens})
    return encoded


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """End-of-turn ids from the generation config and the tokenizer."""
    configured = model.generation_config.eos_token_id
    ids = set(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    ids.add(tokenizer.eos_token_id)
    return sorted(i for i in ids if i is not None)


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[list[list[int]], list[list[int]]]:
    """Prompts padded on the left to the longest one, and their attention masks (1: a real token):
    a decoder-only model continues each row from its right edge."""
    width = max(len(p) for p in prompts)
    ids = [[pad_id] * (width - len(p)) + p for p in prompts]
    masks = [[0] * (width - len(p)) + [1] * len(p) for p in prompts]
    return ids, masks


def _generate_batch(model: Any, ids: Any, mask: Any, max_new_tokens: int, stops: list[int],
                    pad_token_id: int) -> list[list[int]]:
    """transformers' generate on one left-padded batch, dynamic KV cache."""
    import torch

    width = ids.shape[1]
    with torch.inference_mode():
        output = model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
            temperature=None, top_p=None, top_k=None,
            eos_token_id=stops, pad_token_id=pad_token_id,
        )
    return output[:, width:].tolist()


@contextlib.contextmanager
def _cuda_sdpa_settings(device_type: str):
    """On CUDA, SDPA without cuDNN's backend: cuDNN plans anew for every new key length, which
    cost ~12 s on a fresh process's first batch of 256 dynamic-cache steps (H200, measured)."""
    if device_type != "cuda":
        yield
        return
    import torch

    previous = torch.backends.cuda.cudnn_sdp_enabled()
    torch.backends.cuda.enable_cudnn_sdp(False)
    try:
        yield
    finally:
        torch.backends.cuda.enable_cudnn_sdp(previous)


def resolve_decoder(model: Any, decode: str) -> tuple[str, str | None]:
    """The decoder that will run for `decode` on this model, and why it differs where it does."""
    if decode not in allowed(Decode):
        raise ConfigError(f"evaluate.decode: {decode!r} is not allowed; allowed: {'|'.join(allowed(Decode))}")
    if decode == "generate":
        return "generate", None
    reason = static_decoder_unsupported(model)
    return ("generate", reason) if reason else ("static", None)


def generate_ids(model: Any, prompts: list[list[int]], max_new_tokens: int, stops: list[int], pad_token_id: int,
                 batch_size: int, decode: str, cuda_graph: bool) -> tuple[list[list[int]], dict]:
    """Greedy continuations (token ids, not yet cut at the stop token) of every prompt, in input order;
    each runs to max_new_tokens or at least to its first stop token.

    Batches hold prompts of similar length (longest first: less padding, and memory peaks early).
    A tqdm bar on stderr counts the examples, batch by batch (hidden when not on a terminal).
    Returns the continuations and what ran: the decoder, and how the static one stepped."""
    import torch
    from tqdm import tqdm

    decoder, reason = resolve_decoder(model, decode)
    if reason:
        log.warning("decode=%s: using transformers' generate (%s)", decode, reason)
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    outputs: list[list[int]] = [[] for _ in prompts]
    steps: set[str] = set()
    bar = tqdm(total=len(prompts), desc="generate", unit="example", file=sys.stderr, disable=None,
               dynamic_ncols=True)
    with _cuda_sdpa_settings(model.device.type), bar:
        for start in range(0, len(order), batch_size):
            indices = order[start:start + batch_size]
            shape = (f"a batch of {len(indices)} prompts (evaluate.batch_size {batch_size}) of "
                     f"{max(len(prompts[i]) for i in indices)} tokens plus up to {max_new_tokens} new ones")
            with out_of_memory_advice(f"generation ({decoder})", shape, GENERATION_MEMORY_REMEDIES):
                ids, mask = (torch.tensor(rows, device=model.device)
                             for rows in left_pad([prompts[i] for i in indices], pad_token_id))
                if decoder == "static":
                    continuations, how = static_batch(model, ids, mask, max_new_tokens, stops, cuda_graph)
                    steps.add(how)
                else:
                    continuations = _generate_batch(model, ids, mask, max_new_tokens, stops, pad_token_id)
            for index, tokens in zip(indices, continuations, strict=True):
                outputs[index] = tokens
            bar.update(len(indices))
    ran = {"decoder": decoder, **({"decode_steps": "+".join(sorted(steps))} if steps else {}),
           **({"fallback_reason": reason} if reason else {})}
    return outputs, ran


def generate(model: Any, tokenizer: Any, conversations: list[list[dict[str, str]]], batch_size: int,
             max_new_tokens: int, max_input_tokens: int, decode: str,
             cuda_graph: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Greedy continuations of every conversation, in input order, plus timing figures.

    decode: "auto" (the static decoder on CUDA, transformers' generate elsewhere), "generate" or
    "static"; cuda_graph: whether the static decoder replays a captured CUDA graph on CUDA."""
    prompts = encode_prompts(tokenizer, conversations, max_input_tokens)
    stops = stop_token_ids(model, tokenizer)
    started = time.perf_counter()
    continuations, ran = generate_ids(model, [p["input_ids"] for p in prompts], max_new_tokens, stops,
                                      tokenizer.pad_token_id, batch_size, decode, cuda_graph)
    seconds = time.perf_counter() - started
    stop_set = set(stops)
    results: list[dict[str, Any]] = []
    for prompt, tokens in zip(prompts, continuations, strict=True):
        end = next((k for k, token in enumerate(tokens) if token in stop_set), None)
        kept = tokens if end is None else tokens[:end]
        results.append({
            # The text as the model wrote it: transformers already skips this clean-up of spaces
            # before punctuation for BPE tokenizers, and warns on every run where it is asked for.
            "prediction": tokenizer.decode(kept, skip_special_tokens=True, clean_up_tokenization_spaces=False).strip(),
            "new_tokens": len(kept),
            "hit_max_new_tokens": end is None,
            "prompt_tokens": prompt["prompt_tokens"],
            "prompt_truncated": prompt["prompt_truncated"],
        })
    new_tokens = sum(r["new_tokens"] for r in results)
    timing = {"seconds": round(seconds, 1), "new_tokens": new_tokens,
              "tokens_per_s": round(new_tokens / seconds, 1) if seconds else None, **ran}
    return results, timing
