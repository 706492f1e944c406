"""Paired statistics for comparing the base and fine-tuned models on the same eval examples.

Every function here is pure (numpy, and rouge-score through lab.eval.scoring). Base and fine-tuned rows are aligned by
position: row i of both lists is the same eval example, which is what makes the bootstrap paired.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lab.core.text import word_count
from lab.eval.scoring import make_scorer, metric_value

# Bound the resample index matrix (resamples x n) to ~2M entries per chunk (16 MB of int64), so a
# large eval set with 10k resamples does not allocate gigabytes; the chunks are drawn from one
# generator in order, so the result does not depend on the chunk size.
_CHUNK_ENTRIES = 2_000_000
_WORD = re.compile(r"\S+")


def _as_array(values: Sequence[float], name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name}: expected a non-empty 1-D sequence of numbers")
    return array


def _check_bootstrap_args(resamples: int, confidence: float) -> None:
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _resampled_means(columns: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Means of each column of `columns` (n x k) over `resamples` bootstrap samples -> (resamples x k)."""
    n = columns.shape[0]
    rng = np.random.default_rng(seed)
    rows_per_chunk = max(1, _CHUNK_ENTRIES // n)
    means = np.empty((resamples, columns.shape[1]))
    for start in range(0, resamples, rows_per_chunk):
        stop = min(resamples, start + rows_per_chunk)
        indices = rng.integers(0, n, size=(stop - start, n))
        # columns[indices] is (chunk, n, k): the same example indices for every column -> paired.
        means[start:stop] = columns[indices].mean(axis=1)
    return means


def _percentile_ci(samples: np.ndarray, confidence: float) -> list[float]:
    alpha = 1.0 - confidence
    low, high = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    return [round(float(low), 6), round(float(high), 6)]


def bootstrap_mean_ci(values: Sequence[float], resamples: int, seed: int, confidence: float) -> list[float]:
    """Percentile bootstrap confidence interval [low, high] of the mean of `values`.

    Draws the same indices as `paired_bootstrap` with the same seed, so its interval equals that
    function's `base_ci` when given the base values.
    """
    _check_bootstrap_args(resamples, confidence)
    array = _as_array(values, "values")
    return _percentile_ci(_resampled_means(array[:, None], resamples, seed)[:, 0], confidence)


def paired_bootstrap(base: Sequence[float], finetuned: Sequence[float], resamples: int, seed: int,
                     confidence: float) -> dict[str, Any]:
    """Paired percentile bootstrap of the mean difference finetuned - base over the same examples.

    Each resample draws n example indices with replacement (numpy default_rng(seed)) and applies
    them to both models, so per-example difficulty cancels out. `ci_low`/`ci_high` are percentiles
    of the resampled differences. `p_value` is two-sided, from the same bootstrap distribution:
    2 * min(share of resampled differences <= 0, share >= 0), capped at 1 -- the smallest
    1 - confidence at which the percentile interval would exclude 0. A bootstrap cannot resolve
    p-values below 1/resamples, so p_value is floored there and `p_value_at_floor` says so (report
    it as "p < p_value_floor", not as an exact value).
    """
    _check_bootstrap_args(resamples, confidence)
    base_values, finetuned_values = _as_array(base, "base"), _as_array(finetuned, "finetuned")
    if base_values.shape != finetuned_values.shape:
        raise ValueError(f"paired samples differ in length: {base_values.size} vs {finetuned_values.size}")
    # Third column: per-example differences, so the resampled difference is computed exactly from
    # them (a constant shift gives a zero-width interval, not float noise from two means).
    columns = np.stack([base_values, finetuned_values, finetuned_values - base_values], axis=1)
    means = _resampled_means(columns, resamples, seed)
    differences = means[:, 2]
    floor = 1.0 / resamples
    tail = min(float(np.mean(differences <= 0)), float(np.mean(differences >= 0)))
    p_value = min(1.0, 2.0 * tail)
    ci_low, ci_high = _percentile_ci(differences, confidence)
    return {
        "base_mean": round(float(base_values.mean()), 6),
        "finetuned_mean": round(float(finetuned_values.mean()), 6),
        "difference": round(float(columns[:, 2].mean()), 6),
        "ci_low": ci_low,
        "ci_high": ci_high,
        "p_value": round(max(p_value, floor), 6),
        "p_value_floor": floor,
        "p_value_at_floor": p_value <= floor,
        "p_value_method": "two-sided paired percentile bootstrap: 2*min(P(diff<=0), P(diff>=0)), capped at 1",
        "base_ci": _percentile_ci(means[:, 0], confidence),
        "finetuned_ci": _percentile_ci(means[:, 1], confidence),
        "resamples": resamples,
        "confidence": confidence,
        "examples": int(base_values.size),
    }


def check_aligned(rows_base: Sequence[Mapping[str, Any]], rows_finetuned: Sequence[Mapping[str, Any]]) -> None:
    """Raise ValueError unless both row lists hold the same example ids in the same order."""
    ids_base = [r.get("id") for r in rows_base]
    ids_finetuned = [r.get("id") for r in rows_finetuned]
    if ids_base != ids_finetuned:
        raise ValueError("base and fine-tuned rows are not the same examples in the same order")


def metric_arrays(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-example values of each metric (the F-measure for ROUGE), keyed by metric name."""
    return {name: np.array([metric_value(r, name) for r in rows], dtype=np.float64) for name in metrics}


def covered_pairs(base: Sequence[float | None], finetuned: Sequence[float | None],
                  name: str) -> tuple[np.ndarray, np.ndarray]:
    """Both models' values of a metric defined on a subset of the examples (None where it does not apply),
    kept only where it applies and in order, so a paired bootstrap of them pairs the same examples.

    Where a metric applies depends on the example, not on the model: both sides must leave out the same
    positions (ValueError otherwise). The arrays are empty when the metric covers no example.
    """
    if len(base) != len(finetuned):
        raise ValueError(f"{name}: {len(base)} base values but {len(finetuned)} fine-tuned values")
    if [value is None for value in base] != [value is None for value in finetuned]:
        raise ValueError(f"{name}: base and fine-tuned rows cover different examples")
    return (np.array([v for v in base if v is not None], dtype=np.float64),
            np.array([v for v in finetuned if v is not None], dtype=np.float64))


def per_source(sources: Sequence[str], base: Mapping[str, Sequence[float]],
               finetuned: Mapping[str, Sequence[float]]) -> dict[str, dict[str, Any]]:
    """Mean of every metric per source, for both models, sorted by source.

    `base` and `finetuned` map a metric name to its per-example values (e.g. from `metric_arrays`),
    aligned with `sources`. Returns {source: {"count": n, "metrics": {metric: {"base", "finetuned",
    "difference"}}}}. Small sources give noisy means: read them together with "count".
    """
    labels = np.asarray(sources)
    if set(base) != set(finetuned):
        raise ValueError("base and fine-tuned metrics differ")
    arrays = {side: {m: np.asarray(v, dtype=np.float64) for m, v in values.items()}
              for side, values in (("base", base), ("finetuned", finetuned))}
    for side in arrays.values():
        for name, values in side.items():
            if values.shape != labels.shape:
                raise ValueError(f"{name}: {values.size} values for {labels.size} sources")
    result: dict[str, dict[str, Any]] = {}
    for source in sorted(set(labels.tolist())):
        mask = labels == source
        metrics = {}
        for name in sorted(base):
            base_mean = float(arrays["base"][name][mask].mean())
            finetuned_mean = float(arrays["finetuned"][name][mask].mean())
            metrics[name] = {"base": round(base_mean, 6), "finetuned": round(finetuned_mean, 6),
                             "difference": round(finetuned_mean - base_mean, 6)}
        result[source] = {"count": int(mask.sum()), "metrics": metrics}
    return result


def length_ratio(predictions: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """Per-example prediction words / reference words (whitespace words), with mean and median.

    An empty reference counts as one word, so the ratio stays finite (and JSON-safe).
    """
    if len(predictions) != len(references) or not predictions:
        raise ValueError("need the same, non-zero number of predictions and references")
    predicted = np.array([word_count(p) for p in predictions], dtype=np.float64)
    reference = np.array([max(word_count(r), 1) for r in references], dtype=np.float64)
    ratios = predicted / reference
    return {"mean": round(float(ratios.mean()), 4), "median": round(float(np.median(ratios)), 4),
            "per_example": [round(float(r), 6) for r in ratios]}


def truncate_words(text: str, budget: int) -> str:
    """The prefix of `text` that ends with its `budget`-th whitespace word (the text itself if shorter).

    A prefix of the original, not a re-join: line breaks survive (rougeLsum splits on them) and an
    uncut text is returned untouched, so its ROUGE equals the plain ROUGE exactly.
    """
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    if budget == 0:
        return ""
    for count, match in enumerate(_WORD.finditer(text), start=1):
        if count == budget:
            return text[:match.end()]
    return text


def length_matched_scores(base_predictions: Sequence[str], finetuned_predictions: Sequence[str],
                          references: Sequence[str], use_stemmer: bool, rouge_types: Sequence[str],
                          tokenizer: str) -> dict[str, Any]:
    """ROUGE F-measures with both models' predictions cut to the same word budget per example.

    budget = min(base words, fine-tuned words) (whitespace words), so the longer prediction loses
    its tail and neither model is credited for recall bought by extra length. Returns
    {"budget": [int], "base": {rouge type: [F]}, "finetuned": {rouge type: [F]}}. An empty
    prediction gives a budget of 0: both sides score 0 on that example. `use_stemmer`,
    `rouge_types` and `tokenizer` mean what they mean in lab.eval.scoring.rouge_scores: pass the
    evaluate config's values so the matched scores compare with the plain ones.
    """
    if not len(base_predictions) == len(finetuned_predictions) == len(references):
        raise ValueError("base predictions, fine-tuned predictions and references differ in length")
    rouge_types = tuple(rouge_types)
    scorer = make_scorer(rouge_types, use_stemmer, tokenizer)
    budgets: list[int] = []
    scores: dict[str, dict[str, list[float]]] = {side: {n: [] for n in rouge_types} for side in ("base", "finetuned")}
    for base_text, finetuned_text, reference in zip(base_predictions, finetuned_predictions, references, strict=True):
        budget = min(word_count(base_text), word_count(finetuned_text))
        budgets.append(budget)
        for side, text in (("base", base_text), ("finetuned", finetuned_text)):
            # rouge-score's signature is score(target, prediction): the reference comes first.
            result = scorer.score(reference, truncate_words(text, budget))
            for name in rouge_types:
                scores[side][name].append(round(result[name].fmeasure, 6))
    return {"budget": budgets, **scores}


def cutoff_share(rows: Sequence[Mapping[str, Any]]) -> float:
    """Share of rows whose generation stopped at max_new_tokens (answer possibly cut off)."""
    if not rows:
        raise ValueError("no rows")
    return round(sum(bool(r["hit_max_new_tokens"]) for r in rows) / len(rows), 4)


def describe_length_effect(plain_gain: float, matched_gain: float, base_length_ratio: float,
                           finetuned_length_ratio: float, metric: str, tolerance: float = 0.0005) -> str:
    """One sentence on how much of the fine-tuned model's gain survives when length is held equal.

    Gains are fine-tuned minus base means (plain, and length-matched); length ratios are
    prediction/reference words (the median is the robust choice); `metric` names the metric in the
    sentence (e.g. "ROUGE-L"). Differences within `tolerance`
    (default: what rounds away at three decimals) count as equal. The wording follows the numbers:
    no gain to explain, grows, holds, shrinks, or reverses.
    """
    lengths = (f"its answers are {finetuned_length_ratio:.1f}× the reference length "
               f"against {base_length_ratio:.1f}× for the base model.")
    if plain_gain <= tolerance:
        return (f"The fine-tuned model has no {metric} gain to explain ({plain_gain:+.3f}; "
                f"{matched_gain:+.3f} with length held equal); {lengths}")
    lead = f"Holding length equal, the fine-tuned model's {metric} gain"
    if matched_gain < -tolerance:
        return f"{lead} of {plain_gain:+.3f} reverses to {matched_gain:+.3f}; {lengths}"
    if matched_gain > plain_gain + tolerance:
        return f"{lead} grows from {plain_gain:+.3f} to {matched_gain:+.3f}; {lengths}"
    if matched_gain >= plain_gain - tolerance:
        return f"{lead} holds at {plain_gain:+.3f} ({matched_gain:+.3f} matched); {lengths}"
    survives = max(matched_gain, 0.0) / plain_gain
    return (f"{lead} shrinks from {plain_gain:+.3f} to {matched_gain:+.3f} "
            f"({survives:.0%} of it survives); {lengths}")


def _gallery_record(base_row: Mapping[str, Any], finetuned_row: Mapping[str, Any], metric: str) -> dict[str, Any]:
    """One gallery.json entry: the example, both predictions and their scores on `metric`."""
    base_score, finetuned_score = metric_value(base_row, metric), metric_value(finetuned_row, metric)
    return {"id": base_row.get("id"), "source": base_row.get("source"), "input": base_row.get("input"),
            "reference": base_row["reference"], "base_prediction": base_row["prediction"],
            "finetuned_prediction": finetuned_row["prediction"], "base_score": round(base_score, 6),
            "finetuned_score": round(finetuned_score, 6), "difference": round(finetuned_score - base_score, 6)}


def gallery(rows_base: Sequence[Mapping[str, Any]], rows_finetuned: Sequence[Mapping[str, Any]],
            metric: str, count: int) -> dict[str, list[dict[str, Any]]]:
    """The examples where fine-tuning helped and hurt most on `metric` (F-measure for ROUGE).

    Returns {"largest_gain": [...], "largest_loss": [...]}, each up to `count` items, largest
    first. Only real gains (> 0) and real losses (< 0) are listed, so a list may be shorter than
    `count` or empty. Ties keep eval order.
    """
    check_aligned(rows_base, rows_finetuned)
    differences = (metric_arrays(rows_finetuned, [metric])[metric] - metric_arrays(rows_base, [metric])[metric])
    # Stable sorts so equal differences keep eval order (deterministic output).
    gains = [int(i) for i in np.argsort(-differences, kind="stable") if differences[i] > 0][:count]
    losses = [int(i) for i in np.argsort(differences, kind="stable") if differences[i] < 0][:count]
    return {"largest_gain": [_gallery_record(rows_base[i], rows_finetuned[i], metric) for i in gains],
            "largest_loss": [_gallery_record(rows_base[i], rows_finetuned[i], metric) for i in losses]}
