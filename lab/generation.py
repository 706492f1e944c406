"""Batched greedy generation over chat prompts, with what happened to each prompt recorded."""

from __future__ import annotations

import time
from typing import Any


def encode_prompts(tokenizer: Any, conversations: list[list[dict[str, str]]], max_input_tokens: int) -> list[dict]:
    """Chat-template each history with the generation prompt; left-truncate the over-long ones
    (the question sits at the end), flagging them rather than dropping them."""
    encoded = []
    for messages in conversations:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        encoded.append({"input_ids": ids[-max_input_tokens:], "prompt_tokens": len(ids),
                        "prompt_truncated": len(ids) > max_input_tokens})
    return encoded


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """End-of-turn ids from the generation config and the tokenizer."""
    configured = model.generation_config.eos_token_id
    ids = set(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    ids.add(tokenizer.eos_token_id)
    return sorted(i for i in ids if i is not None)


def _generate_batch(model: Any, tokenizer: Any, batch: list[list[int]], max_new_tokens: int, stops: list[int]) -> list:
    import torch

    tokenizer.padding_side = "left"  # decoder-only models continue from the right edge
    padded = tokenizer.pad({"input_ids": batch}, padding=True, return_tensors="pt").to(model.device)
    with torch.inference_mode():
        output = model.generate(
            **padded, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
            temperature=None, top_p=None, top_k=None,
            eos_token_id=stops, pad_token_id=tokenizer.pad_token_id,
        )
    return output[:, padded["input_ids"].shape[1]:].tolist()


def generate(model: Any, tokenizer: Any, conversations: list[list[dict[str, str]]], batch_size: int,
             max_new_tokens: int, max_input_tokens: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Greedy continuations of every conversation, in input order, plus timing figures."""
    prompts = encode_prompts(tokenizer, conversations, max_input_tokens)
    stops = set(stop_token_ids(model, tokenizer))
    # Longest first, so batches hold similar lengths (less padding) and memory peaks early.
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]["input_ids"]))
    results: list[dict[str, Any]] = [{} for _ in prompts]
    started = time.perf_counter()
    for start in range(0, len(order), batch_size):
        indices = order[start:start + batch_size]
        continuations = _generate_batch(model, tokenizer, [prompts[i]["input_ids"] for i in indices],
                                        max_new_tokens, sorted(stops))
        for index, tokens in zip(indices, continuations, strict=True):
            end = next((k for k, token in enumerate(tokens) if token in stops), None)
            kept = tokens if end is None else tokens[:end]
            results[index] = {
                "prediction": tokenizer.decode(kept, skip_special_tokens=True).strip(),
                "new_tokens": len(kept),
                "hit_max_new_tokens": end is None,
                "prompt_tokens": prompts[index]["prompt_tokens"],
                "prompt_truncated": prompts[index]["prompt_truncated"],
            }
    seconds = time.perf_counter() - started
    new_tokens = sum(r["new_tokens"] for r in results)
    timing = {"seconds": round(seconds, 1), "new_tokens": new_tokens,
              "tokens_per_s": round(new_tokens / seconds, 1) if seconds else None}
    return results, timing
