"""The domain pipeline's logic: its params and their checks, the data it prepares (lab.data.prepare's prepare with the
domains section laid over it, split by domain), and the domain x adapter comparison and report from known
per-example scores."""

from __future__ import annotations

from typing import Any

import pytest

from lab.core.config import MIXED_ADAPTER
from lab.core.errors import ConfigError, DataError
from lab.domains.compare import compare_domains, headline_summary, pair_key
from lab.domains.data import domain_data_config, prepare_domains, split_by_domain
from lab.domains.report import render

from .conftest import REPO, make_config

# Real builtin data, small: the docs, code and math domains from few packages (the code tasks come from statistics'
# doctests), enough rows per domain for 6 training, 2 validation and 3 eval examples.
SMALL = {"data": {"builtin": {"packages": ["json", "collections", "statistics", "textwrap", "string"]},
                  "test_size": 0.3},
         "domains": {"code_examples": 40, "math_examples": 30, "train_examples": 6, "validation_examples": 2,
                     "eval_examples": 3}}


@pytest.mark.parametrize(("overrides", "message"), [
    ({"adapters": ["docs", "code", "math"]}, "domains.adapters: .* the domains and mixed"),
    ({"names": ["docs", "mixed"], "adapters": ["docs", "mixed", "mixed"]}, "domains.names: 'mixed' is not allowed"),
    ({"names": ["docs", "a b"], "adapters": ["docs", "a b", "mixed"]}, "domains.names: 'a b' is not allowed"),
    ({"names": ["docs", "docs"]}, "domains.names: .* distinct"),
    ({"router_threshold": 1.5}, "domains.router_threshold: 1.5 is not allowed; it must be a cosine similarity"),
    ({"eval_examples": 0}, "domains.eval_examples: 0 is not allowed; it must be positive"),
])
def test_impossible_domain_params_are_refused(overrides: dict[str, Any], message: str):
    with pytest.raises(ConfigError, match=message):
        make_config({"domains": overrides})


def test_the_data_config_is_the_data_section_with_the_domain_overrides():
    config = make_config(SMALL)
    data = domain_data_config(config).data
    assert (data.builtin.code_examples, data.builtin.math_examples) == (40, 30)
    assert data.mix.proportions == {"docs": 8, "code": 8, "math": 8} and data.mix.counts()
    assert (data.max_train_examples, data.validation_examples, data.eval_examples) == (None, 0, 3)
    # Everything else is the data section as configured.
    assert data.builtin.packages == config.data.builtin.packages and data.dedup == config.data.dedup
    assert data.filters == config.data.filters and data.test_size == 0.3


def row(source: str, index: int) -> dict[str, Any]:
    return {"id": f"{source}-{index}", "source": source,
            "messages": [{"role": "user", "content": f"q {source} {index}"},
                         {"role": "assistant", "content": f"a {source} {index}"}]}


def test_split_by_domain_holds_out_validation_per_domain_and_mixed_is_the_union():
    config = make_config({"domains": {"names": ["a", "b"], "adapters": ["a", "b", "mixed"], "train_examples": 3,
                                      "validation_examples": 2, "eval_examples": 2}})
    train = [row(source, i) for i in range(5) for source in ("a", "b")]  # interleaved, as prepare's order may be
    test = [row(source, i) for i in range(10, 14) for source in ("a", "b", "c")]
    splits = split_by_domain({"train": train, "test": test}, config)
    for name in ("a", "b"):
        ids = {split: [r["id"] for r in splits[name][split]] for split in ("train", "validation", "eval")}
        assert (len(ids["train"]), len(ids["validation"]), len(ids["eval"])) == (3, 2, 2)
        assert not set(ids["train"]) & set(ids["validation"])
        assert all(i.startswith(f"{name}-") for split in ids.values() for i in split)
        assert splits[name]["eval"][0]["input"][-1]["role"] == "user" and splits[name]["eval"][0]["source"] == name
    mixed = splits[MIXED_ADAPTER]
    # The union, the training rows in prepare's order (a curriculum survives), validation and eval by domain.
    assert [r["id"] for r in mixed["train"]] == [r["id"] for r in train if r in splits["a"]["train"] + splits["b"][
        "train"]]
    assert mixed["validation"] == splits["a"]["validation"] + splits["b"]["validation"]
    assert mixed["eval"] == splits["a"]["eval"] + splits["b"]["eval"]
    with pytest.raises(DataError, match="domains.eval_examples=5 but the test split has only 4 'a' rows"):
        split_by_domain({"train": train, "test": test}, make_config(
            {"domains": {"names": ["a", "b"], "adapters": ["a", "b", "mixed"], "eval_examples": 5,
                         "validation_examples": 2}}))


def test_prepare_domains_on_the_builtin_data():
    config = make_config(SMALL)
    splits, stats = prepare_domains(config)
    domain_counts = {"train": 6, "validation": 2, "eval": 3}
    assert stats["adapters"] == {**{name: domain_counts for name in ("docs", "code", "math")},
                                 "mixed": {"train": 18, "validation": 6, "eval": 9}}
    for name in ("docs", "code", "math"):
        assert {r["source"] for split in splits[name].values() for r in split} == {name}
    ids = {split: {r["id"] for r in splits[MIXED_ADAPTER][split]} for split in ("train", "validation", "eval")}
    assert not ids["train"] & ids["validation"] and not ids["eval"] & (ids["train"] | ids["validation"])
    # More rows per domain than there are: refused (a repeat could land in training and validation both).
    with pytest.raises(DataError, match=r"domains: 80 training rows per domain .* only"):
        prepare_domains(make_config({**SMALL, "domains": {**SMALL["domains"], "train_examples": 78}}))
    with pytest.raises(DataError, match=r"domains \(domains.names as data.mix.proportions counts\): .*\['poetry'\]"):
        prepare_domains(make_config({**SMALL, "domains": {**SMALL["domains"], "names": ["docs", "poetry"],
                                                          "adapters": ["docs", "poetry", "mixed"]}}))


def prediction(example_id: str, source: str, rouge_l: float) -> dict[str, Any]:
    return {"id": example_id, "source": source, "scores": {"rougeL": {"fmeasure": rouge_l}, "semantic": rouge_l}}


def known_predictions() -> dict[str, list[dict[str, Any]]]:
    """Two domains of 4 examples: the x adapter is mixed + 0.1 on every x example (a constant shift), the y adapter
    equals mixed on y; the base is 0.2 on everything; routed answers x like the x adapter and y like mixed."""
    x = [0.3, 0.4, 0.5, 0.6]
    y = [0.2, 0.3, 0.4, 0.5]
    ids = [("x", f"x{i}") for i in range(4)] + [("y", f"y{i}") for i in range(4)]
    mixed = x + y
    return {
        "base": [prediction(i, s, 0.2) for s, i in ids],
        MIXED_ADAPTER: [prediction(i, s, v) for (s, i), v in zip(ids, mixed, strict=True)],
        "routed": [prediction(i, s, v + (0.1 if s == "x" else 0.0)) for (s, i), v in zip(ids, mixed, strict=True)],
        # The domain adapter's rows in another order: matched by id, not by position.
        "x": [prediction(f"x{i}", "x", x[i] + 0.1) for i in reversed(range(4))],
        "y": [prediction(f"y{i}", "y", y[i]) for i in range(4)],
    }


def test_the_domain_table_from_known_scores():
    config = make_config({"compare": {"bootstrap_resamples": 500}})
    comparison = compare_domains(config.comparison, known_predictions(), ["x", "y"])
    x, y = comparison["domains"]["x"], comparison["domains"]["y"]
    assert x["examples"] == 4 and x["means"]["adapter"]["rougeL"] == pytest.approx(0.55)
    assert x["means"][MIXED_ADAPTER]["rougeL"] == pytest.approx(0.45) and x["means"]["base"]["rougeL"] == 0.2
    shift = x[pair_key("adapter", MIXED_ADAPTER)]["rougeL"]
    # A constant shift: every resample's difference is exactly 0.1, so the interval is [0.1, 0.1].
    assert shift["difference"] == shift["ci_low"] == shift["ci_high"] == pytest.approx(0.1)
    assert shift["p_value_at_floor"]
    same = y[pair_key("adapter", MIXED_ADAPTER)]["rougeL"]
    assert same["difference"] == same["ci_low"] == same["ci_high"] == 0.0 and same["p_value"] == 1.0
    assert x[pair_key("adapter", "base")]["rougeL"]["difference"] == pytest.approx(0.35)
    assert y[pair_key(MIXED_ADAPTER, "base")]["rougeL"]["difference"] == pytest.approx(0.15)
    routed = comparison["routed"][pair_key("routed", MIXED_ADAPTER)]["rougeL"]
    assert routed["difference"] == pytest.approx(0.05) and 0.0 <= routed["ci_low"] <= 0.05 <= routed["ci_high"]
    assert comparison["metrics"] == ["rougeL", "semantic"]

    routing = {"accuracy": 0.75, "fallback_rate": 0.25, "misrouted_rate": 0.0, "nearest_accuracy": 1.0,
               "examples": 8, "threshold": 0.2,
               "per_domain": {name: {"examples": 4, "accuracy": 0.75, "fallback_rate": 0.25, "misrouted_rate": 0.0,
                                     "nearest_accuracy": 1.0} for name in ("x", "y")},
               "confusion": {"x": {"x": 3, "y": 0, "mixed": 1}, "y": {"x": 0, "y": 3, "mixed": 1}},
               "training_prompts": {"prompts": 10, "fallback_rate": 0.1,
                                    "similarity_quantiles": {"p1": 0.1, "p5": 0.2, "p25": 0.3, "p50": 0.4}}}
    summary = headline_summary(comparison, routing, "rougeL")
    assert summary == {"rougeL": {
        "x": {"adapter": 0.55, "mixed": 0.45, "base": 0.2, "adapter_minus_mixed": 0.1, "ci_low": 0.1, "ci_high": 0.1},
        "y": {"adapter": 0.35, "mixed": 0.35, "base": 0.2, "adapter_minus_mixed": 0.0, "ci_low": 0.0, "ci_high": 0.0},
        "routed": {"routed": 0.45, "mixed": 0.4, "routed_minus_mixed": 0.05, "ci_low": routed["ci_low"],
                   "ci_high": routed["ci_high"]}},
        "router": {"accuracy": 0.75, "fallback_rate": 0.25}}

    train = {name: {"steps": 3, "best_step": 3, "best_validation_loss": 1.5, "runtime_s": 10.0} for name in "xy"}
    train[MIXED_ADAPTER] = {"steps": 6, "best_step": 4, "best_validation_loss": 1.4, "runtime_s": 20.0}
    data = {"adapters": {name: {"train": 6, "validation": 2, "eval": 4} for name in ("x", "y", MIXED_ADAPTER)}}
    report = render(comparison, routing, {"x": 3, "mixed": 2, "y": 3}, data, train, "rougeL")
    versus_base = x[pair_key("adapter", "base")]["rougeL"]
    assert (f"| x | 4 | ROUGE-L | 0.2000 | 0.4500 | 0.5500 | +0.100 [+0.100, +0.100] | <0.002 | +0.350 "
            f"[{versus_base['ci_low']:+.3f}, {versus_base['ci_high']:+.3f}] |") in report
    assert "- **x** (domain − mixed +0.100 [+0.100, +0.100]): the x adapter is better than mixed on x." in report
    assert "- **y** (domain − mixed +0.000 [+0.000, +0.000]): the y adapter and mixed cannot be told apart" in report
    assert f"routed − mixed ROUGE-L +0.050 [{routed['ci_low']:+.3f}, {routed['ci_high']:+.3f}]: " in report
    assert "**75.0%** routed to their own domain's adapter, **25.0%** fell back to mixed" in report
    assert "the mixed adapter took 2.0× a domain adapter's optimizer steps" in report
    assert "Still improving at the last step (best validation loss there): x, y." in report
    assert "| x | 3 | 0 | 1 |" in report and "(x 3, mixed 2, y 3)" in report


def test_predictions_of_other_eval_examples_are_refused():
    predictions = known_predictions()
    predictions["y"] = predictions["y"][:3]
    with pytest.raises(DataError, match="the y adapter's predictions lack 1 of the 4 eval examples"):
        compare_domains(make_config().comparison, predictions, ["x", "y"])


def test_the_docs_tables_are_the_committed_report_s():
    section = (REPO / "docs" / "domains.md").read_text()
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("|---")]
    report = (REPO / "metrics" / "domains" / "report.md").read_text().splitlines()
    assert len(rows) >= 15 and [row for row in rows if row not in report] == []
