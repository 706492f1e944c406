"""Exact and near-duplicate removal and the leak check (lab.data.dedup), on small hand-made datasets."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from datasketch import MinHash

from lab.data.dedup import (
    SCHEME,
    DedupCounts,
    exact_duplicates,
    jaccard,
    leaked,
    near_duplicate_pairs,
    near_duplicates,
    normalized_text,
    sketch,
)

from .conftest import REPO

# The tests' own values (the prepare stage passes params.yaml's).
THRESHOLD, NUM_PERM, SHINGLE_WORDS, SEED = 0.65, 128, 2, 0
SETTINGS = {"threshold": THRESHOLD, "num_perm": NUM_PERM, "shingle_words": SHINGLE_WORDS, "seed": SEED}


def conversation(question: str, answer: str) -> dict[str, Any]:
    return {"id": question[:10], "source": "test", "score": None,
            "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def words(start: int, count: int) -> list[str]:
    """`count` distinct words, w{start} on: texts made of them share no shingle by chance."""
    return [f"w{i}" for i in range(start, start + count)]


def text_conversation(answer_words: list[str], question: str = "tell me") -> dict[str, Any]:
    return conversation(question, " ".join(answer_words))


def replaced_tail(base: list[str], count: int, fresh_start: int) -> list[str]:
    """`base` with its last `count` words replaced by fresh ones."""
    return base[:len(base) - count] + words(fresh_start, count)


def reference_jaccard(first: dict[str, Any], second: dict[str, Any], shingle_words: int) -> float:
    """Jaccard of the sets of token tuples, computed without any hashing."""
    def shingles(row: dict[str, Any]) -> set[tuple[str, ...]]:
        tokens = normalized_text(row).split()
        return {tuple(tokens[i:i + shingle_words]) for i in range(len(tokens) - shingle_words + 1)}
    a, b = shingles(first), shingles(second)
    return len(a & b) / len(a | b)


BASE = words(0, 100)
# A conversation of BASE is 106 tokens ("user : tell me assistant :" and 100 words), so 105 2-word
# shingles. Replacing its last m words keeps 6 + (99 - m) of them: Jaccard (105 - m) / (105 + m).
NEAR = text_conversation(replaced_tail(BASE, 5, 1000))     # 100/110 = 0.909, well above 0.65
ABOVE = text_conversation(replaced_tail(BASE, 15, 2000))   # 90/120 = 0.75, above
BELOW = text_conversation(replaced_tail(BASE, 25, 3000))   # 80/130 = 0.615, below
FAR = text_conversation(replaced_tail(BASE, 60, 4000))     # 45/165 = 0.273
UNRELATED = text_conversation(words(5000, 100))             # only the 5 shingles of the roles: 5/205


def test_the_constructed_pairs_have_the_intended_jaccard():
    base = text_conversation(BASE)
    similarity = [reference_jaccard(base, row, SHINGLE_WORDS) for row in (NEAR, ABOVE, BELOW, FAR, UNRELATED)]
    assert similarity == pytest.approx([100 / 110, 90 / 120, 80 / 130, 45 / 165, 5 / 205])


def test_shingle_jaccard_is_exactly_the_reference_jaccard():
    base = text_conversation(BASE)
    for shingle_words in (1, 2, 3, 5):
        sketches = sketch([base, NEAR, ABOVE, BELOW, FAR], NUM_PERM, shingle_words, SEED)
        for row, other in enumerate((NEAR, ABOVE, BELOW, FAR), start=1):
            assert jaccard(sketches.shingles[0], sketches.shingles[row]) == reference_jaccard(base, other,
                                                                                              shingle_words)


def test_signatures_are_datasketchs_minhash_of_the_same_hashes():
    sketches = sketch([text_conversation(BASE), NEAR, conversation("hi", "yo")], NUM_PERM, 5, SEED)
    for shingles, signature in zip(sketches.shingles, sketches.signatures, strict=True):
        minhash = MinHash(num_perm=NUM_PERM, seed=SEED, scheme=SCHEME, hashfunc=int)
        minhash.update_batch(shingles.tolist())
        assert np.array_equal(minhash.hashvalues, signature)


def test_normalized_text_ignores_case_whitespace_and_punctuation_variants():
    plain = conversation("What's 2+2?", "It is 4, of course.")
    variants = [conversation("WHAT'S   2 + 2 ?", "it is 4 ,\n\tof COURSE ."),
                conversation("What\u2019s 2+2?", "It is 4, of course."),
                conversation("What's 2+2?", "It is 4, of course.  ")]
    assert {normalized_text(row) for row in variants} == {normalized_text(plain)}
    assert normalized_text(plain) == "user : what ' s 2 + 2 ? assistant : it is 4 , of course ."


def test_normalized_text_keeps_roles_turn_order_and_the_punctuation_itself():
    swapped = {"messages": [{"role": "assistant", "content": "What's 2+2?"}, {"role": "user", "content": "4"}]}
    assert normalized_text(swapped) != normalized_text(conversation("What's 2+2?", "4"))
    assert normalized_text(conversation("a+b", "c")) != normalized_text(conversation("a-b", "c"))
    assert normalized_text(conversation("\u201cQuoted\u201d \u2014 caf\u00e9\u2026", "x")) == \
        'user : " quoted " - café . . . assistant : x'


def test_exact_duplicates_keep_the_first_and_catch_case_and_whitespace_variants():
    rows = [conversation("Hello there", "General Kenobi!"), conversation("Other", "question"),
            conversation("hello  THERE", "general kenobi !"), conversation("Hello there", "General Kenobi!"),
            conversation("Hello there", "General Kenobi?")]
    assert exact_duplicates(rows) == [2, 3]


def test_near_duplicates_above_the_threshold_are_dropped_and_below_kept():
    rows = [text_conversation(BASE), UNRELATED, NEAR, BELOW, ABOVE, FAR]
    assert near_duplicates(rows, **SETTINGS) == [2, 4]


def test_pairs_name_the_first_kept_match_and_the_first_occurrence_stays():
    base = text_conversation(BASE)
    assert near_duplicate_pairs([NEAR, UNRELATED, base, ABOVE], **SETTINGS) == [(2, 0), (3, 0)]
    assert near_duplicate_pairs([base, NEAR], **SETTINGS) == [(1, 0)]
    assert near_duplicate_pairs([NEAR, base], **SETTINGS) == [(1, 0)]


def test_a_row_is_compared_with_kept_rows_only():
    # middle ~ first and last ~ middle, but last is not near first: once middle is dropped, last
    # has no kept near duplicate and stays.
    first = text_conversation(BASE)
    middle = text_conversation(replaced_tail(BASE, 12, 1000))
    last = text_conversation(BASE[12:88] + words(1000, 12) + words(6000, 12))  # middle shifted by 12 words
    assert reference_jaccard(first, middle, SHINGLE_WORDS) >= THRESHOLD
    assert reference_jaccard(middle, last, SHINGLE_WORDS) >= THRESHOLD
    assert reference_jaccard(first, last, SHINGLE_WORDS) < THRESHOLD
    assert near_duplicates([first, middle, last], **SETTINGS) == [1]


def test_exact_duplicates_are_near_duplicates_too():
    rows = [conversation("Hello there", "General Kenobi!"), conversation("HELLO there", "general kenobi!")]
    assert near_duplicates(rows, **SETTINGS) == [1]


def test_conversations_shorter_than_a_shingle_still_compare():
    rows = [conversation("hi", "yo"), conversation("hey", "yo"), conversation("Hi", "yo")]
    assert near_duplicates(rows, threshold=THRESHOLD, num_perm=NUM_PERM, shingle_words=20, seed=SEED) == [2]


def test_results_are_deterministic_across_calls_and_processes():
    rows = [text_conversation(BASE), UNRELATED, NEAR, BELOW, ABOVE, FAR, NEAR]
    first = near_duplicate_pairs(rows, **SETTINGS)
    assert near_duplicate_pairs(rows, **SETTINGS) == first
    # Token hashes must not depend on Python's per-process string hashing.
    program = ("from lab.data.dedup import sketch; "
               "rows = [{'messages': [{'role': 'user', 'content': 'a b c d e f'}]}]; "
               "print(sketch(rows, 16, 2, 3).signatures.tolist())")
    outputs = {subprocess.run([sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": str(hash_seed)}).stdout for hash_seed in (1, 2)}
    assert len(outputs) == 1 and outputs.pop().startswith("[[")


def test_leak_check_returns_only_train_rows_matching_held_out_ones():
    held_out = [text_conversation(BASE), conversation("What is the capital of France?", "Paris.")]
    train = [UNRELATED, NEAR, BELOW, conversation("what is the capital of  france ?", "PARIS."),
             conversation("What is the capital of Spain?", "Madrid.")]
    assert leaked(train, held_out, **SETTINGS) == [1, 3]
    assert leaked(held_out, train, **SETTINGS) == [0, 1]


def test_empty_inputs():
    assert exact_duplicates([]) == []
    assert near_duplicates([], **SETTINGS) == []
    assert leaked([], [text_conversation(BASE)], **SETTINGS) == []
    assert leaked([text_conversation(BASE)], [], **SETTINGS) == []
    assert sketch([], NUM_PERM, SHINGLE_WORDS, SEED).signatures.shape == (0, NUM_PERM)


def test_counts_report_what_is_kept():
    counts = DedupCounts(rows=100, exact_duplicates=3, near_duplicates=5, leaked=2)
    assert counts.to_dict() == {"rows": 100, "exact_duplicates": 3, "near_duplicates": 5, "leaked": 2, "kept": 90}
