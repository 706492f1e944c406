"""The make-up and the order of the training split (`training_rows`): a seeded sample capped at
data.max_train_examples, or target proportions by source (data.mix.proportions); then the shuffled
order the trainer draws, or the curriculum order it reads as written (data.order, data.curriculum_key).

Proportions apply to the training pool, after the test split and the validation rows are taken out,
in place of data.max_train_examples' plain seeded sample, which they combine with like this:
- shares (floats) are relative weights (normalised to sum 1) that split the training total, which is
  data.max_train_examples, or the size of the whole training pool when that is null;
- counts (ints) are the rows per source, whatever the total (lab.core.config refuses counts that sum to
  more than data.max_train_examples, so the cap is never silently broken).
Sources the proportions leave out get no training rows. A source with more rows than its target is
sampled without replacement (seeded); one with fewer has all its rows repeated as many whole times as
fit, plus a seeded sample of them for the rest: those extra rows are its `repeats`.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

from lab.core.config import DataConfig
from lab.core.errors import DataError
from lab.data.filters import answer_words


def target_counts(available: Counter[str], proportions: dict[str, int | float], total: int) -> dict[str, int]:
    """Training rows per source: counts as given, or `total` split by the shares (largest remainder,
    so the counts sum to `total` exactly; ties go to the source first by name). A source named in
    the proportions but absent from `available` is a DataError listing the sources present."""
    unknown = sorted(set(proportions) - set(available))
    if unknown:
        present = ", ".join(f"{name} ({count})" for name, count in sorted(available.items()))
        raise DataError(f"data.mix.proportions: {unknown} not among the sources of the training pool; sources "
                        f"present (rows): {present}")
    if all(isinstance(value, int) for value in proportions.values()):
        return {name: int(value) for name, value in sorted(proportions.items())}
    weight = sum(proportions.values())
    exact = {name: total * value / weight for name, value in sorted(proportions.items())}
    counts = {name: math.floor(value) for name, value in exact.items()}
    short = total - sum(counts.values())
    for name in sorted(exact, key=lambda name: (-(exact[name] - counts[name]), name))[:short]:
        counts[name] += 1
    return counts


def draw(indices: list[int], count: int, rng: random.Random) -> list[int]:
    """`count` of `indices`: a sample without replacement when there are enough; else all of them as
    many whole times as fit, plus a sample without replacement for the rest (`indices` is non-empty)."""
    whole, rest = divmod(count, len(indices))
    return indices * whole + rng.sample(indices, rest)


def mix_training(pool: list[dict[str, Any]], data: DataConfig, seed: int) -> tuple[list[dict[str, Any]], Counter[str]]:
    """The training rows drawn from `pool` to data.mix.proportions (see the module docstring), in pool
    order with each repeat next to its original, and the repeats per source."""
    proportions = data.mix.proportions
    assert proportions is not None, "mix_training needs data.mix.proportions"
    by_source: dict[str, list[int]] = {}
    for index, row in enumerate(pool):
        by_source.setdefault(row["source"], []).append(index)
    available = Counter({name: len(indices) for name, indices in by_source.items()})
    total = data.max_train_examples if data.max_train_examples is not None else len(pool)
    chosen: list[int] = []
    repeats: Counter[str] = Counter()
    for name, count in target_counts(available, proportions, total).items():
        # One generator per source: a source's sample does not depend on the others' targets.
        chosen += draw(by_source[name], count, random.Random(f"{seed}:{name}"))
        repeats[name] = max(0, count - available[name])
    return [pool[i] for i in sorted(chosen)], +repeats


def curriculum_order(rows: list[dict[str, Any]], data: DataConfig, seed: int) -> list[dict[str, Any]]:
    """`rows` sorted by data.curriculum_key, ties in a seeded random order: length (the answer's
    words, shortest first), score (lowest first, rows without one before all; the best rows come
    last) or domain (sources in data.curriculum_domains order, then the others by name)."""
    domains = data.curriculum_domains
    keys = {
        "length": lambda row: (answer_words(row),),
        "score": lambda row: (row.get("score") is not None, row.get("score") or 0.0),
        "domain": lambda row: (domains.index(row["source"]) if row["source"] in domains else len(domains),
                               row["source"]),
    }
    key = keys[data.curriculum_key]
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)  # sorted() is stable: ties keep this seeded order
    return [rows[i] for i in sorted(order, key=lambda i: key(rows[i]))]


def sample(rows: Sequence[dict[str, Any]], count: int | None, seed: int) -> list[dict[str, Any]]:
    """A seeded subset of `count` rows in their original order (all rows when count is None)."""
    if count is None or count >= len(rows):
        return list(rows)
    chosen = sorted(random.Random(seed).sample(range(len(rows)), count))
    return [rows[i] for i in chosen]


def training_rows(pool: list[dict[str, Any]], data: DataConfig,
                  seed: int) -> tuple[list[dict[str, Any]], Counter[str]]:
    """The training rows and the up-sampling repeats per source. With data.mix.proportions, drawn to
    those (`mix_training`); else a seeded sample of data.max_train_examples rows (all when null) in pool
    order. With data.order curriculum, sorted by data.curriculum_key (`curriculum_order`),
    the order data/train.jsonl is written and the trainer reads."""
    if data.mix.proportions is not None:
        train, repeats = mix_training(pool, data, seed)
    else:
        train, repeats = sample(pool, data.max_train_examples, seed), Counter[str]()
    if data.order == "curriculum":
        train = curriculum_order(train, data, seed)
    return train, repeats


def not_sampled(pool: list[dict[str, Any]], train: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pool rows that did not make it into the training rows (rows compared by identity)."""
    chosen = {id(row) for row in train}
    return [row for row in pool if id(row) not in chosen]
