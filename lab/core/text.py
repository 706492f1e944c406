"""The lab's unit of length, shared by prepare (filters, data statistics) and evaluation (response lengths):
kept here, below both, so that an edit to the ROUGE code never reruns prepare."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def word_count(text: str) -> int:
    """Whitespace words: the unit of every length the lab reports."""
    return len(text.split())


def length_stats(values: Sequence[int]) -> dict[str, float]:
    """Mean, median and max of some lengths (zeros when there are none)."""
    if not values:
        return {"mean": 0.0, "median": 0.0, "max": 0}
    return {"mean": round(statistics.fmean(values), 2), "median": float(statistics.median(values)),
            "max": max(values)}
