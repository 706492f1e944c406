"""Format metrics per example and aggregated: which examples each covers, and what counts as a pass."""

import pytest

from lab.data.answer_format import PARAMS_FOLLOW_UP
from lab.eval.format_metrics import aggregate_format, ends_with_answer_line, format_scores

MATH_REFERENCE = "There are 40 × 30 = 1200 grams.\nAnswer: 1200"
PARAM_REFERENCE = "`sort` takes:\n- `a`: Array to be sorted."
PARAM_JSON = '{"parameters": [{"name": "a", "description": "Array to be sorted."}]}'


def example(source: str, reference: str, question: str = "Solve it.") -> dict:
    return {"id": f"{source}-1", "source": source, "input": [{"role": "user", "content": question}],
            "reference": reference}


MATH = example("math", MATH_REFERENCE)
PARAMS = example("numpy", PARAM_REFERENCE, PARAMS_FOLLOW_UP)
PROSE = example("numpy", "Return a sorted copy.", "What does `numpy.sort` do?")


@pytest.mark.parametrize(("prediction", "match"), [
    ("Answer: 1200", 1.0),
    ("Answer: $1200", 1.0),
    ("Answer: 1,200", 1.0),
    ("Answer: 1200.0", 1.0),
    ("**Answer:** 1,200", 1.0),
    ("1. 40 × 30 = 1200.\nAnswer: 1200 grams.", 1.0),
    ("First 30, then 40 × 30 = 1200.\nAnswer: 1200", 1.0),  # several numbers: the Answer line's counts
    ("Answer: 1200\nNo wait.\nAnswer: 120", 0.0),  # the last Answer line counts
    ("Answer: 120", 0.0),
    ("The total is 1200 grams.", 0.0),  # no Answer line: not taken from the free text
    ("", 0.0),
])
def test_math_exact_match_reads_the_final_answer(prediction, match):
    assert format_scores(MATH, prediction, "keep")["math_exact_match"] == match


def test_math_exact_match_covers_only_math_examples_with_a_final_answer():
    assert format_scores(PROSE, "Answer: 1200", "keep")["math_exact_match"] is None
    assert format_scores(example("math", "no final answer"), "Answer: 3", "keep")["math_exact_match"] is None


def test_format_valid_for_keep_is_the_math_references_answer_line_and_covers_nothing_else():
    assert format_scores(MATH, "So 1200.\nAnswer: 1200", "keep")["format_valid"] == 1.0
    assert format_scores(MATH, "Answer: 1200\nHope this helps!", "keep")["format_valid"] == 0.0
    assert format_scores(MATH, "Answer: twelve hundred", "keep")["format_valid"] == 0.0
    assert format_scores(PROSE, "Return a copy.", "keep")["format_valid"] is None
    assert format_scores(PARAMS, PARAM_REFERENCE, "keep")["format_valid"] is None
    assert ends_with_answer_line("1. x\n\nAnswer: 3\n") and not ends_with_answer_line("")


def test_format_valid_for_steps_covers_every_example():
    steps = "1. Multiply 40 × 30 = 1200.\nAnswer: 1200"
    assert [format_scores(e, steps, "steps")["format_valid"] for e in (MATH, PARAMS, PROSE)] == [1.0, 1.0, 1.0]
    assert [format_scores(e, "Answer: 1200", "steps")["format_valid"] for e in (MATH, PARAMS, PROSE)] == [0.0] * 3
    # Math exact match does not depend on the format: a right answer in the wrong format still matches.
    assert format_scores(MATH, "Answer: 1200", "steps") == {"format_valid": 0.0, "math_exact_match": 1.0}


def test_format_valid_for_json_covers_only_the_parameter_list_tasks():
    assert format_scores(PARAMS, PARAM_JSON, "json")["format_valid"] == 1.0
    assert format_scores(PARAMS, PARAM_JSON[:-2], "json")["format_valid"] == 0.0  # invalid JSON
    assert format_scores(PARAMS, '{"parameters": ["a"]}', "json")["format_valid"] == 0.0  # the wrong shape
    assert format_scores(PARAMS, PARAM_REFERENCE, "json")["format_valid"] == 0.0  # the old list format
    assert format_scores(PROSE, PARAM_JSON, "json")["format_valid"] is None
    assert format_scores(MATH, PARAM_JSON, "json") == {"format_valid": None, "math_exact_match": 0.0}


def test_aggregate_means_each_metric_over_the_examples_it_covers_only():
    rows = [{**e, "format_scores": format_scores(e, prediction, "json")}
            for e, prediction in ((PARAMS, PARAM_JSON), (PARAMS, "no"), (PARAMS, PARAM_JSON), (PROSE, "x"),
                                  (MATH, "Answer: 1200"), (MATH, "Answer: 7"), (MATH, "Answer: 1,200"))]
    # 2 of the 3 parameter-list rows valid; 2 of the 3 math rows right; the prose row enters neither.
    assert aggregate_format(rows, "json") == {"answer_format": "json",
                                              "format_valid": {"mean": 0.6667, "examples": 3},
                                              "math_exact_match": {"mean": 0.6667, "examples": 3}}


def test_a_metric_that_covers_no_example_is_n_a_with_count_zero_not_zero():
    rows = [{**PROSE, "format_scores": format_scores(PROSE, "Return a copy.", "keep")}] * 4
    summary = aggregate_format(rows, "keep")
    assert summary["format_valid"] == {"mean": None, "examples": 0}
    assert summary["math_exact_match"] == {"mean": None, "examples": 0}
