import pytest
from rouge_score import rouge_scorer

from lab.core.text import length_stats, word_count
from lab.eval.scoring import aggregate, metric_value, rouge_scores
from lab.report.tables import main_table, relative_change

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")

PREDICTIONS = ["Return the indices that would sort an array.", "Sorts things quickly", ""]
REFERENCES = ["Returns the indices that would sort an array along an axis.", "Compute the median.", "Anything"]


@pytest.mark.parametrize("use_stemmer", [True, False])
def test_rouge_equals_rouge_score_on_the_same_strings(use_stemmer):
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)
    ours = rouge_scores(PREDICTIONS, REFERENCES, use_stemmer, ROUGE_TYPES, "default")
    for mine, prediction, reference in zip(ours, PREDICTIONS, REFERENCES, strict=True):
        theirs = scorer.score(reference, prediction)
        for name in ROUGE_TYPES:
            assert mine[name]["fmeasure"] == pytest.approx(theirs[name].fmeasure, abs=1e-6)
            assert mine[name]["precision"] == pytest.approx(theirs[name].precision, abs=1e-6)
            assert mine[name]["recall"] == pytest.approx(theirs[name].recall, abs=1e-6)


def test_stemming_changes_the_score_as_expected():
    stemmed = rouge_scores(["sorting arrays"], ["sorts array"], True, ("rouge1",), "default")[0]
    plain = rouge_scores(["sorting arrays"], ["sorts array"], False, ("rouge1",), "default")[0]
    assert stemmed["rouge1"]["fmeasure"] == 1.0 and plain["rouge1"]["fmeasure"] == 0.0


def rows():
    scores = rouge_scores(PREDICTIONS, REFERENCES, True, ROUGE_TYPES, "default")
    return [{"prediction": p, "reference": r, "scores": s, "hit_max_new_tokens": i == 0, "prompt_truncated": False}
            for i, (p, r, s) in enumerate(zip(PREDICTIONS, REFERENCES, scores, strict=True))]


def test_aggregate_means_and_lengths():
    summary = aggregate(rows())
    expected = sum(r["scores"]["rougeL"]["fmeasure"] for r in rows()) / 3
    assert summary["rougeL"] == pytest.approx(expected, abs=1e-4)
    assert summary["words"]["prediction"] == {"mean": pytest.approx(11 / 3, abs=0.01), "median": 3.0, "max": 8}
    assert summary["hit_max_new_tokens_share"] == pytest.approx(1 / 3, abs=1e-4)
    assert summary["examples"] == 3


def test_word_count_and_length_stats():
    assert [word_count(text) for text in ("a b", " a\nb  c\td ", "")] == [2, 4, 0]
    assert length_stats([2, 4, 1]) == {"mean": 2.33, "median": 2.0, "max": 4}
    assert length_stats([]) == {"mean": 0.0, "median": 0.0, "max": 0}


def test_metric_value_reads_rouge_f_and_plain_numbers():
    row = {"scores": {"rougeL": {"precision": 0.1, "recall": 0.9, "fmeasure": 0.25}, "semantic": 0.75}}
    assert metric_value(row, "rougeL") == 0.25 and metric_value(row, "semantic") == 0.75


def test_relative_change_and_main_table_come_from_the_numbers():
    assert relative_change(0.2, 0.25) == "+25.0%"
    assert relative_change(0.0, 0.1) == "n/a"
    test = {"base": 0.2, "base_ci_low": 0.15, "base_ci_high": 0.25, "finetuned": 0.25, "finetuned_ci_low": 0.2,
            "finetuned_ci_high": 0.31, "difference": 0.05, "ci_low": 0.031, "ci_high": 0.087, "p_value": 0.001,
            "p_value_at_floor": True}
    table = main_table({"rouge1": test, "semantic": {**test, "p_value": 0.04, "p_value_at_floor": False}}, 0.95)
    assert table.startswith("| Metric | Base [95% CI] | Fine-tuned [95% CI] | Difference [95% CI] |")
    assert "| ROUGE-1 | 0.2000 [0.150, 0.250] | 0.2500 [0.200, 0.310] | +0.050 [+0.031, +0.087] | <0.001 | +25.0% |" \
        in table
    assert "| Semantic similarity | 0.2000 [0.150, 0.250] |" in table and "| 0.040 |" in table


def test_aggregate_means_plain_scores_beside_rouge():
    rows = [{"prediction": "a b", "reference": "a", "hit_max_new_tokens": False, "prompt_truncated": False,
             "scores": {"rouge1": {"precision": 0.5, "recall": 1.0, "fmeasure": 0.6667}, "semantic": similarity}}
            for similarity in (0.5, 0.9)]
    summary = aggregate(rows)
    assert summary["semantic"] == pytest.approx(0.7) and summary["rouge1"] == pytest.approx(0.6667)
    assert set(summary["precision"]) == {"rouge1"}


def test_rougelsum_and_the_whitespace_tokenizer_match_rouge_score():
    from lab.eval.scoring import WhitespaceTokenizer

    prediction, reference = "Sort it.\nUse np.sort(a).", "Sorts an array.\nCall np.sort(a) here."
    ours = rouge_scores([prediction], [reference], True, ("rougeLsum",), "whitespace")[0]
    scorer = rouge_scorer.RougeScorer(["rougeLsum"], use_stemmer=True,
                                      tokenizer=WhitespaceTokenizer())
    assert ours["rougeLsum"]["fmeasure"] == pytest.approx(scorer.score(reference, prediction)["rougeLsum"].fmeasure)
    default = rouge_scores([prediction], [reference], True, ("rouge1",), "default")[0]["rouge1"]["fmeasure"]
    assert default != rouge_scores([prediction], [reference], True, ("rouge1",), "whitespace")[0]["rouge1"]["fmeasure"]
