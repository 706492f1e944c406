"""Exact and near-duplicate removal (lab.data.dedup) on 100,000 FineTome-sized conversations.

usage: python benchmarks/dedup.py --out benchmarks/results/dedup.json [--rows 100000]
       [--threshold 0.65] [--num-perm 128] [--shingle-words 2]

Synthetic, seeded conversations: a user question of 20-60 words and an answer of 150-250 words,
drawn from a Zipf distribution (exponent 1) over 20,000 synthetic words, in sentences of 8-20 words
(capitalised, ending in a period). Planted among them, at random positions:

- exact duplicates: copies of random rows with their case and whitespace changed;
- near duplicates: copies of other random rows in which a share of 5-10% of the tokens is edited
  (two edits in three substitute a random word, one in three inserts one).

Exact dedup runs first, near dedup on the rows it keeps (the order the prepare stage uses). A
planted pair is found when the later of its two rows is dropped. Each near-duplicate pair the
library reports is checked by an independent computation (Python sets of token tuples, no
hashing): precision counts the found rows that are planted or whose pair really has Jaccard >=
threshold. Seconds and memory cover dedup only, not generation.

The defaults are the values recommended for params.yaml. A copy with a share p of its tokens
edited keeps about q = (1 - p)**k of its k-token shingles, a Jaccard similarity of q / (2 - q):
at p = 10%, 0.42 for k = 5, 0.57 for k = 3 and 0.68 for k = 2. So 5-token shingles at threshold 0.8
only find copies with under ~2.3% of their tokens edited, while 2-token shingles at 0.65 find up to
~11%. A shared block (a template, a long system prompt) covering a share f of both texts gives
f / (2 - f) whatever k is: small shingles make scattered edits count less without making
templated but different rows look more alike.
"""

from __future__ import annotations

import argparse
import os
import resource
import string
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from lab.core.io import write_json
from lab.core.provenance import result_header
from lab.data.dedup import exact_duplicates, near_duplicate_pairs, normalized_text

VOCABULARY, ZIPF_EXPONENT = 20_000, 1.0
QUESTION_WORDS, ANSWER_WORDS, SENTENCE_WORDS = (20, 60), (150, 250), (8, 20)
EDIT_SHARE = (0.05, 0.10)  # share of a planted near duplicate's tokens that is edited
PERIOD = -1  # a sentence end inside a token array
# Cumulative Zipf probabilities of the vocabulary's words by rank, for inverse-transform sampling.
ZIPF_CDF = np.cumsum(1.0 / np.arange(1, VOCABULARY + 1) ** ZIPF_EXPONENT)
ZIPF_CDF /= ZIPF_CDF[-1]


def make_vocabulary(rng: np.random.Generator) -> np.ndarray:
    """VOCABULARY distinct lowercase pseudo-words of 2-10 letters, then "." (the id PERIOD, -1)."""
    letters = np.array(list(string.ascii_lowercase))
    words: set[str] = set()
    while len(words) < VOCABULARY:
        words.update("".join(rng.choice(letters, size=int(n))) for n in rng.integers(2, 11, size=VOCABULARY))
    # Ranks in random order, so that the frequent words are not the alphabetically first ones.
    return np.array(rng.permutation(sorted(words))[:VOCABULARY].tolist() + ["."], dtype=object)


def zipf_words(rng: np.random.Generator, count: int) -> np.ndarray:
    """`count` word ids of a Zipf distribution over the vocabulary (rank 0 the most frequent)."""
    return np.searchsorted(ZIPF_CDF, rng.random(count), side="right").clip(0, VOCABULARY - 1)


def with_sentence_ends(rng: np.random.Generator, ids: np.ndarray) -> np.ndarray:
    """The word ids with a PERIOD after every 8-20 words and at the end."""
    ends = np.cumsum(rng.integers(*SENTENCE_WORDS, endpoint=True, size=len(ids) // SENTENCE_WORDS[0] + 1))
    ends = ends[ends < len(ids)]
    return np.append(np.insert(ids, ends, PERIOD), PERIOD)


def render(ids: np.ndarray, vocabulary: np.ndarray) -> str:
    """A text from token ids: sentences capitalised, each ending in a period."""
    text = " ".join(vocabulary[ids]).replace(" .", ".")
    return ". ".join(sentence.capitalize() for sentence in text.split(". "))


def edited(rng: np.random.Generator, ids: np.ndarray) -> np.ndarray:
    """A copy with a share EDIT_SHARE of its tokens edited: 2/3 substitutions, 1/3 insertions."""
    edits = max(1, round(len(ids) * rng.uniform(*EDIT_SHARE)))
    positions = rng.choice(len(ids), size=edits, replace=False)
    inserting = rng.random(edits) < 1 / 3
    copy = ids.copy()
    substituted = positions[~inserting]
    copy[substituted] = zipf_words(rng, len(substituted))
    return np.insert(copy, np.sort(positions[inserting]), zipf_words(rng, int(inserting.sum())))


def case_and_space_variant(rng: np.random.Generator, text: str) -> str:
    """The same text in upper case or with doubled spaces and line breaks."""
    if rng.random() < 0.5:
        return text.upper()
    return "  ".join(text.split(" ")).replace(". ", ".\n")


def generate(rows: int, exact_copies: int, near_copies: int, seed: int) -> tuple[list[dict[str, Any]], dict]:
    """`rows` conversations in all, of which the planted copies; returns them and, per kind, the
    (earlier, later) positions of every planted pair."""
    rng = np.random.default_rng(seed)
    vocabulary = make_vocabulary(rng)
    originals = rows - exact_copies - near_copies
    tokens = [(with_sentence_ends(rng, zipf_words(rng, int(rng.integers(*QUESTION_WORDS, endpoint=True)))),
               with_sentence_ends(rng, zipf_words(rng, int(rng.integers(*ANSWER_WORDS, endpoint=True)))))
              for _ in range(originals)]
    texts = [(render(q, vocabulary), render(a, vocabulary)) for q, a in tokens]
    sources = rng.choice(originals, size=exact_copies + near_copies, replace=False)
    kinds = ["exact"] * exact_copies + ["near"] * near_copies
    for source, kind in zip(sources.tolist(), kinds, strict=True):
        question, answer = tokens[source]
        if kind == "exact":
            texts.append(tuple(case_and_space_variant(rng, text) for text in texts[source]))
        else:
            texts.append((render(edited(rng, question), vocabulary), render(edited(rng, answer), vocabulary)))
    order = rng.permutation(rows)  # order[i]: the row generated i-th goes to position order[i]
    conversations: list[dict[str, Any]] = [{}] * rows
    for generated, (question, answer) in enumerate(texts):
        conversations[order[generated]] = {
            "id": f"synthetic-{generated}", "source": "synthetic", "score": None,
            "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}
    pairs: dict[str, list[tuple[int, int]]] = {"exact": [], "near": []}
    for copy, (source, kind) in enumerate(zip(sources.tolist(), kinds, strict=True), start=originals):
        pairs[kind].append(tuple(sorted((int(order[source]), int(order[copy])))))
    return conversations, pairs


def token_shingles(conversation: dict[str, Any], shingle_words: int) -> set[tuple[str, ...]]:
    """The conversation's shingles as token tuples: the reference the library's hashing must match."""
    tokens = normalized_text(conversation).split()
    tokens += [""] * (shingle_words - len(tokens))
    return {tuple(tokens[i:i + shingle_words]) for i in range(len(tokens) - shingle_words + 1)}


def reference_jaccard(first: dict[str, Any], second: dict[str, Any], shingle_words: int) -> float:
    a, b = token_shingles(first, shingle_words), token_shingles(second, shingle_words)
    return len(a & b) / len(a | b)


def jaccard_summary(similarity: list[float], threshold: float) -> dict[str, float] | None:
    """Where the planted near duplicates' true Jaccard similarities lie relative to the threshold."""
    if not similarity:
        return None
    values = np.array(similarity)
    return {"min": round(float(values.min()), 3), "p05": round(float(np.percentile(values, 5)), 3),
            "median": round(float(np.median(values)), 3), "max": round(float(values.max()), 3),
            "share_at_or_above_threshold": round(float(np.mean(values >= threshold)), 4)}


def resident_mib() -> float:
    """The process's resident memory now (Linux), MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_mib() -> float:
    """The process's peak resident memory so far (ru_maxrss is KiB on Linux), MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_dedup(conversations: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """Exact then near dedup as the prepare stage runs them, timed; indices into `conversations`."""
    started = time.perf_counter()
    exact = exact_duplicates(conversations)
    exact_seconds = time.perf_counter() - started
    dropped = set(exact)
    survivors = [i for i in range(len(conversations)) if i not in dropped]
    pairs = near_duplicate_pairs([conversations[i] for i in survivors], args.threshold, args.num_perm,
                                 args.shingle_words, args.seed)
    total_seconds = time.perf_counter() - started
    return {"exact": exact, "near_pairs": [(survivors[row], survivors[kept]) for row, kept in pairs],
            "seconds": {"exact": round(exact_seconds, 2), "near": round(total_seconds - exact_seconds, 2),
                        "total": round(total_seconds, 2)}}


def score(conversations: list[dict[str, Any]], planted: dict[str, list[tuple[int, int]]],
          result: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Recall per kind of planted pair and precision of what was dropped, checked independently."""
    dropped = set(result["exact"]) | {row for row, _ in result["near_pairs"]}
    found = {kind: sum(later in dropped for _, later in pairs) for kind, pairs in planted.items()}
    first_seen: dict[str, int] = {}
    exact_true = 0
    for index, conversation in enumerate(conversations):
        text = normalized_text(conversation)
        exact_true += index in result["exact"] and text in first_seen
        first_seen.setdefault(text, index)
    planted_near = {later: earlier for earlier, later in planted["near"]}
    near_planted = sum(planted_near.get(row) == kept for row, kept in result["near_pairs"])
    near_true = sum(planted_near.get(row) == kept
                    or reference_jaccard(conversations[row], conversations[kept], args.shingle_words) >= args.threshold
                    for row, kept in result["near_pairs"])
    similarity = [reference_jaccard(conversations[a], conversations[b], args.shingle_words) for a, b in planted["near"]]
    total_found = len(result["exact"]) + len(result["near_pairs"])
    total_planted = sum(len(pairs) for pairs in planted.values())
    return {
        "planted": {kind: len(pairs) for kind, pairs in planted.items()} | {"total": total_planted},
        "found": {"exact": len(result["exact"]), "near": len(result["near_pairs"]), "total": total_found,
                  "near_that_are_planted_pairs": near_planted},
        "precision": round((exact_true + near_true) / total_found, 4) if total_found else None,
        "recall": round(sum(found.values()) / total_planted, 4) if total_planted else None,
        "recall_by_kind": {kind: round(found[kind] / len(pairs), 4) for kind, pairs in planted.items() if pairs},
        "planted_near_jaccard": jaccard_summary(similarity, args.threshold),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dedup.json"))
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--exact-copies", type=int, default=500)
    parser.add_argument("--near-copies", type=int, default=2_000)
    parser.add_argument("--threshold", type=float, default=0.65)
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--shingle-words", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    header = result_header(__file__, "exact + near-duplicate removal (lab.data.dedup) of synthetic FineTome-sized "
                                     "conversations: seconds, peak memory, recall and precision on planted copies")
    started = time.perf_counter()
    conversations, planted = generate(args.rows, args.exact_copies, args.near_copies, args.seed)
    print(f"generated {len(conversations)} conversations in {time.perf_counter() - started:.1f} s", flush=True)
    load_before, peak_before, resident_before = os.getloadavg(), peak_mib(), resident_mib()
    result = run_dedup(conversations, args)
    peak_after = peak_mib()
    print(f"dedup: {result['seconds']}", flush=True)
    payload = {**header,
               "parameters": {"threshold": args.threshold, "num_perm": args.num_perm,
                              "shingle_words": args.shingle_words, "seed": args.seed},
               "rows": len(conversations),
               **score(conversations, planted, result, args),
               "seconds": result["seconds"],
               "peak_memory_mib": {"process_peak": round(peak_after, 1), "peak_before_dedup": round(peak_before, 1),
                                   "resident_before_dedup": round(resident_before, 1),
                                   "dedup_added": round(peak_after - resident_before, 1)},
               # Other processes sharing the cores stretch the seconds: the 1-minute load average.
               "load_average": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)}}
    write_json(args.out, payload)
    print({key: payload[key] for key in ("planted", "found", "precision", "recall", "recall_by_kind",
                                         "planted_near_jaccard", "seconds", "peak_memory_mib")})


if __name__ == "__main__":
    sys.exit(main())
