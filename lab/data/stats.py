"""The prepare stage's statistics for metrics/data.json: the overall counts and lengths
(`dataset_stats`), and the per-source accounting (`SourceLedger`) that the report's Data section shows.

In the per-source accounting, every row of a source is counted once: it comes in (`in`: valid
conversations), is removed by one step (a filter, exact or near dedup, the leak check), or ends in one
place (test, validation, not sampled, train). So, per source,
    in = removed by every step + test + validation + not_sampled + train_unique,
and `train` = train_unique + repeats (up-sampling, data.mix.proportions).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from lab.core.text import length_stats, word_count
from lab.data.filters import answer_words

# Where the rows that are not removed end up, in the order the report shows them.
PLACES = ("test", "validation", "not_sampled", "train")


def sources(rows: Iterable[dict[str, Any]]) -> Counter[str]:
    """Rows per source."""
    return Counter(row["source"] for row in rows)


class SourceLedger:
    """Counts per source and step, filled in as prepare goes; `to_dict` is data.json's per_source."""

    def __init__(self, conversations: list[dict[str, Any]]) -> None:
        self.incoming = sources(conversations)
        self.answer_words_in = _answer_words_by_source(conversations)
        self.removed: dict[str, Counter[str]] = {}
        self.placed: dict[str, Counter[str]] = {}
        self.repeats: Counter[str] = Counter()
        self.answer_words_train: dict[str, list[int]] = {}

    def remove(self, step: str, rows: Iterable[dict[str, Any]]) -> None:
        """Count `rows` as removed by `step` (a filter's name, exact_duplicates, near_duplicates, leaked)."""
        self.removed.setdefault(step, Counter()).update(sources(rows))

    def remove_difference(self, step: str, before: list[dict[str, Any]], after: list[dict[str, Any]]) -> None:
        """Count what `step` removed as the rows per source of `before` less those of `after`."""
        self.removed.setdefault(step, Counter()).update(sources(before) - sources(after))

    def place(self, place: str, rows: Iterable[dict[str, Any]]) -> None:
        """Count `rows` as ending in `place` (one of PLACES; train rows once each, repeats apart)."""
        self.placed.setdefault(place, Counter()).update(sources(rows))

    def train(self, rows: list[dict[str, Any]], repeats: Counter[str]) -> None:
        """The final training rows (repeats included) and the repeats among them per source."""
        self.repeats = Counter(repeats)
        self.place("train", rows)
        self.placed["train"].subtract(self.repeats)  # `train` counts distinct rows; repeats are apart
        self.answer_words_train = _answer_words_by_source(rows)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Per source: in, removed by each step, where the rest went, repeats, train rows (repeats
        included), and the answer-word distributions of the rows in and of the training rows."""
        steps = list(self.removed)
        result = {}
        for source in sorted(self.incoming):
            removed = {step: self.removed[step][source] for step in steps}
            placed = {place: self.placed.get(place, Counter())[source] for place in PLACES}
            result[source] = {
                "in": self.incoming[source], "removed": removed,
                **{place: count for place, count in placed.items() if place != "train"},
                "train_unique": placed["train"], "repeats": self.repeats[source],
                "train": placed["train"] + self.repeats[source],
                "answer_words_in": length_stats(self.answer_words_in.get(source, [])),
                "answer_words_train": length_stats(self.answer_words_train.get(source, [])),
            }
        return result


def dataset_stats(
    raw_count: int, valid_count: int, dropped: Counter[str], train: list[dict], test: list[dict],
    eval_examples: list[dict]
) -> dict[str, Any]:
    """Row counts, drops by reason and word lengths, for metrics/data.json. `valid_count` is the
    conversations the rows made: a format may group rows (OpenAssistant: a message a row, a
    conversation a tree), so it is not always raw_count less the dropped rows."""
    answers = [word_count(m["content"]) for c in train for m in c["messages"] if m["role"] == "assistant"]
    return {
        "rows": {"raw": raw_count, "valid": valid_count,
                 "train": len(train), "test": len(test), "eval": len(eval_examples)},
        "dropped": dict(sorted(dropped.items())),
        "turns_per_conversation": length_stats([len(c["messages"]) for c in train]),
        "train_answer_words": length_stats(answers),
        "eval_reference_words": length_stats([word_count(e["reference"]) for e in eval_examples]),
        "eval_sources": dict(sorted(Counter(e["source"] for e in eval_examples).items())),
        "train_sources": dict(sorted(Counter(c["source"] for c in train).items())),
    }


def _answer_words_by_source(rows: Iterable[dict[str, Any]]) -> dict[str, list[int]]:
    lengths: dict[str, list[int]] = {}
    for row in rows:
        lengths.setdefault(row["source"], []).append(answer_words(row))
    return lengths
