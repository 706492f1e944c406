"""ROUGE and response-length scoring of predictions against references."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from lab.core.choices import RougeTokenizer, allowed
from lab.core.text import length_stats, word_count

_LABELS = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rouge3": "ROUGE-3", "rouge4": "ROUGE-4", "rougeL": "ROUGE-L",
           "rougeLsum": "ROUGE-Lsum", "semantic": "Semantic similarity", "format_valid": "Format valid",
           "math_exact_match": "Math exact match"}


def metric_label(name: str) -> str:
    """How reports name a metric key ("rougeL" -> "ROUGE-L")."""
    return _LABELS.get(name, name)


class WhitespaceTokenizer:
    """Lowercased whitespace tokens: keeps code tokens like `np.sort(a)` whole, unlike rouge-score's
    default, which replaces every non-alphanumeric character with a space."""

    def tokenize(self, text: str) -> list[str]:
        return text.lower().split()


def make_scorer(rouge_types: Sequence[str], use_stemmer: bool, tokenizer: str):
    """rouge-score's RougeScorer with the configured types, stemming and tokenizer
    (evaluate.rouge_types, evaluate.rouge_use_stemmer, evaluate.rouge_tokenizer)."""
    from rouge_score import rouge_scorer

    if tokenizer not in allowed(RougeTokenizer):
        raise ValueError(f"unknown ROUGE tokenizer {tokenizer!r}; known: {allowed(RougeTokenizer)}")
    # rougeLsum takes each line as a sentence. (split_summaries=True would need NLTK's punkt data,
    # a download that an offline machine cannot make.)
    return rouge_scorer.RougeScorer(list(rouge_types), use_stemmer=use_stemmer, split_summaries=False,
                                    tokenizer=WhitespaceTokenizer() if tokenizer == "whitespace" else None)


def rouge_scores(predictions: list[str], references: list[str], use_stemmer: bool, rouge_types: Sequence[str],
                 tokenizer: str) -> list[dict[str, dict]]:
    """Per-example ROUGE precision, recall and F-measure, exactly as rouge-score computes them."""
    scorer = make_scorer(rouge_types, use_stemmer, tokenizer)
    scored = []
    for prediction, reference in zip(predictions, references, strict=True):
        # rouge-score's signature is score(target, prediction): the reference comes first.
        result = scorer.score(reference, prediction)
        scored.append({name: {"precision": round(result[name].precision, 6), "recall": round(result[name].recall, 6),
                              "fmeasure": round(result[name].fmeasure, 6)} for name in rouge_types})
    return scored


def metric_value(row: Mapping[str, Any], metric: str) -> float:
    """One row's score for `metric`: the F-measure of a ROUGE dict, or a plain number (e.g. semantic)."""
    score = row["scores"][metric]
    return float(score["fmeasure"] if isinstance(score, Mapping) else score)


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean of every score (ROUGE F-measures, semantic similarity) as top-level keys, for
    `dvc metrics diff`; ROUGE precision/recall; lengths; how generation ended."""
    if not rows:
        raise ValueError("no predictions to aggregate")
    metric_names = list(rows[0]["scores"])
    rouge_types = [name for name in metric_names if isinstance(rows[0]["scores"][name], dict)]
    summary: dict[str, Any] = {
        name: round(statistics.fmean(metric_value(r, name) for r in rows), 4) for name in metric_names
    }
    for part in ("precision", "recall"):
        summary[part] = {name: round(statistics.fmean(r["scores"][name][part] for r in rows), 4)
                         for name in rouge_types}
    summary["words"] = {
        "prediction": length_stats([word_count(r["prediction"]) for r in rows]),
        "reference": length_stats([word_count(r["reference"]) for r in rows]),
    }
    summary["examples"] = len(rows)
    summary["hit_max_new_tokens_share"] = round(sum(r["hit_max_new_tokens"] for r in rows) / len(rows), 4)
    summary["prompts_truncated"] = sum(r["prompt_truncated"] for r in rows)
    return summary

