"""Stage compare: how sure we are that fine-tuning changed the scores, and why they moved.

Reads both models' per-example predictions and writes metrics/compare.json: a paired
bootstrap (confidence interval and two-sided p-value) of fine-tuned minus base for every
metric, each model's own mean with its interval, per-source means, and the length effects
(length ratios, cut-off shares, ROUGE with both models held to the same word budget, and a
sentence computed from those numbers). metrics/gallery.json holds the examples that gained
and lost most; metrics/predictions/paired.jsonl the per-example length-matched scores.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lab import stats
from lab.cli import run_stage
from lab.config import LabConfig, load_config
from lab.io import read_jsonl, write_json, write_jsonl
from lab.scoring import metric_label


def bootstrap_all(config: LabConfig, base: dict[str, Any], finetuned: dict[str, Any]) -> dict[str, Any]:
    """Paired bootstrap of every metric's per-example values, in the flat shape `dvc metrics` reads."""
    compare, result = config.compare, {}
    for name in base:
        test = stats.paired_bootstrap(base[name], finetuned[name], compare.bootstrap_resamples, config.seed,
                                      compare.confidence)
        result[name] = {
            "base": test["base_mean"], "base_ci_low": test["base_ci"][0], "base_ci_high": test["base_ci"][1],
            "finetuned": test["finetuned_mean"], "finetuned_ci_low": test["finetuned_ci"][0],
            "finetuned_ci_high": test["finetuned_ci"][1],
            "difference": test["difference"], "ci_low": test["ci_low"], "ci_high": test["ci_high"],
            "p_value": test["p_value"], "p_value_at_floor": test["p_value_at_floor"],
        }
    return result


def length_effects(config: LabConfig, base_rows: list[dict], finetuned_rows: list[dict],
                   plain: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Length ratios, cut-off shares and the length-matched comparison; also per-example rows."""
    ev, headline = config.evaluate, config.compare.headline_metric
    references = [r["reference"] for r in base_rows]
    base_predictions, finetuned_predictions = [r["prediction"] for r in base_rows], [r["prediction"] for r in
                                                                                     finetuned_rows]
    ratios = {side: stats.length_ratio(predictions, references)
              for side, predictions in (("base", base_predictions), ("finetuned", finetuned_predictions))}
    matched = stats.length_matched_scores(base_predictions, finetuned_predictions, references, ev.rouge_use_stemmer,
                                          ev.rouge_types, ev.rouge_tokenizer)
    matched_tests = bootstrap_all(config, matched["base"], matched["finetuned"])
    effects: dict[str, Any] = {
        "length_ratio": {side: {"mean": r["mean"], "median": r["median"]} for side, r in ratios.items()},
        "cutoff_share": {"base": stats.cutoff_share(base_rows), "finetuned": stats.cutoff_share(finetuned_rows)},
        "matched_budget_words_mean": round(sum(matched["budget"]) / len(matched["budget"]), 2),
        "matched": matched_tests,
    }
    if headline in matched_tests:
        effects["summary"] = stats.describe_length_effect(
            plain[headline]["difference"], matched_tests[headline]["difference"], ratios["base"]["median"],
            ratios["finetuned"]["median"], metric=metric_label(headline))
    paired_rows = [
        {"id": row.get("id"), "source": row.get("source"), "budget_words": budget,
         "length_ratio": {"base": ratios["base"]["per_example"][i], "finetuned": ratios["finetuned"]["per_example"][i]},
         "matched": {side: {name: matched[side][name][i] for name in ev.rouge_types} for side in ("base", "finetuned")}}
        for i, (row, budget) in enumerate(zip(base_rows, matched["budget"], strict=True))
    ]
    return effects, paired_rows


def compare(config: LabConfig, base_rows: list[dict], finetuned_rows: list[dict]) -> tuple[dict, dict, list[dict]]:
    """All paired statistics of one evaluation; returns (metrics, gallery, per-example rows)."""
    if not base_rows:
        raise ValueError("no eval predictions to compare")
    stats.check_aligned(base_rows, finetuned_rows)
    names = list(base_rows[0]["scores"])
    base, finetuned = stats.metric_arrays(base_rows, names), stats.metric_arrays(finetuned_rows, names)
    plain = bootstrap_all(config, base, finetuned)
    effects, paired_rows = length_effects(config, base_rows, finetuned_rows, plain)
    sources = [str(r.get("source") or "unknown") for r in base_rows]
    metrics = {
        "examples": len(base_rows),
        "bootstrap": {"resamples": config.compare.bootstrap_resamples, "confidence": config.compare.confidence,
                      "seed": config.seed, "paired": True},
        "metrics": plain,
        "length": effects,
        "per_source": stats.per_source(sources, base, finetuned),
    }
    gallery = stats.gallery(base_rows, finetuned_rows, config.compare.headline_metric,
                            config.compare.gallery_examples)
    return metrics, {"metric": config.compare.headline_metric, **gallery}, paired_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--predictions-dir", type=Path, default=Path("metrics/predictions"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/compare.json"))
    parser.add_argument("--gallery", type=Path, default=Path("metrics/gallery.json"))
    args = parser.parse_args()
    config = load_config()
    base_rows = read_jsonl(args.predictions_dir / "base.jsonl")
    finetuned_rows = read_jsonl(args.predictions_dir / "finetuned.jsonl")
    metrics, gallery, paired_rows = compare(config, base_rows, finetuned_rows)
    write_jsonl(args.predictions_dir / "paired.jsonl", paired_rows)
    write_json(args.gallery, gallery)
    write_json(args.metrics, metrics)
    for name, test in metrics["metrics"].items():
        print(f"compare {name}: {test['difference']:+.4f} [{test['ci_low']:+.4f}, {test['ci_high']:+.4f}] "
              f"p={test['p_value']}")


if __name__ == "__main__":
    run_stage(main)
