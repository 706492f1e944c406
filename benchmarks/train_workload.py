"""The training benchmark's workload: seeded example lengths shaped like FineTome-100k in Llama-3
tokens, pre-tokenized rows in the lab's format, and a collator wrapper counting what each
micro-batch holds."""

from __future__ import annotations

import math
from typing import Any

# FineTome-100k conversations in Llama-3 tokens: mean ~500 with a long tail, cut at the lab's
# max_seq_length (2048). A lognormal with sigma 1 and this median gives a clipped mean of ~500.
LENGTH_MEDIAN, LENGTH_SIGMA, MIN_LEN, MAX_LEN = 330.0, 1.0, 32, 2048
# Share of each example that is the prompt (masked out of the loss), as in a chat turn.
PROMPT_SHARE = 0.4


def sample_lengths(n: int, seed: int) -> list[int]:
    """Seeded lognormal example lengths clipped to [MIN_LEN, MAX_LEN]."""
    import numpy as np

    rng = np.random.default_rng(seed)
    raw = rng.lognormal(mean=math.log(LENGTH_MEDIAN), sigma=LENGTH_SIGMA, size=n)
    return [int(x) for x in np.clip(np.rint(raw), MIN_LEN, MAX_LEN)]


def synthetic_rows(lengths: list[int], vocab: int, seed: int) -> list[dict[str, list[int]]]:
    """Pre-tokenized rows in the lab's format (input_ids + assistant_masks), random token ids."""
    import numpy as np

    rng = np.random.default_rng(seed + 1)
    rows = []
    for length in lengths:
        prompt = int(length * PROMPT_SHARE)
        rows.append({"input_ids": rng.integers(0, vocab - 256, size=length).tolist(),
                     "assistant_masks": [0] * prompt + [1] * (length - prompt)})
    return rows


def tokens_in_window(micro_batch_tokens: list[int], grad_accum: int, first_step: int, last_step: int) -> int:
    """Tokens of optimizer steps first_step+1 .. last_step, from the per-micro-batch counts in order."""
    return sum(micro_batch_tokens[first_step * grad_accum:last_step * grad_accum])


class CountingCollator:
    """Wraps the trainer's collator and records the real tokens of each micro-batch, in order."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.tokens, self.padded, self.padding_free = inner, [], [], None

    def __call__(self, examples: list[dict]) -> dict:
        batch = self.inner(examples)
        mask = batch.get("attention_mask")
        self.tokens.append(int(mask.sum()) if mask is not None else int(batch["input_ids"].numel()))
        self.padded.append(int(batch["input_ids"].numel()))
        self.padding_free = "position_ids" in batch and mask is None and batch["input_ids"].shape[0] == 1
        return batch
