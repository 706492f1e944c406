"""The domain x adapter comparison: on each domain's eval examples, the base model, the mixed adapter and the
domain's own adapter, with paired bootstrap intervals of own adapter - mixed, own adapter - base and mixed - base;
and the routed system against the mixed adapter (and the base) on every domain's examples together.

Every side is scored on the same examples (checked by id), so each difference is paired: per-example difficulty
cancels out, which is what lets a few dozen examples per domain say anything. Pure: the inputs are prediction rows
as lab.eval.evaluation writes them (each with its per-example "scores").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lab.core.config import MIXED_ADAPTER, ComparisonSetup
from lab.core.errors import DataError
from lab.eval import stats
from lab.eval.scoring import metric_value

BASE, ROUTED = "base", "routed"
# Per domain: (candidate, reference) of each paired difference, "adapter" being the domain's own.
DOMAIN_PAIRS = (("adapter", MIXED_ADAPTER), ("adapter", BASE), (MIXED_ADAPTER, BASE))
ROUTED_PAIRS = ((ROUTED, MIXED_ADAPTER), (ROUTED, BASE))


def pair_key(candidate: str, reference: str) -> str:
    return f"{candidate}_vs_{reference}"


def paired_test(setup: ComparisonSetup, reference: Sequence[float], candidate: Sequence[float]) -> dict[str, Any]:
    """candidate - reference, paired bootstrap over the same examples (compare params, seeded by `seed`)."""
    compare = setup.compare
    test = stats.paired_bootstrap(reference, candidate, compare.bootstrap_resamples, setup.seed, compare.confidence)
    return {key: test[key] for key in ("difference", "ci_low", "ci_high", "p_value", "p_value_at_floor")}


def _aligned(rows: Sequence[Mapping[str, Any]], ids: list[str], what: str) -> list[Mapping[str, Any]]:
    """`rows` picked and ordered by `ids`; a DataError when an id is missing (predictions of other eval samples)."""
    by_id = {row["id"]: row for row in rows}
    missing = [example_id for example_id in ids if example_id not in by_id]
    if missing:
        raise DataError(f"{what} lack {len(missing)} of the {len(ids)} eval examples (e.g. {missing[0]!r}): the "
                        "predictions come from different eval samples; rerun `dvc repro pipelines/domains/dvc.yaml`")
    return [by_id[example_id] for example_id in ids]


def _sides_result(setup: ComparisonSetup, sides: Mapping[str, Sequence[Mapping[str, Any]]], metrics: list[str],
                  pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    values = {side: {m: [metric_value(row, m) for row in rows] for m in metrics} for side, rows in sides.items()}
    return {
        "examples": len(next(iter(sides.values()))),
        "means": {side: {m: round(sum(v) / len(v), 6) for m, v in side_values.items()}
                  for side, side_values in values.items()},
        **{pair_key(candidate, reference): {m: paired_test(setup, values[reference][m], values[candidate][m])
                                            for m in metrics}
           for candidate, reference in pairs},
    }


def compare_domains(setup: ComparisonSetup, predictions: Mapping[str, Sequence[Mapping[str, Any]]],
                    domains: Sequence[str]) -> dict[str, Any]:
    """The comparison from the prediction rows: `predictions` maps "base", "mixed" and "routed" to their rows on
    every domain's eval examples, and each domain name to its own adapter's rows on that domain's examples."""
    union_ids = [row["id"] for row in predictions[MIXED_ADAPTER]]
    if not union_ids:
        raise DataError("no eval predictions to compare")
    metrics = list(predictions[MIXED_ADAPTER][0]["scores"])
    result: dict[str, Any] = {"metrics": metrics, "domains": {},
                              "bootstrap": {"resamples": setup.compare.bootstrap_resamples,
                                            "confidence": setup.compare.confidence, "seed": setup.seed}}
    for name in domains:
        ids = [row["id"] for row in predictions[MIXED_ADAPTER] if row["source"] == name]
        if not ids:
            raise DataError(f"no eval example of domain {name!r} among the mixed adapter's predictions")
        sides = {"adapter": _aligned(predictions[name], ids, f"the {name} adapter's predictions"),
                 **{side: _aligned(predictions[side], ids, f"the {side} predictions")
                    for side in (BASE, MIXED_ADAPTER)}}
        result["domains"][name] = _sides_result(setup, sides, metrics, DOMAIN_PAIRS)
    sides = {side: _aligned(predictions[side], union_ids, f"the {side} predictions")
             for side in (BASE, MIXED_ADAPTER, ROUTED)}
    result[ROUTED] = _sides_result(setup, sides, metrics, ROUTED_PAIRS)
    return result


def headline_summary(comparison: Mapping[str, Any], routing: Mapping[str, Any], metric: str) -> dict[str, Any]:
    """metrics/domains/summary.json, the file DVC lists as metrics: the headline metric's means and own adapter -
    mixed per domain, routed - mixed, and the router's accuracy and fallback rate. Nothing else, so that
    `dvc metrics diff` stays readable."""
    summary: dict[str, Any] = {}
    for name, domain in comparison["domains"].items():
        test = domain[pair_key("adapter", MIXED_ADAPTER)][metric]
        summary[name] = {**{side: domain["means"][side][metric] for side in ("adapter", MIXED_ADAPTER, BASE)},
                         "adapter_minus_mixed": test["difference"], "ci_low": test["ci_low"],
                         "ci_high": test["ci_high"]}
    routed = comparison[ROUTED]
    test = routed[pair_key(ROUTED, MIXED_ADAPTER)][metric]
    summary[ROUTED] = {ROUTED: routed["means"][ROUTED][metric], MIXED_ADAPTER: routed["means"][MIXED_ADAPTER][metric],
                       "routed_minus_mixed": test["difference"], "ci_low": test["ci_low"], "ci_high": test["ci_high"]}
    return {metric: summary, "router": {key: routing[key] for key in ("accuracy", "fallback_rate")}}
