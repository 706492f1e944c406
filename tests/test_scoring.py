import pytest
from rouge_score import rouge_scorer

from lab.report import relative_change, rouge_table
from lab.scoring import aggregate, rouge_scores, word_length_stats

PREDICTIONS = ["Return the indices that would sort an array.", "Sorts things quickly", ""]
REFERENCES = ["Returns the indices that would sort an array along an axis.", "Compute the median.", "Anything"]


@pytest.mark.parametrize("use_stemmer", [True, False])
def test_rouge_equals_rouge_score_on_the_same_strings(use_stemmer):
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=use_stemmer)
    ours = rouge_scores(PREDICTIONS, REFERENCES, use_stemmer)
    for mine, prediction, reference in zip(ours, PREDICTIONS, REFERENCES, strict=True):
        theirs = scorer.score(reference, prediction)
        for name in ("rouge1", "rouge2", "rougeL"):
            assert mine[name]["fmeasure"] == pytest.approx(theirs[name].fmeasure, abs=1e-6)
            assert mine[name]["precision"] == pytest.approx(theirs[name].precision, abs=1e-6)
            assert mine[name]["recall"] == pytest.approx(theirs[name].recall, abs=1e-6)


def test_stemming_changes_the_score_as_expected():
    stemmed = rouge_scores(["sorting arrays"], ["sorts array"], use_stemmer=True)[0]
    plain = rouge_scores(["sorting arrays"], ["sorts array"], use_stemmer=False)[0]
    assert stemmed["rouge1"]["fmeasure"] == 1.0 and plain["rouge1"]["fmeasure"] == 0.0


def rows():
    scores = rouge_scores(PREDICTIONS, REFERENCES, use_stemmer=True)
    return [{"prediction": p, "reference": r, "scores": s, "hit_max_new_tokens": i == 0, "prompt_truncated": False}
            for i, (p, r, s) in enumerate(zip(PREDICTIONS, REFERENCES, scores, strict=True))]


def test_aggregate_means_and_lengths():
    summary = aggregate(rows())
    expected = sum(r["scores"]["rougeL"]["fmeasure"] for r in rows()) / 3
    assert summary["rougeL"] == pytest.approx(expected, abs=1e-4)
    assert summary["words"]["prediction"] == {"mean": pytest.approx(11 / 3, abs=0.01), "median": 3.0}
    assert summary["hit_max_new_tokens_share"] == pytest.approx(1 / 3, abs=1e-4)
    assert summary["examples"] == 3


def test_word_length_stats():
    assert word_length_stats(["a b", "a b c d", "x"]) == {"mean": 2.33, "median": 2.0}


def test_relative_change_and_table_come_from_the_numbers():
    assert relative_change(0.2, 0.25) == "+25.0%"
    assert relative_change(0.0, 0.1) == "n/a"
    base = {"rouge1": 0.2, "rouge2": 0.05, "rougeL": 0.1}
    tuned = {"rouge1": 0.25, "rouge2": 0.04, "rougeL": 0.1}
    table = rouge_table(base, tuned)
    assert "| ROUGE-1 F1 | 0.2000 | 0.2500 | +0.0500 | +25.0% |" in table
    assert "| ROUGE-2 F1 | 0.0500 | 0.0400 | -0.0100 | -20.0% |" in table


def test_rougelsum_and_the_whitespace_tokenizer_match_rouge_score():
    from lab.scoring import WhitespaceTokenizer

    prediction, reference = "Sort it.\nUse np.sort(a).", "Sorts an array.\nCall np.sort(a) here."
    ours = rouge_scores([prediction], [reference], True, ("rougeLsum",), "whitespace")[0]
    scorer = rouge_scorer.RougeScorer(["rougeLsum"], use_stemmer=True,
                                      tokenizer=WhitespaceTokenizer())
    assert ours["rougeLsum"]["fmeasure"] == pytest.approx(scorer.score(reference, prediction)["rougeLsum"].fmeasure)
    default = rouge_scores([prediction], [reference], True, ("rouge1",))[0]["rouge1"]["fmeasure"]
    assert default != rouge_scores([prediction], [reference], True, ("rouge1",), "whitespace")[0]["rouge1"]["fmeasure"]
