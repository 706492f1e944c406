"""The compare stage's statistics: how sure we are that fine-tuning changed the scores, and why they moved.

`compare` turns both models' per-example predictions into metrics/compare.json's content: a paired
bootstrap (confidence interval and two-sided p-value) of fine-tuned minus base for every metric, each
model's own mean with its interval, the same for the format metrics over only the examples each covers,
per-source means, and the length effects (length ratios, cut-off shares, ROUGE with both models held to
the same word budget, and a sentence computed from those numbers); also the gallery of the examples that
gained and lost most, and per-example paired rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lab.core.config import ComparisonSetup
from lab.eval import stats
from lab.eval.scoring import metric_label

SIDES = ("base", "finetuned")


def bootstrap_all(setup: ComparisonSetup, base: Mapping[str, Sequence[float]],
                  finetuned: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    """Paired bootstrap of every metric's per-example values, in the flat shape `dvc metrics` reads."""
    return {name: _paired_test(setup, base[name], finetuned[name]) for name in base}


def _paired_test(setup: ComparisonSetup, base: Sequence[float], finetuned: Sequence[float]) -> dict[str, Any]:
    """One metric's paired bootstrap (compare params, seeded by `seed`), flat for `dvc metrics`."""
    compare = setup.compare
    test = stats.paired_bootstrap(base, finetuned, compare.bootstrap_resamples, setup.seed, compare.confidence)
    return {
        "base": test["base_mean"], "base_ci_low": test["base_ci"][0], "base_ci_high": test["base_ci"][1],
        "finetuned": test["finetuned_mean"], "finetuned_ci_low": test["finetuned_ci"][0],
        "finetuned_ci_high": test["finetuned_ci"][1],
        "difference": test["difference"], "ci_low": test["ci_low"], "ci_high": test["ci_high"],
        "p_value": test["p_value"], "p_value_at_floor": test["p_value_at_floor"],
    }


def format_tests(setup: ComparisonSetup, base_rows: Sequence[Mapping[str, Any]],
                 finetuned_rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Paired bootstrap of each format metric (lab.eval.format_metrics) over only the examples it covers, with
    their count in "examples". A metric that covers no example is left out: no interval, no misleading 0.
    Rows written before the format metrics existed have none, which gives {}."""
    names = list(dict.fromkeys(name for row in base_rows for name in (row.get("format_scores") or {})))
    result = {}
    for name in names:
        base, finetuned = stats.covered_pairs([(r.get("format_scores") or {}).get(name) for r in base_rows],
                                              [(r.get("format_scores") or {}).get(name) for r in finetuned_rows],
                                              name)
        if base.size:
            result[name] = {**_paired_test(setup, base, finetuned), "examples": int(base.size)}
    return result


def length_effects(setup: ComparisonSetup, base_rows: Sequence[Mapping[str, Any]],
                   finetuned_rows: Sequence[Mapping[str, Any]],
                   plain: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Length ratios, cut-off shares and the length-matched comparison; also the per-example rows.

    `plain` is `bootstrap_all` of the unmatched scores: the length sentence compares its headline
    difference with the length-matched one.
    """
    evaluate, headline = setup.evaluate, setup.compare.headline_metric
    references = [r["reference"] for r in base_rows]
    predictions = {"base": [r["prediction"] for r in base_rows], "finetuned": [r["prediction"] for r in finetuned_rows]}
    ratios = {side: stats.length_ratio(predictions[side], references) for side in SIDES}
    matched = stats.length_matched_scores(predictions["base"], predictions["finetuned"], references,
                                          evaluate.rouge_use_stemmer, evaluate.rouge_types, evaluate.rouge_tokenizer)
    matched_tests = bootstrap_all(setup, matched["base"], matched["finetuned"])
    effects: dict[str, Any] = {
        "length_ratio": {side: {"mean": ratios[side]["mean"], "median": ratios[side]["median"]} for side in SIDES},
        "cutoff_share": {"base": stats.cutoff_share(base_rows), "finetuned": stats.cutoff_share(finetuned_rows)},
        "matched_budget_words_mean": round(sum(matched["budget"]) / len(matched["budget"]), 2),
        "matched": matched_tests,
    }
    # Only ROUGE can be length-matched: a semantic headline gets no sentence.
    if headline in matched_tests:
        effects["summary"] = stats.describe_length_effect(
            plain[headline]["difference"], matched_tests[headline]["difference"], ratios["base"]["median"],
            ratios["finetuned"]["median"], metric_label(headline))
    paired_rows = [
        {"id": row.get("id"), "source": row.get("source"), "budget_words": budget,
         "length_ratio": {side: ratios[side]["per_example"][i] for side in SIDES},
         "matched": {side: {name: matched[side][name][i] for name in evaluate.rouge_types} for side in SIDES}}
        for i, (row, budget) in enumerate(zip(base_rows, matched["budget"], strict=True))
    ]
    return effects, paired_rows


def compare(setup: ComparisonSetup, base_rows: Sequence[Mapping[str, Any]],
            finetuned_rows: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """All paired statistics of one evaluation; returns (metrics, gallery, per-example paired rows).

    Row i of both lists must be the same eval example (ValueError otherwise): that is what makes
    the bootstrap paired.
    """
    if not base_rows:
        raise ValueError("no eval predictions to compare")
    stats.check_aligned(base_rows, finetuned_rows)
    names = list(base_rows[0]["scores"])
    base, finetuned = stats.metric_arrays(base_rows, names), stats.metric_arrays(finetuned_rows, names)
    plain = bootstrap_all(setup, base, finetuned)
    effects, paired_rows = length_effects(setup, base_rows, finetuned_rows, plain)
    sources = [str(r.get("source") or "unknown") for r in base_rows]
    compare_config = setup.compare
    metrics = {
        "examples": len(base_rows),
        "bootstrap": {"resamples": compare_config.bootstrap_resamples, "confidence": compare_config.confidence,
                      "seed": setup.seed, "paired": True},
        "metrics": plain,
        "length": effects,
        "per_source": stats.per_source(sources, base, finetuned),
        "format_metrics": format_tests(setup, base_rows, finetuned_rows),
    }
    gallery = stats.gallery(base_rows, finetuned_rows, compare_config.headline_metric,
                            compare_config.gallery_examples)
    return metrics, {"metric": compare_config.headline_metric, **gallery}, paired_rows
