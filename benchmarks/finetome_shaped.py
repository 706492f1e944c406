"""FineTome-shaped conversations: mlabonne/FineTome-100k's schema, turn structure and lengths (in Llama 3
tokens), filled with meaningless words, so that the reference lab can be rehearsed without the Hub.

usage: python benchmarks/finetome_shaped.py --out data/finetome_shaped.jsonl [--rows 100000] [--seed 3407]

The words are random whole-word tokens of the Llama 3 tokenizer (one token each, so lengths come out
in tokens as drawn), in sentences of 8-20 words ending in a period. Only the shape is FineTome's; what
the lab learns or scores on it means nothing. Its words average ~5.6 characters a token against ~4.4
for English text, so the file is about a quarter larger than FineTome for the same tokens (100,000
rows: ~300 MB). The figures followed, and where they come from:

- Schema: `conversations` (a list of {from: human | gpt | system, value}), `source` (str), `score`
  (float64); 100,000 rows. From the dataset card's dataset_info (huggingface.co/datasets/mlabonne/
  FineTome-100k). data.format: auto reads it as sharegpt.
- Lengths: each conversation's text in Llama 3 tokens is drawn from benchmarks/train_workload.py's
  lognormal (median 330, sigma 1, clipped to 32..2,048; mean ~500), the one FineTome length mix that
  the training benchmark uses too; of each exchange, the user's share is its PROMPT_SHARE (0.4). The
  card's dataset_size, 239,650,960 bytes for 100,000 rows (~2,400 bytes a row, ~550 tokens at ~4.4
  bytes a token) agrees with that mean to within the approximation.
- Sources: The Tome's component datasets (arcee-ai/The-Tome's card) less qwen2-72b-magpie-en
  (FineTome's card). The source names and their shares below are APPROXIMATIONS, not counts of the data.
- Multi-turn share, turns per multi-turn conversation, system-prompt share and the score distribution
  are APPROXIMATIONS too (not looked up): FineTome is mostly single-turn, a minority of its rows carry
  a system prompt, and its scores (from the fineweb-edu classifier) sit between about 4 and 5.2.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from rehearsal_base import tokenizer_json_path  # benchmarks/, beside this script
from train_workload import PROMPT_SHARE, sample_lengths

# APPROXIMATIONS (see the module docstring).
SOURCE_SHARES = {"infini-instruct-top-500k": 0.60, "WebInstructSub-top-500k": 0.20, "airoboros-3.2": 0.04,
                 "glaive-function-calling-v2-sharegpt": 0.03, "reasoning-sharegpt": 0.03,
                 "self-instruct-sharegpt": 0.04, "ultrainteract_trajectories_sharegpt": 0.03, "SystemChat-2.0": 0.03}
MULTI_TURN_SHARE = 0.10
MULTI_TURN_EXCHANGES = (2, 4)  # user/assistant exchanges of a multi-turn conversation, inclusive
SYSTEM_SHARE = 0.05
SYSTEM_TOKEN_SHARE = 0.10  # of a conversation's tokens, when it has a system prompt
SCORE_MEAN, SCORE_SD, SCORE_RANGE = 4.6, 0.25, (4.0, 5.2)
SENTENCE_TOKENS = (8, 20)
# Whole lowercase words of 2-7 letters with the leading space (Ġ) of the byte-level vocabulary:
# one token each after a space.
WORD_TOKEN = re.compile(r"^Ġ([a-z]{2,7})$")


def word_list(tokenizer_json: Path) -> list[str]:
    """The words of the Llama 3 vocabulary that are one token each after a space, sorted (seeded
    draws then depend on nothing but the tokenizer file)."""
    vocab = json.loads(tokenizer_json.read_text())["model"]["vocab"]
    return sorted(match[1] for token in vocab if (match := WORD_TOKEN.match(token)))


def text_of(rng: np.random.Generator, words: list[str], tokens: int) -> str:
    """About `tokens` tokens of sentences: random words, a period closing each sentence (one token)."""
    picks = rng.integers(len(words), size=tokens)
    sentences, start = [], 0
    while start < tokens:
        length = int(rng.integers(SENTENCE_TOKENS[0], SENTENCE_TOKENS[1] + 1))
        chunk = picks[start:start + max(1, length - 1)]  # the period is the sentence's last token
        sentences.append(" ".join(words[i] for i in chunk) + ".")
        start += len(chunk) + 1
    return " ".join(sentences)


def turn_tokens(rng: np.random.Generator, total: int) -> tuple[int, list[tuple[int, int]]]:
    """Split a conversation's `total` tokens into a system prompt (0: none) and (user, assistant) exchanges."""
    system = max(8, round(total * SYSTEM_TOKEN_SHARE)) if rng.random() < SYSTEM_SHARE else 0
    exchanges = 1
    if rng.random() < MULTI_TURN_SHARE:
        exchanges = int(rng.integers(MULTI_TURN_EXCHANGES[0], MULTI_TURN_EXCHANGES[1] + 1))
    each = max(2, (total - system) // exchanges)
    user = max(1, round(each * PROMPT_SHARE))
    return system, [(user, max(1, each - user))] * exchanges


def conversation(rng: np.random.Generator, words: list[str], total: int, sources: list[str],
                 shares: list[float]) -> dict[str, Any]:
    """One FineTome-schema row of about `total` text tokens."""
    system, exchanges = turn_tokens(rng, total)
    turns = [{"from": "system", "value": text_of(rng, words, system)}] if system else []
    for user, assistant in exchanges:
        turns += [{"from": "human", "value": text_of(rng, words, user)},
                  {"from": "gpt", "value": text_of(rng, words, assistant)}]
    score = float(np.clip(rng.normal(SCORE_MEAN, SCORE_SD), *SCORE_RANGE))
    return {"conversations": turns, "source": str(rng.choice(sources, p=shares)), "score": round(score, 6)}


def finetome_shaped_rows(rows: int, seed: int, words: list[str]) -> list[dict[str, Any]]:
    """`rows` seeded FineTome-shaped conversations."""
    rng = np.random.default_rng(seed)
    sources = list(SOURCE_SHARES)
    shares = np.array(list(SOURCE_SHARES.values()))
    shares = list(shares / shares.sum())
    return [conversation(rng, words, total, sources, shares) for total in sample_lengths(rows, seed)]


def write_finetome_shaped(out: Path, rows: int, seed: int) -> int:
    """Write the JSON-lines file; returns the number of rows."""
    data = finetome_shaped_rows(rows, seed, word_list(tokenizer_json_path()))
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for row in data:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the .jsonl file to write (data.source)")
    parser.add_argument("--rows", type=int, default=100_000, help="FineTome-100k has 100,000")
    parser.add_argument("--seed", type=int, default=3407)
    args = parser.parse_args()
    print(f"{write_finetome_shaped(args.out, args.rows, args.seed):,} FineTome-shaped conversations -> {args.out}")


if __name__ == "__main__":
    main()
