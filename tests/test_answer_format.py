"""data.answer_format: each rewrite pinned on hand-made answers, the format checks on their edge cases, and
prepare applying the rewrite to training and validation only."""

import json

import pytest

from lab.data.answer_format import (
    PARAMS_FOLLOW_UP,
    apply_answer_format,
    is_param_json,
    is_param_list_task,
    is_steps,
    rewrite_answer,
    to_json,
    to_steps,
)
from lab.data.builtin.docparse import ParsedDoc
from lab.data.builtin.docstrings import make_conversation

from .conftest import make_config

PARAMS_QUESTION = ("Here is the Parameters section of the documentation of `numpy.sort`:\n\na : array_like\n"
                   "    Array to be sorted.\n\nList each parameter with a one-line description.")
PARAM_LIST = "`sort` takes:\n- `a`: Array to be sorted.\n- `axis`: Axis along which to sort. Default is -1."
MATH = "The pens cost 4 × 3 = 12 dollars.\nTogether they cost 12 + 5 = 17 dollars.\nAnswer: 17"
PROSE = "Return a sorted copy of an array. The sort is stable."
CODE = "```python\nimport numpy as np\nnp.sort([3, 1, 2])\n# -> array([1, 2, 3])\n```"
DOCTEST = "```python\n>>> Counter('abracadabra').most_common(1)\n[('a', 5)]\n```"


@pytest.mark.parametrize(("answer", "expected"), [
    (MATH, "1. The pens cost 4 × 3 = 12 dollars.\n2. Together they cost 12 + 5 = 17 dollars.\nAnswer: 17"),
    (PROSE, "1. Return a sorted copy of an array.\n2. The sort is stable.\nAnswer: Return a sorted copy of an array."),
    (PARAM_LIST, "1. `a`: Array to be sorted.\n2. `axis`: Axis along which to sort. Default is -1.\n"
                 "Answer: `sort` takes `a`, `axis`."),
    (CODE, f"1. {CODE}\nAnswer: `np.sort([3, 1, 2])`"),
    (DOCTEST, f"1. {DOCTEST}\nAnswer: `Counter('abracadabra').most_common(1)`"),
    ("See below:\n- first point. Second sentence.\n- third", "1. See below:\n2. first point.\n3. Second sentence.\n"
                                                           "4. third\nAnswer: See below:"),
    ("Answer: 42", "1. 42\nAnswer: 42"),
])
def test_steps_rewrite_of_each_kind_of_answer(answer, expected):
    assert to_steps(answer) == expected
    assert is_steps(expected)
    assert to_steps(expected) == expected  # idempotent: a text in the format comes back unchanged


def test_steps_rewrite_renumbers_old_numbering():
    numbered = "Step 1: add 2 + 2 = 4.\n3) double it: 8.\nanswer: 8"
    assert to_steps(numbered) == "1. add 2 + 2 = 4.\n2. double it: 8.\nAnswer: 8"


def test_json_rewrite_of_a_parameter_list_and_nothing_else():
    expected = {"parameters": [{"name": "a", "description": "Array to be sorted."},
                               {"name": "axis", "description": "Axis along which to sort. Default is -1."}]}
    assert json.loads(rewrite_answer(PARAMS_QUESTION, PARAM_LIST, "json")) == expected
    assert is_param_json(to_json(PARAM_LIST))
    assert rewrite_answer(PARAMS_FOLLOW_UP, PARAM_LIST, "json") == to_json(PARAM_LIST)
    # Other tasks keep their answers; a parameter list asked with other words is not the task either.
    assert rewrite_answer("What does `numpy.sort` do?", PROSE, "json") == PROSE
    assert rewrite_answer("Solve it.", MATH, "json") == MATH
    assert rewrite_answer("Tell me the arguments.", PARAM_LIST, "json") == PARAM_LIST
    assert rewrite_answer(PARAMS_QUESTION, PROSE, "json") == PROSE  # the question alone is not enough
    assert rewrite_answer(PARAMS_QUESTION, PARAM_LIST, "keep") == PARAM_LIST
    with pytest.raises(ValueError, match="not a parameter list"):
        to_json(PROSE)


def test_the_docs_domains_parameter_questions_are_recognised():
    doc = ParsedDoc(text="Sort an array. " * 10, paragraphs=["Sort an array.", "More words here " * 6], examples="",
                    code="", params=[("a", "array_like", "Array to be sorted."), ("axis", "int", "Axis to sort.")])
    params_task = make_conversation("pkg.sort", doc, 120, "params")["messages"]
    assert is_param_list_task(params_task[0]["content"], params_task[1]["content"])
    # Closed-book rows get the parameter follow-up for some ids (a hash decides): find them among a few.
    follow_ups = [m for i in range(40) for m in [make_conversation(f"pkg.f{i}", doc, 120, "closed")["messages"]]
                  if len(m) == 4]
    assert follow_ups and all(is_param_list_task(m[2]["content"], m[3]["content"]) for m in follow_ups)
    assert not any(is_param_list_task(m[0]["content"], m[1]["content"]) for m in follow_ups)


@pytest.mark.parametrize(("text", "valid"), [
    ("1. a\n2. b\nAnswer: c", True),
    ("1. a\n```python\nx = 1\n```\n2. b\n\nAnswer: 3", True),  # continuation lines belong to the step above
    ("1. a\n**Answer:** 3", True),
    ("1. a\n2. b", False),  # no Answer line
    ("1. a\nAnswer: 3\nThanks!", False),  # the Answer line is not the last
    ("1. a\nAnswer: 2\n2. b\nAnswer: 3", False),  # two Answer lines
    ("1. a\n3. b\nAnswer: c", False),  # a number skipped
    ("2. a\nAnswer: c", False),  # does not start at 1
    ("Intro.\n1. a\nAnswer: c", False),  # text before the first step
    ("1. a\nAnswer:", False),  # an empty answer
    ("Answer: 3", False),  # no step
    ("", False),
])
def test_steps_format_check(text, valid):
    assert is_steps(text) is valid


@pytest.mark.parametrize(("text", "valid"), [
    ('{"parameters": [{"name": "a", "description": "An array."}]}', True),
    ('```json\n{"parameters": [{"name": "a", "description": "An array."}]}\n```', True),
    ('{"parameters": [{"name": "a", "description": "An array."}', False),  # invalid JSON (cut off)
    ('Here: {"parameters": [{"name": "a", "description": "An array."}]}', False),  # text around it
    ('[{"name": "a", "description": "An array."}]', False),  # a list, not an object
    ('{"parameters": []}', False),  # empty
    ('{"parameters": [{"name": "a"}]}', False),  # no description
    ('{"parameters": [{"name": "a", "description": "x", "type": "int"}]}', False),  # an extra key
    ('{"parameters": [{"name": 1, "description": "x"}]}', False),  # a name that is not a string
    ('{"parameters": [{"name": "a", "description": " "}]}', False),  # a blank description
    ('{"params": [{"name": "a", "description": "x"}]}', False),  # the wrong top-level key
    ('"parameters"', False),
])
def test_param_json_check(text, valid):
    assert is_param_json(text) is valid


def test_apply_rewrites_every_assistant_turn_with_its_own_question_and_leaves_the_input_alone():
    conversation = {"id": "x", "source": "pkg", "messages": [
        {"role": "user", "content": "What does `pkg.sort` do?"}, {"role": "assistant", "content": PROSE},
        {"role": "user", "content": PARAMS_FOLLOW_UP}, {"role": "assistant", "content": PARAM_LIST}]}
    original = json.dumps(conversation)
    rows = [conversation]
    assert apply_answer_format(rows, "keep") is rows
    as_json = apply_answer_format(rows, "json")[0]["messages"]
    assert [m["content"] for m in as_json] == ["What does `pkg.sort` do?", PROSE, PARAMS_FOLLOW_UP, to_json(PARAM_LIST)]
    as_steps = apply_answer_format(rows, "steps")[0]
    assert [m["content"] for m in as_steps["messages"][1::2]] == [to_steps(PROSE), to_steps(PARAM_LIST)]
    assert as_steps["id"] == "x" and json.dumps(conversation) == original


def test_prepare_rewrites_training_and_validation_answers_but_never_test_or_eval_references(tmp_path):
    from lab.data.prepare import prepare

    rows = [{"conversations": [{"from": "human", "value": f"What is {i} + {i}? Topic {i}."},
                               {"from": "gpt", "value": f"Adding gives {i} + {i} = {2 * i} for item {i}.\n"
                                                        f"Answer: {2 * i}"}], "source": "s"} for i in range(30)]
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    overrides = {"data": {"source": str(path), "eval_examples": 3, "validation_examples": 3, "test_size": 0.2,
                          "max_train_examples": None}}
    kept = prepare(make_config(overrides))
    steps = prepare(make_config({"data": {**overrides["data"], "answer_format": "steps"}}))
    answers = {split: [c["messages"][-1]["content"] for c in steps[split]] for split in ("train", "validation")}
    assert answers["train"] and answers["validation"] and all(map(is_steps, answers["train"] + answers["validation"]))
    assert answers["train"] == [to_steps(c["messages"][-1]["content"]) for c in kept["train"]]
    assert steps["test"] == kept["test"] and steps["eval"] == kept["eval"]
    assert not any(is_steps(e["reference"]) for e in steps["eval"])
