"""Exact and near-duplicate conversations, and training rows that leak held-out ones.

Each conversation is compared as its normalised text (`normalized_text`). Exact duplicates share
the sha256 of that text. Near duplicates are pairs whose sets of word shingles (runs of
`shingle_words` consecutive tokens) have a Jaccard similarity of at least `threshold`: MinHash LSH
(datasketch) proposes candidate pairs, and each candidate is then confirmed on the exact shingle
sets, so a pair below the threshold is never dropped and LSH only decides what is compared.

MinHash signatures are computed for many conversations at once with numpy, bit for bit what
datasketch's `MinHash` ("affine32" scheme) computes from the same 32-bit shingle hashes, and
wrapped as `LeanMinHash` for the LSH index.
"""

from __future__ import annotations

import hashlib
import re
import string
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

# datasketch's default scheme: 32-bit hash values, a bijective permutation per hash function.
SCHEME = "affine32"
# LSH only proposes candidates and every one is checked on the exact shingle sets, so a false
# positive costs one set comparison while a false negative is a missed duplicate: tune the bands
# for recall. With 128 permutations and threshold 0.65 this gives 25 bands of 5 rows, which
# propose a pair of Jaccard 0.65 with probability 0.95 and one of 0.7 with 0.99 (datasketch's
# default weights of (0.5, 0.5) give 16 bands of 8 rows: 0.40 and 0.61).
LSH_WEIGHTS = (0.05, 0.95)
# Conversations hashed per numpy batch: keeps the (num_perm x shingles) working array of a batch of
# FineTome-sized conversations near 8 MB, where it computes several times faster than larger ones.
BATCH_CONVERSATIONS = 64

# Typographic variants folded to one ASCII form, so that "don’t" and "don't" compare equal.
PUNCTUATION_FOLD = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u00b4": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
})
# Every punctuation mark is a token of its own: kept (it matters in code and maths) but split from
# words, so that "world!" and "world !" give the same tokens. "_" is a word character, as in \w.
ASCII_PUNCTUATION = [mark for mark in string.punctuation if mark != "_"]
TOKEN = re.compile(r"\w+|[^\w\s]")
# Token hashes: a polynomial over each token's UTF-8 bytes modulo 2**64, in an odd (so invertible)
# base, computed for a whole batch with one cumulative sum; then mixed (fmix64) to break linearity.
TOKEN_BASE = 0x100000001B3
# Multiplier of the polynomial that combines token hashes into a shingle hash (odd, 64-bit).
SHINGLE_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
# Fills a conversation shorter than one shingle, so that it still has exactly one shingle.
PAD_TOKEN_HASH = np.uint64(0x5DEECE66D)


@dataclass(frozen=True)
class DedupCounts:
    """How many rows each check removed, for the prepare stage's report."""

    rows: int
    exact_duplicates: int
    near_duplicates: int
    leaked: int

    @property
    def kept(self) -> int:
        return self.rows - self.exact_duplicates - self.near_duplicates - self.leaked

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "kept": self.kept}


def normalized_text(conversation: dict[str, Any]) -> str:
    """All turns in order as `role: content`, NFKC-normalised, typographic punctuation folded to
    ASCII, case-folded, every punctuation mark a token of its own and tokens separated by one space."""
    text = "\n".join(f"{message['role']}: {message['content']}" for message in conversation["messages"])
    text = unicodedata.normalize("NFKC", text).casefold().translate(PUNCTUATION_FOLD)
    # str.replace per mark present is several times faster than a regex (or str.translate to
    # several characters) over the whole text; only non-ASCII words need the regex.
    for mark in ASCII_PUNCTUATION:
        if mark in text:
            text = text.replace(mark, f" {mark} ")
    words = text.split()
    if not text.isascii():
        words = [token for word in words for token in ((word,) if word.isascii() else TOKEN.findall(word))]
    return " ".join(words)


def text_digest(text: str) -> bytes:
    """The sha256 of a normalised text: equal digests are exact duplicates."""
    return hashlib.sha256(text.encode("utf-8")).digest()


def exact_duplicates(conversations: Sequence[dict[str, Any]]) -> list[int]:
    """Indices of the rows whose normalised text was seen in an earlier row (the first is kept)."""
    seen: set[bytes] = set()
    duplicates = []
    for index, conversation in enumerate(conversations):
        digest = text_digest(normalized_text(conversation))
        if digest in seen:
            duplicates.append(index)
        seen.add(digest)
    return duplicates


def fmix64(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer (uint64 in, out): an avalanching bijection."""
    values = values ^ (values >> np.uint64(33))
    values = values * np.uint64(0xFF51AFD7ED558CCD)
    values = values ^ (values >> np.uint64(33))
    values = values * np.uint64(0xC4CEB9FE1A85EC53)
    return values ^ (values >> np.uint64(33))


def fmix32(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, which datasketch applies to each input hash (uint32 in, out)."""
    values = values ^ (values >> np.uint32(16))
    values = values * np.uint32(0x85EBCA6B)
    values = values ^ (values >> np.uint32(13))
    values = values * np.uint32(0xC2B2AE35)
    return values ^ (values >> np.uint32(16))


@lru_cache(maxsize=2)
def _powers(size: int) -> tuple[np.ndarray, np.ndarray]:
    """TOKEN_BASE**j and TOKEN_BASE**-j modulo 2**64, for j < size."""
    tables = [np.concatenate(([np.uint64(1)], np.cumprod(np.full(size - 1, base, np.uint64))))
              for base in (TOKEN_BASE, pow(TOKEN_BASE, -1, 2**64))]
    return tables[0], tables[1]


def token_hashes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """A stable 64-bit hash of every token of the normalised texts, back to back, and how many
    tokens each text has. (Python's own `hash` of a str changes between processes.)"""
    data = np.frombuffer(" ".join(texts).encode("utf-8"), np.uint8)
    separators = np.flatnonzero(data == ord(" "))
    starts, ends = np.concatenate(([0], separators + 1)), np.append(separators, len(data))
    starts, ends = starts[ends > starts], ends[ends > starts]  # an empty text leaves an empty token
    powers, inverse_powers = _powers(1 << len(data).bit_length())  # a few distinct sizes: cached
    prefix = np.concatenate(([np.uint64(0)], np.cumsum(data * powers[:len(data)], dtype=np.uint64)))
    # sum(byte_j * base**j for j in [start, end)) * base**-start: the same for a token wherever it is
    hashes = fmix64((prefix[ends] - prefix[starts]) * inverse_powers[starts])
    return hashes, np.array([text.count(" ") + 1 if text else 0 for text in texts], dtype=np.int64)


def shingle_hashes(tokens: np.ndarray, lengths: np.ndarray, shingle_words: int) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of every run of `shingle_words` tokens inside each text of a batch, back to
    back, and how many each text has: L - shingle_words + 1 for a text of L tokens, and 1 for a
    text shorter than a shingle, which is padded to one.

    `tokens` holds the texts' token hashes back to back, `lengths` how many each text has."""
    short = lengths < shingle_words
    if short.any():
        pads = np.repeat(np.cumsum(lengths)[short], shingle_words - lengths[short])
        tokens, lengths = np.insert(tokens, pads, PAD_TOKEN_HASH), np.maximum(lengths, shingle_words)
    windows = len(tokens) - shingle_words + 1
    combined = tokens[:windows].copy()
    for offset in range(1, shingle_words):  # Horner's rule, wrapping modulo 2**64
        combined = combined * SHINGLE_MULTIPLIER + tokens[offset:offset + windows]
    # A window is a shingle when it ends inside the text where it starts.
    ends = np.repeat(np.cumsum(lengths), lengths)[:windows]
    return combined[np.arange(windows) + shingle_words <= ends], lengths - shingle_words + 1


def minhash_signatures(hashes32: np.ndarray, counts: np.ndarray, permutations: np.ndarray) -> np.ndarray:
    """One MinHash signature (uint32, one value per permutation) per set of a batch: the sets'
    32-bit element hashes back to back, `counts` elements each (every count at least 1), and
    datasketch's affine32 permutations as a (2, num_perm) array."""
    a, b = permutations
    # (num_perm, elements), so that each set's minimum is taken over contiguous memory.
    permuted = a[:, None] * fmix32(hashes32)[None, :]  # uint32 arithmetic wraps: modulo 2**32, as datasketch
    permuted += b[:, None]
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return np.minimum.reduceat(permuted, starts, axis=1).T


@dataclass
class Sketches:
    """What near-duplicate search needs of each conversation: its 32-bit shingle hashes (for the
    exact Jaccard check), its MinHash signature (for LSH) and the digest of its normalised text."""

    shingles: list[np.ndarray]
    signatures: np.ndarray
    digests: list[bytes]


def _batches(conversations: Sequence[dict[str, Any]]) -> Iterator[Sequence[dict[str, Any]]]:
    for start in range(0, len(conversations), BATCH_CONVERSATIONS):
        yield conversations[start:start + BATCH_CONVERSATIONS]


def sketch(conversations: Sequence[dict[str, Any]], num_perm: int, shingle_words: int, seed: int) -> Sketches:
    """Shingles, MinHash signatures and digests of every conversation, a batch at a time."""
    permutations = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME).permutations
    shingles: list[np.ndarray] = []
    signatures, digests = [], []
    for batch in _batches(conversations):
        texts = [normalized_text(conversation) for conversation in batch]
        digests.extend(text_digest(text) for text in texts)
        batch_shingles, counts = shingle_hashes(*token_hashes(texts), shingle_words)
        # datasketch's 32-bit scheme takes 32-bit element hashes: fold the 64-bit shingle hash. The
        # exact check uses them too, at half the memory: two shingles of a pair of conversations
        # collide with odds of (shingles per conversation)**2 / 2**32, about 1e-5 for FineTome's.
        hashes32 = ((batch_shingles >> np.uint64(32)) ^ batch_shingles).astype(np.uint32)
        shingles.extend(np.split(hashes32, np.cumsum(counts)[:-1]))
        signatures.append(minhash_signatures(hashes32, counts, permutations))
    matrix = np.concatenate(signatures) if signatures else np.empty((0, num_perm), np.uint32)
    return Sketches(shingles, matrix, digests)


def jaccard(first: np.ndarray, second: np.ndarray) -> float:
    """Exact Jaccard similarity of two sets of shingle hashes (duplicates within each ignored)."""
    first, second = np.unique(first), np.unique(second)
    shared = len(np.intersect1d(first, second, assume_unique=True))
    return shared / (len(first) + len(second) - shared)


def _lsh_index(threshold: float, num_perm: int) -> MinHashLSH:
    return MinHashLSH(threshold=threshold, num_perm=num_perm, weights=LSH_WEIGHTS)


def _lean(signature: np.ndarray, seed: int) -> LeanMinHash:
    return LeanMinHash(seed=seed, hashvalues=signature, scheme=SCHEME)


def near_duplicate_pairs(conversations: Sequence[dict[str, Any]], threshold: float, num_perm: int,
                         shingle_words: int, seed: int) -> list[tuple[int, int]]:
    """(dropped, kept) index pairs: each later row whose shingle set has Jaccard >= `threshold` with
    an earlier row that was kept, paired with the first such row. Rows are visited in order and
    only kept rows are indexed, so of a group of near duplicates the first one stays."""
    sketches = sketch(conversations, num_perm, shingle_words, seed)
    index = _lsh_index(threshold, num_perm)
    pairs = []
    for row, signature in enumerate(sketches.signatures):
        minhash = _lean(signature, seed)
        # Sorted, so that the reported match does not depend on LSH's set order.
        match = next((kept for kept in sorted(index.query(minhash))
                      if jaccard(sketches.shingles[row], sketches.shingles[kept]) >= threshold), None)
        if match is None:
            index.insert(row, minhash, check_duplication=False)
        else:
            pairs.append((row, match))
    return pairs


def near_duplicates(conversations: Sequence[dict[str, Any]], threshold: float, num_perm: int,
                    shingle_words: int, seed: int) -> list[int]:
    """Indices of the rows to drop as near duplicates of an earlier kept row (see
    `near_duplicate_pairs`). Exact duplicates (Jaccard 1) are among them."""
    return [row for row, _ in near_duplicate_pairs(conversations, threshold, num_perm, shingle_words, seed)]


def leaked(train: Sequence[dict[str, Any]], held_out: Sequence[dict[str, Any]], threshold: float,
           num_perm: int, shingle_words: int, seed: int) -> list[int]:
    """Indices of the `train` rows that exactly or nearly (Jaccard >= `threshold`) duplicate a
    `held_out` row (test and eval): training on them would leak the held-out answers."""
    held = sketch(held_out, num_perm, shingle_words, seed)
    index = _lsh_index(threshold, num_perm)
    for row, signature in enumerate(held.signatures):
        index.insert(row, _lean(signature, seed), check_duplication=False)
    held_digests = set(held.digests)
    candidates = sketch(train, num_perm, shingle_words, seed)
    return [row for row, signature in enumerate(candidates.signatures)
            if candidates.digests[row] in held_digests
            or any(jaccard(candidates.shingles[row], held.shingles[match]) >= threshold
                   for match in index.query(_lean(signature, seed)))]
