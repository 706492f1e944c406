import json

import pytest

from lab.core.errors import DataError
from lab.data.formats import FORMATS, detect_format, oasst_conversations
from lab.data.prepare import load_raw_rows
from lab.data.rows import normalize_row, normalize_rows

from .conftest import make_config

# One row of each public dataset, in its real column layout.
SHAREGPT = {  # mlabonne/FineTome-100k
    "conversations": [{"from": "human", "value": "Explain what boolean operators are."},
                      {"from": "gpt", "value": "Boolean operators are logical operators."}],
    "source": "infini-instruct-top-500k",
    "score": 5.212620735168457,
}
CHAT = {  # HuggingFaceH4/ultrachat_200k
    "prompt": "How does a sextant work?",
    "prompt_id": "1a2b",
    "messages": [{"role": "user", "content": "How does a sextant work?"},
                 {"role": "assistant", "content": "It measures the angle between two objects."}],
}
CODE_ALPACA = {  # sahil2801/CodeAlpaca-20k
    "instruction": "Write a replace method for a string class which replaces the given string with a given set of "
                   "characters.",
    "input": 'string = "Hello World!"\nreplace_with = "Greetings!"',
    "output": "def replace(self, replace_with):\n    return self.replace(\" \", replace_with)",
}
GSM8K = {  # openai/gsm8k, main
    "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
                "How many clips did Natalia sell altogether in April and May?",
    "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
              "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72",
}
METAMATHQA = {  # meta-math/MetaMathQA
    "type": "MATH_AnsAug",
    "query": "Gracie and Joe are choosing numbers on the complex plane. Joe chooses the point $1+2i$. Gracie "
             "chooses $-1+i$. How far apart are Gracie and Joe's points?",
    "original_question": "Gracie and Joe are choosing numbers on the complex plane. Joe chooses the point $1+2i$. "
                         "Gracie chooses $-1+i$. How far apart are Gracie and Joe's points?",
    "response": "The distance is $\\sqrt{(-2)^2+(-1)^2}=\\sqrt{5}$.\nThe answer is: \\sqrt{5}",
}
FLAN = {  # the FLAN collection (flan_v2 layout)
    "inputs": "Premise: A man is playing a guitar.\nHypothesis: A man plays music.\n"
              "Does the premise entail the hypothesis?\n\nOPTIONS:\n- yes\n- it is not possible to tell\n- no",
    "targets": "yes",
    "task_source": "Flan2021",
    "task_name": "snli:1.1.0",
    "template_type": "zs_opt",
}

SINGLE_ROW_CASES = [
    ("sharegpt", SHAREGPT, ["Explain what boolean operators are.", "Boolean operators are logical operators."]),
    ("messages", CHAT, ["How does a sextant work?", "It measures the angle between two objects."]),
    ("alpaca", CODE_ALPACA, [CODE_ALPACA["instruction"] + "\n\n" + CODE_ALPACA["input"], CODE_ALPACA["output"]]),
    ("question_answer", GSM8K, [GSM8K["question"], GSM8K["answer"]]),
    ("query_response", METAMATHQA, [METAMATHQA["query"], METAMATHQA["response"]]),
    ("inputs_targets", FLAN, [FLAN["inputs"], FLAN["targets"]]),
]


def oasst(message_id, parent_id, role, text, rank, tree="t1"):
    """One OpenAssistant oasst1 row, every column of the release."""
    return {
        "message_id": message_id, "parent_id": parent_id, "user_id": f"user-{message_id}",
        "created_date": "2023-02-05T14:23:50.983374+00:00", "text": text, "role": role, "lang": "en",
        "review_count": 3, "review_result": True, "deleted": False, "rank": rank, "synthetic": False,
        "model_name": None, "detoxify": None, "message_tree_id": tree, "tree_state": "ready_for_export",
        "emojis": {"name": ["+1"], "count": [2]},
        "labels": {"name": ["spam", "quality"], "value": [0.0, 0.75], "count": [3, 3]},
    }


# Tree t1: the best path is root -> a2 (rank 0) -> p2 (ranked, before the null-ranked p3) -> a4 (the
# unranked tie goes to the smaller message_id); a5 (null rank) loses to both ranked siblings.
OASST_TREE = [
    oasst("t1", None, "prompter", "What is a monad?", None),
    oasst("a1", "t1", "assistant", "A burrito.", 1),
    oasst("a2", "t1", "assistant", "A monoid in the category of endofunctors.", 0),
    oasst("a0", "t1", "assistant", "Unranked answer.", None),
    oasst("p3", "a2", "prompter", "Unranked follow-up.", None),
    oasst("p2", "a2", "prompter", "In plain words?", 0),
    oasst("a6", "p2", "assistant", "A way to chain computations.", None),
    oasst("a4", "p2", "assistant", "A pattern for chaining steps.", None),
]
# Tree t2: the best reply to the answer is a prompt nobody answered, so the conversation ends before it.
OASST_TRAILING_PROMPT = [
    oasst("t2", None, "prompter", "Name a prime.", None, tree="t2"),
    oasst("b1", "t2", "assistant", "Seven.", 0, tree="t2"),
    oasst("b2", "b1", "prompter", "Another?", 0, tree="t2"),
]
OASST_EXPECTED = [
    {"id": "t1", "source": None, "messages": [
        {"role": "user", "content": "What is a monad?"},
        {"role": "assistant", "content": "A monoid in the category of endofunctors."},
        {"role": "user", "content": "In plain words?"},
        {"role": "assistant", "content": "A pattern for chaining steps."}]},
    {"id": "t2", "source": None, "messages": [
        {"role": "user", "content": "Name a prime."}, {"role": "assistant", "content": "Seven."}]},
]


def contents(conversation):
    return [m["content"] for m in conversation["messages"]]


@pytest.mark.parametrize(("name", "row", "expected"), SINGLE_ROW_CASES)
def test_each_format_is_detected_from_its_real_columns_and_normalised_exactly(name, row, expected):
    assert detect_format(row) == name
    (conversation,), dropped = normalize_rows([row], on_invalid="error", data_format="auto", same_role_turns="merge")
    assert not dropped
    assert [m["role"] for m in conversation["messages"]] == ["user", "assistant"]
    assert contents(conversation) == expected
    assert conversation == normalize_row(row, 0, name, same_role_turns="merge")


def test_sharegpt_keeps_source_and_score_and_others_take_the_default_source():
    assert (normalize_row(SHAREGPT, 3, "sharegpt", "fallback", same_role_turns="merge")["source"]
            == "infini-instruct-top-500k")
    assert normalize_row(SHAREGPT, 3, "sharegpt", same_role_turns="merge")["score"] == 5.212620735168457
    conversations, _ = normalize_rows([GSM8K, GSM8K], on_invalid="error", data_format="auto", default_source="gsm8k",
                                      same_role_turns="merge")
    assert [(c["id"], c["source"], c["score"]) for c in conversations] == [("0", "gsm8k", None), ("1", "gsm8k", None)]
    assert normalize_row(GSM8K, 0, "question_answer", same_role_turns="merge")["source"] == "unknown"


def test_alpaca_without_input_is_the_instruction_alone():
    row = {"instruction": "Create an array of length 5 which contains all even numbers between 1 and 10.",
           "input": "", "output": "arr = [2, 4, 6, 8, 10]"}
    assert contents(normalize_row(row, 0, "alpaca", same_role_turns="merge")) == [row["instruction"], row["output"]]


def test_ambiguous_columns_name_the_matching_formats_and_every_known_one():
    with pytest.raises(DataError) as error:
        detect_format({"conversations", "messages", "id"})
    message = str(error.value)
    assert "several formats (sharegpt, messages)" in message
    assert "Columns found: conversations, id, messages" in message
    assert "data.format" in message


def test_unknown_columns_are_listed_with_the_known_formats_and_their_columns():
    with pytest.raises(DataError) as error:
        normalize_rows([{"prompt": "a", "completion": "b"}], on_invalid="drop", data_format="auto",
                       same_role_turns="merge")
    message = str(error.value)
    assert "match no known format" in message and "Columns found: completion, prompt" in message
    for name, adapter in FORMATS.items():
        assert f"{name}: {', '.join(adapter.columns)}" in message
    assert "alpaca: instruction, output (optional: input)" in message


def test_an_explicit_format_settles_an_ambiguous_schema():
    row = {**CHAT, "conversations": [{"from": "human", "value": "other"}, {"from": "gpt", "value": "thread"}]}
    with pytest.raises(DataError, match="several formats"):
        normalize_rows([row], on_invalid="error", data_format="auto", same_role_turns="merge")
    (conversation,), _ = normalize_rows([row], on_invalid="error", data_format="messages", same_role_turns="merge")
    assert contents(conversation) == contents(normalize_row(CHAT, 0, "messages", same_role_turns="merge"))


def test_an_unknown_format_name_is_refused():
    with pytest.raises(DataError, match="unknown format 'csv'; known: auto, sharegpt"):
        normalize_rows([GSM8K], on_invalid="error", data_format="csv", same_role_turns="merge")


def test_detection_looks_past_a_malformed_first_row():
    conversations, dropped = normalize_rows(["junk", {}, GSM8K], on_invalid="drop", data_format="auto",
                                            same_role_turns="merge")
    assert contents(conversations[0]) == [GSM8K["question"], GSM8K["answer"]]
    assert dropped == {"not_a_mapping": 1, "no_conversation": 1}


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({**GSM8K, "answer": None}, "empty_turn"),
        ({**GSM8K, "question": "   "}, "empty_turn"),
        ({"question": None, "answer": None}, "no_conversation"),
        ({**CODE_ALPACA, "instruction": ""}, "empty_turn"),
        ({**CODE_ALPACA, "output": 42}, "not_text"),
    ],
)
def test_row_faults_of_the_new_formats_are_counted_by_reason(row, reason):
    base = CODE_ALPACA if "instruction" in row else GSM8K
    conversations, dropped = normalize_rows([base, row], on_invalid="drop", data_format="auto", same_role_turns="merge")
    assert len(conversations) == 1 and dropped == {reason: 1}


def test_oasst_follows_the_best_ranked_path_nulls_last_and_drops_a_trailing_prompt():
    assert oasst_conversations(OASST_TREE + OASST_TRAILING_PROMPT) == OASST_EXPECTED


def test_oasst_rows_normalise_to_one_conversation_per_tree():
    rows = OASST_TRAILING_PROMPT + OASST_TREE
    assert detect_format(rows[0]) == "oasst"
    conversations, dropped = normalize_rows(rows, on_invalid="error", data_format="auto", default_source="oasst1",
                                            same_role_turns="merge")
    assert not dropped
    assert [(c["id"], c["source"], c["score"]) for c in conversations] == [("t2", "oasst1", None),
                                                                          ("t1", "oasst1", None)]
    assert [c["messages"] for c in conversations] == [OASST_EXPECTED[1]["messages"], OASST_EXPECTED[0]["messages"]]


def test_oasst_rows_that_fit_no_tree_are_counted_and_named():
    rows = [
        *OASST_TREE,
        oasst("a1", "t1", "assistant", "A second copy of a1.", 2),
        oasst("x1", "gone", "assistant", "Reply to a message not in the data.", 0, tree="t9"),
        oasst("x2", "x1", "prompter", "Below the orphan.", None, tree="t9"),
        oasst("t3", None, "prompter", "Unanswered prompt.", None, tree="t3"),
        {**oasst("y", None, "prompter", "no id", None), "message_id": None},
    ]
    conversations, dropped = normalize_rows(rows, on_invalid="drop", data_format="oasst", same_role_turns="merge")
    assert [c["id"] for c in conversations] == ["t1"]
    assert dropped == {"duplicate_message_id": 1, "orphan_message": 2, "no_assistant_turn": 1, "no_message_id": 1}
    with pytest.raises(DataError) as error:
        normalize_rows(rows, on_invalid="error", data_format="oasst", same_role_turns="merge")
    message = str(error.value)
    assert "5 invalid row(s) in the oasst dataset" in message
    assert "orphan_message: 2 row(s), e.g. row 9 (orphan_message: message 'x1'" in message and "row 10" in message
    assert "duplicate_message_id: 1 row(s), e.g. row 8" in message
    assert "no_assistant_turn: 1 row(s), e.g. tree t3" in message


def test_a_nan_rank_counts_as_unranked():
    rows = [oasst("r", None, "prompter", "q", None), oasst("b", "r", "assistant", "nan-ranked", float("nan")),
            oasst("c", "r", "assistant", "ranked", 3)]
    assert contents(oasst_conversations(rows)[0]) == ["q", "ranked"]


ALL_FORMATS = [(name, [row, row], [expected, expected]) for name, row, expected in SINGLE_ROW_CASES] + [
    ("oasst", OASST_TREE + OASST_TRAILING_PROMPT, [contents(c) for c in OASST_EXPECTED]),
]


@pytest.mark.parametrize(("name", "rows", "expected"), ALL_FORMATS)
def test_each_format_loads_from_a_local_jsonl_end_to_end(tmp_path, name, rows, expected):
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    raw_rows = load_raw_rows(make_config({"data": {"source": str(path)}}).data, 0)
    conversations, dropped = normalize_rows(raw_rows, on_invalid="error", data_format="auto", same_role_turns="merge")
    assert not dropped
    assert [contents(c) for c in conversations] == expected
