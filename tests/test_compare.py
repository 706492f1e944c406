"""The compare stage's paired statistics (lab.eval.comparison) on rows with known answers."""

import pytest

from lab.core.errors import ConfigError
from lab.eval.comparison import compare
from lab.eval.scoring import rouge_scores

from .conftest import make_config

ROUGE_TYPES = ["rouge1", "rouge2", "rougeL"]
# Spelled out, so these tests keep their meaning whatever params.yaml holds.
CONFIG = make_config({
    "evaluate": {"rouge_types": ROUGE_TYPES, "rouge_use_stemmer": True, "rouge_tokenizer": "default",
                 "semantic_similarity": True},
    "compare": {"bootstrap_resamples": 1000, "confidence": 0.95, "headline_metric": "rougeL", "gallery_examples": 3},
})


def rows(predictions: list[str], references: list[str], semantic: list[float], sources: list[str]) -> list[dict]:
    scored = rouge_scores(predictions, references, True, ROUGE_TYPES, "default")
    return [{"id": f"ex{i}", "source": source, "input": [{"role": "user", "content": "q"}], "reference": reference,
             "prediction": prediction, "hit_max_new_tokens": len(prediction.split()) > 8,
             "scores": {**score, "semantic": similarity}}
            for i, (prediction, reference, score, similarity, source)
            in enumerate(zip(predictions, references, scored, semantic, sources, strict=True))]


REFERENCES = [f"sort the array number {i} along its last axis" for i in range(12)]
SOURCES = ["numpy"] * 8 + ["pandas"] * 4


def test_identical_models_differ_by_zero_with_a_ci_holding_zero():
    predictions = [f"sort array {i} quickly" if i % 2 else f"the axis {i}" for i in range(12)]
    base = rows(predictions, REFERENCES, [0.1 * (i % 7) for i in range(12)], SOURCES)
    metrics, gallery, paired = compare(CONFIG, base, base)
    for name in ("rouge1", "rouge2", "rougeL", "semantic"):
        test = metrics["metrics"][name]
        assert test["difference"] == 0.0 and test["ci_low"] <= 0.0 <= test["ci_high"]
        assert test["p_value"] == 1.0
        assert test["base_ci_low"] <= test["base"] <= test["base_ci_high"]
    assert metrics["bootstrap"] == {"resamples": 1000, "confidence": 0.95, "seed": CONFIG.seed, "paired": True}
    assert gallery == {"metric": "rougeL", "largest_gain": [], "largest_loss": []}
    assert "no ROUGE-L gain to explain" in metrics["length"]["summary"]
    assert len(paired) == 12 and paired[0]["budget_words"] == len(predictions[0].split())
    assert set(paired[0]["matched"]["base"]) == set(ROUGE_TYPES)


def test_a_better_model_is_detected_per_source_and_in_the_gallery():
    base_predictions = [f"something unrelated {i}" for i in range(12)]
    better = [reference if source == "numpy" else f"something unrelated {i}"
              for i, (reference, source) in enumerate(zip(REFERENCES, SOURCES, strict=True))]
    base = rows(base_predictions, REFERENCES, [0.2] * 12, SOURCES)
    tuned = rows(better, REFERENCES, [0.9] * 8 + [0.2] * 4, SOURCES)
    metrics, gallery, _ = compare(CONFIG, base, tuned)
    rouge_l = metrics["metrics"]["rougeL"]
    assert rouge_l["difference"] > 0 and rouge_l["ci_low"] > 0 and rouge_l["p_value_at_floor"]
    assert metrics["per_source"]["numpy"]["count"] == 8
    assert metrics["per_source"]["pandas"]["metrics"]["semantic"]["difference"] == 0.0
    assert metrics["per_source"]["numpy"]["metrics"]["semantic"]["difference"] == pytest.approx(0.7)
    assert [item["source"] for item in gallery["largest_gain"]] == ["numpy"] * 3 and gallery["largest_loss"] == []
    assert metrics["length"]["cutoff_share"] == {"base": 0.0, "finetuned": pytest.approx(8 / 12, abs=1e-4)}


def test_compare_follows_the_compare_params():
    base = rows([f"something unrelated {i}" for i in range(12)], REFERENCES, [0.2] * 12, SOURCES)
    tuned = rows(REFERENCES, REFERENCES, [0.9] * 12, SOURCES)
    config = make_config({"compare": {"confidence": 0.5, "headline_metric": "semantic", "gallery_examples": 1}})
    metrics, gallery, _ = compare(config.comparison, base, tuned)
    assert metrics["bootstrap"]["confidence"] == 0.5
    assert gallery["metric"] == "semantic" and len(gallery["largest_gain"]) == 1
    # Semantic similarity cannot be length-matched: no length sentence for a semantic headline.
    assert "summary" not in metrics["length"]


def test_misaligned_predictions_are_refused():
    base = rows(["a", "b"], ["a", "b"], [0.1, 0.2], ["x", "x"])
    with pytest.raises(ValueError, match="not the same examples"):
        compare(CONFIG, base, list(reversed(base)))


def test_compare_params_are_validated():
    with pytest.raises(ConfigError, match="compare.headline_metric"):
        make_config({"compare": {"headline_metric": "bleu"}})
    with pytest.raises(ConfigError, match=r"compare.confidence: 1.5 is not allowed; it must be in \(0, 1\)"):
        make_config({"compare": {"confidence": 1.5}})


def with_format(rows_: list[dict], values: dict[int, float]) -> list[dict]:
    """`rows_` with format_valid set on the examples in `values` only (None elsewhere: not covered)."""
    return [{**row, "format_scores": {"format_valid": values.get(i), "math_exact_match": None}}
            for i, row in enumerate(rows_)]


def test_format_metrics_are_aggregated_and_bootstrapped_only_on_the_examples_they_cover():
    from lab.eval.stats import paired_bootstrap

    plain = rows([f"sort array {i}" for i in range(12)], REFERENCES, [0.5] * 12, SOURCES)
    covered = [0, 3, 4, 9]
    base = with_format(plain, dict(zip(covered, [0.0, 1.0, 0.0, 0.0], strict=True)))
    tuned = with_format(plain, dict(zip(covered, [1.0, 1.0, 1.0, 0.0], strict=True)))
    metrics, _, _ = compare(CONFIG, base, tuned)
    test = metrics["format_metrics"]["format_valid"]
    # The 8 uncovered examples would pull the means to 1/12 and 3/12 if they counted as 0.
    assert (test["examples"], test["base"], test["finetuned"], test["difference"]) == (4, 0.25, 0.75, 0.5)
    expected = paired_bootstrap([0.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0], 1000, CONFIG.seed, 0.95)
    assert [test["ci_low"], test["ci_high"]] == [expected["ci_low"], expected["ci_high"]]
    assert test["p_value"] == expected["p_value"] and [test["base_ci_low"], test["base_ci_high"]] == expected["base_ci"]
    # A metric that covers no example gets no interval; ROUGE is untouched by the format metrics.
    assert "math_exact_match" not in metrics["format_metrics"]
    assert metrics["metrics"] == compare(CONFIG, plain, plain)[0]["metrics"]


def test_format_metrics_must_cover_the_same_examples_on_both_sides_and_may_be_absent():
    plain = rows(["a", "b"], ["a", "b"], [0.1, 0.2], ["x", "x"])
    with pytest.raises(ValueError, match="format_valid: base and fine-tuned rows cover different examples"):
        compare(CONFIG, with_format(plain, {0: 1.0}), with_format(plain, {1: 1.0}))
    assert compare(CONFIG, plain, plain)[0]["format_metrics"] == {}  # predictions from before format metrics
