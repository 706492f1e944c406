import numpy as np
import pytest
from rouge_score import rouge_scorer

from lab.eval import stats
from lab.eval.scoring import rouge_scores
from lab.eval.stats import (
    bootstrap_mean_ci,
    cutoff_share,
    describe_length_effect,
    gallery,
    length_matched_scores,
    length_ratio,
    metric_arrays,
    paired_bootstrap,
    per_source,
    truncate_words,
)

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
RNG = np.random.default_rng(0)
BASE = RNG.uniform(0.1, 0.5, size=80)


def test_identical_models_have_no_difference():
    result = paired_bootstrap(BASE, BASE.copy(), resamples=2000, seed=1, confidence=0.95)
    assert result["difference"] == 0.0
    assert result["ci_low"] <= 0.0 <= result["ci_high"]
    assert result["p_value"] == 1.0
    assert result["base_ci"] == result["finetuned_ci"]
    assert result["examples"] == 80 and result["resamples"] == 2000 and result["confidence"] == 0.95


def test_constant_shift_is_recovered_exactly():
    result = paired_bootstrap(BASE, BASE + 0.1, resamples=2000, seed=1, confidence=0.95)
    assert result["difference"] == pytest.approx(0.1, abs=1e-9)
    assert result["ci_low"] == pytest.approx(0.1, abs=1e-9)
    assert result["ci_high"] == pytest.approx(0.1, abs=1e-9)
    # Every resampled difference is > 0: the p-value sits at the 1/resamples floor and says so.
    assert result["p_value"] == pytest.approx(1 / 2000) and result["p_value_at_floor"]


def test_clearly_better_model_with_noise_excludes_zero():
    finetuned = BASE + 0.05 + np.random.default_rng(2).normal(0, 0.05, size=BASE.size)
    result = paired_bootstrap(BASE, finetuned, resamples=5000, seed=3, confidence=0.95)
    assert 0.0 < result["ci_low"] < result["difference"] < result["ci_high"]
    assert result["p_value"] < 0.01
    assert result["finetuned_mean"] - result["base_mean"] == pytest.approx(result["difference"], abs=1e-5)


def test_noise_only_gives_a_large_p_value():
    finetuned = BASE + np.random.default_rng(4).normal(0, 0.05, size=BASE.size)
    finetuned -= finetuned.mean() - BASE.mean()  # exactly zero mean difference
    result = paired_bootstrap(BASE, finetuned, resamples=5000, seed=3, confidence=0.95)
    assert result["ci_low"] < 0.0 < result["ci_high"]
    assert result["p_value"] > 0.5


def test_same_seed_same_result_and_other_seed_differs():
    finetuned = BASE + np.random.default_rng(5).normal(0.01, 0.05, size=BASE.size)
    first = paired_bootstrap(BASE, finetuned, resamples=1000, seed=7, confidence=0.95)
    assert paired_bootstrap(list(BASE), list(finetuned), resamples=1000, seed=7, confidence=0.95) == first
    assert paired_bootstrap(BASE, finetuned, resamples=1000, seed=8, confidence=0.95)["ci_low"] != first["ci_low"]


def test_chunking_does_not_change_the_draws(monkeypatch):
    finetuned = BASE + np.random.default_rng(5).normal(0.01, 0.05, size=BASE.size)
    whole = paired_bootstrap(BASE, finetuned, resamples=1000, seed=7, confidence=0.95)
    monkeypatch.setattr(stats, "_CHUNK_ENTRIES", 1000)  # 12 resamples per chunk
    assert paired_bootstrap(BASE, finetuned, resamples=1000, seed=7, confidence=0.95) == whole


def test_mean_ci_contains_the_mean_and_matches_the_paired_base_ci():
    low, high = bootstrap_mean_ci(BASE, resamples=2000, seed=11, confidence=0.95)
    assert low < BASE.mean() < high
    assert high - low < 0.1
    assert paired_bootstrap(BASE, BASE + 0.2, resamples=2000, seed=11, confidence=0.95)["base_ci"] == [low, high]
    wider = bootstrap_mean_ci(BASE, resamples=2000, seed=11, confidence=0.99)
    assert wider[0] <= low and wider[1] >= high


@pytest.mark.parametrize("bad", [{"resamples": 0}, {"confidence": 1.0}])
def test_bootstrap_rejects_bad_arguments(bad):
    with pytest.raises(ValueError):
        paired_bootstrap(BASE, BASE, **{"resamples": 100, "seed": 0, "confidence": 0.95, **bad})


def test_bootstrap_rejects_unpaired_or_empty_input():
    with pytest.raises(ValueError):
        paired_bootstrap(BASE, BASE[:-1], resamples=10, seed=0, confidence=0.95)
    with pytest.raises(ValueError):
        bootstrap_mean_ci([], resamples=10, seed=0, confidence=0.95)


REFERENCE = "Return the indices that would sort an array along the given axis."


def test_truncate_words_keeps_short_text_untouched():
    assert truncate_words("  a  b c ", 5) == "  a  b c "
    assert truncate_words("a b c d", 2) == "a b"
    assert truncate_words("a b", 0) == ""
    assert truncate_words("a b\n\nc d", 3) == "a b\n\nc"  # line breaks kept for rougeLsum
    assert truncate_words("a b c", 3) == "a b c"


def test_length_matched_equals_plain_rouge_when_lengths_are_equal():
    base = ["Sort an array and return the indices.", "Compute the median along an axis."]
    finetuned = ["Return the indices that sort an array.", "Median of the values along axis."]
    references = [REFERENCE, "Compute the median along the specified axis."]
    matched = length_matched_scores(base, finetuned, references, True, ROUGE_TYPES, "default")
    assert matched["budget"] == [7, 6]
    for side, predictions in (("base", base), ("finetuned", finetuned)):
        plain = rouge_scores(predictions, references, True, ROUGE_TYPES, "default")
        for name in ROUGE_TYPES:
            assert matched[side][name] == [row[name]["fmeasure"] for row in plain]


def test_length_matched_cuts_a_prefix_extension_to_the_base_answer():
    base = "Return the indices that sort an array."
    finetuned = base + " It also handles the axis argument and many more details besides."
    matched = length_matched_scores([base], [finetuned], [REFERENCE], False, ROUGE_TYPES, "default")
    assert matched["budget"] == [7]
    for name in ROUGE_TYPES:
        assert matched["base"][name] == matched["finetuned"][name]
    # Budget is the minimum: the same holds with the roles swapped.
    swapped = length_matched_scores([finetuned], [base], [REFERENCE], False, ROUGE_TYPES, "default")
    assert swapped["budget"] == [7] and swapped["base"] == matched["finetuned"]


def test_length_matched_truncates_the_longer_side_only():
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    base, finetuned = "indices sort array", "return the indices that would sort an array"
    matched = length_matched_scores([base], [finetuned], [REFERENCE], True, ("rougeL",), "default")
    assert matched["budget"] == [3] and set(matched["base"]) == {"rougeL"}
    assert matched["finetuned"]["rougeL"][0] == pytest.approx(scorer.score(REFERENCE, "return the indices")
                                                               ["rougeL"].fmeasure, abs=1e-6)
    assert matched["base"]["rougeL"][0] == pytest.approx(scorer.score(REFERENCE, base)["rougeL"].fmeasure, abs=1e-6)


def test_length_matched_follows_the_configured_tokenizer_and_types():
    base, finetuned = "use np.sort(a) here", "use np.sort(a) to sort the array"
    reference = "np.sort(a) returns a sorted copy"
    matched = length_matched_scores([base], [finetuned], [reference], use_stemmer=True,
                                    rouge_types=("rouge1", "rougeLsum"), tokenizer="whitespace")
    assert set(matched["base"]) == {"rouge1", "rougeLsum"}
    plain = rouge_scores([base], [reference], True, ("rouge1", "rougeLsum"), "whitespace")[0]
    assert matched["base"]["rouge1"] == [plain["rouge1"]["fmeasure"]]
    assert matched["finetuned"]["rouge1"] == matched["base"]["rouge1"]  # "use np.sort(a) to": same one hit


def test_length_matched_empty_prediction_scores_zero_on_both_sides():
    matched = length_matched_scores([""], ["Return the indices."], [REFERENCE], True, ROUGE_TYPES, "default")
    assert matched["budget"] == [0]
    assert matched["base"]["rouge1"] == matched["finetuned"]["rouge1"] == [0.0]


def test_length_ratio_summaries():
    result = length_ratio(["a b", "a b c d", "a"], ["a b", "a b", ""])
    assert result["per_example"] == [1.0, 2.0, 1.0]
    assert result["mean"] == pytest.approx(4 / 3, abs=1e-4) and result["median"] == 1.0


def score_row(id_, source, rouge_l, prediction="p", semantic=None):
    scores = {name: {"precision": 0.0, "recall": 0.0, "fmeasure": rouge_l} for name in ("rouge1", "rouge2", "rougeL")}
    if semantic is not None:
        scores["semantic"] = semantic
    return {"id": id_, "source": source, "input": [{"role": "user", "content": f"q{id_}"}], "reference": "r",
            "prediction": prediction, "hit_max_new_tokens": id_ % 2 == 0, "scores": scores}


def test_per_source_counts_and_means():
    sources = ["numpy", "scipy", "numpy", "pandas", "numpy"]
    base = {"rougeL": [0.1, 0.2, 0.3, 0.4, 0.5], "semantic": [0.5, 0.5, 0.5, 0.5, 0.5]}
    finetuned = {"rougeL": [0.2, 0.1, 0.3, 0.6, 0.7], "semantic": [0.6, 0.4, 0.5, 0.5, 0.7]}
    result = per_source(sources, base, finetuned)
    assert list(result) == ["numpy", "pandas", "scipy"]
    assert [result[s]["count"] for s in result] == [3, 1, 1]
    numpy_l = result["numpy"]["metrics"]["rougeL"]
    assert numpy_l == {"base": pytest.approx(0.3), "finetuned": pytest.approx(0.4), "difference": pytest.approx(0.1)}
    assert result["scipy"]["metrics"]["semantic"]["difference"] == pytest.approx(-0.1)
    assert result["pandas"]["metrics"]["rougeL"]["difference"] == pytest.approx(0.2)


def test_per_source_rejects_misaligned_values():
    with pytest.raises(ValueError):
        per_source(["a", "b"], {"rougeL": [0.1]}, {"rougeL": [0.1]})


def test_metric_arrays_reads_rouge_f_and_plain_numbers():
    rows = [score_row(0, "a", 0.25, semantic=0.75)]
    arrays = metric_arrays(rows, ["rougeL", "semantic"])
    assert arrays["rougeL"].tolist() == [0.25] and arrays["semantic"].tolist() == [0.75]


def test_cutoff_share():
    assert cutoff_share([score_row(i, "a", 0.1) for i in range(4)]) == 0.5


@pytest.mark.parametrize(("plain", "matched", "phrase"), [
    (0.042, 0.015, "shrinks from +0.042 to +0.015 (36% of it survives)"),
    (0.020, 0.030, "grows from +0.020 to +0.030"),
    (0.042, -0.010, "of +0.042 reverses to -0.010"),
    (0.042, 0.0421, "holds at +0.042"),
    (-0.012, -0.005, "has no ROUGE-L gain to explain (-0.012; -0.005 with length held equal)"),
    (0.0, 0.0, "has no ROUGE-L gain to explain"),
])
def test_describe_length_effect_wording(plain, matched, phrase):
    sentence = describe_length_effect(plain, matched, base_length_ratio=1.9, finetuned_length_ratio=0.8,
                                      metric="ROUGE-L")
    assert phrase in sentence
    assert sentence.endswith("its answers are 0.8× the reference length against 1.9× for the base model.")
    assert sentence.count(".") == 3 + sentence.count("×")  # one sentence: only decimals and the final stop


def test_gallery_picks_largest_gains_and_losses():
    base = [score_row(i, "s", v) for i, v in enumerate([0.5, 0.5, 0.5, 0.5, 0.5])]
    finetuned = [score_row(i, "s", v, prediction=f"ft{i}") for i, v in enumerate([0.9, 0.4, 0.7, 0.1, 0.5])]
    result = gallery(base, finetuned, metric="rougeL", count=3)
    assert [item["id"] for item in result["largest_gain"]] == [0, 2]  # only real gains
    assert [item["id"] for item in result["largest_loss"]] == [3, 1]
    top = result["largest_gain"][0]
    assert top["finetuned_prediction"] == "ft0" and top["base_prediction"] == "p"
    assert top["base_score"] == 0.5 and top["finetuned_score"] == 0.9 and top["difference"] == pytest.approx(0.4)
    assert top["input"] == [{"role": "user", "content": "q0"}] and top["source"] == "s"
    assert [i["id"] for i in gallery(base, finetuned, metric="rougeL", count=1)["largest_gain"]] == [0]
    assert gallery(base, finetuned, metric="rougeL", count=0) == {"largest_gain": [], "largest_loss": []}


def test_gallery_refuses_misaligned_rows():
    rows = [score_row(i, "s", 0.5) for i in range(3)]
    with pytest.raises(ValueError):
        gallery(rows, list(reversed(rows)), metric="rougeL", count=3)


def test_covered_pairs_keep_the_examples_a_metric_covers_in_order():
    base, finetuned = stats.covered_pairs([None, 1.0, 0.0, None], [None, 0.0, 1.0, None], "m")
    assert base.tolist() == [1.0, 0.0] and finetuned.tolist() == [0.0, 1.0]
    empty = stats.covered_pairs([None, None], [None, None], "m")
    assert empty[0].size == 0 and empty[1].size == 0
    with pytest.raises(ValueError, match="m: 2 base values but 1 fine-tuned"):
        stats.covered_pairs([1.0, None], [1.0], "m")
