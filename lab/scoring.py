"""ROUGE and response-length scoring of predictions against references."""

from __future__ import annotations

import statistics
from typing import Any

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def rouge_scores(predictions: list[str], references: list[str], use_stemmer: bool) -> list[dict[str, dict]]:
    """Per-example ROUGE precision, recall and F-measure, exactly as rouge-score computes them."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)
    scored = []
    for prediction, reference in zip(predictions, references, strict=True):
        # rouge-score's signature is score(target, prediction): the reference comes first.
        result = scorer.score(reference, prediction)
        scored.append({name: {"precision": round(result[name].precision, 6), "recall": round(result[name].recall, 6),
                              "fmeasure": round(result[name].fmeasure, 6)} for name in ROUGE_TYPES})
    return scored


def words(text: str) -> int:
    return len(text.split())


def word_length_stats(texts: list[str]) -> dict[str, float]:
    counts = [words(t) for t in texts]
    return {"mean": round(statistics.fmean(counts), 2), "median": float(statistics.median(counts))} if counts else {}


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ROUGE F-measures (top-level keys, for `dvc metrics diff`), precision/recall, lengths."""
    if not rows:
        raise ValueError("no predictions to aggregate")
    summary: dict[str, Any] = {
        name: round(statistics.fmean(r["scores"][name]["fmeasure"] for r in rows), 4) for name in ROUGE_TYPES
    }
    for part in ("precision", "recall"):
        summary[part] = {name: round(statistics.fmean(r["scores"][name][part] for r in rows), 4)
                         for name in ROUGE_TYPES}
    summary["words"] = {
        "prediction": word_length_stats([r["prediction"] for r in rows]),
        "reference": word_length_stats([r["reference"] for r in rows]),
    }
    summary["examples"] = len(rows)
    summary["hit_max_new_tokens_share"] = round(sum(r["hit_max_new_tokens"] for r in rows) / len(rows), 4)
    summary["prompts_truncated"] = sum(r["prompt_truncated"] for r in rows)
    return summary
