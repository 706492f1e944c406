import json

import pytest

from lab.data import (
    load_raw_rows,
    normalize_row,
    normalize_rows,
    sample,
    split_conversations,
    to_eval_example,
)
from lab.errors import DataError

from .conftest import make_config

SHAREGPT = {
    "conversations": [
        {"from": "system", "value": "Be brief."},
        {"from": "human", "value": "What is 2+2?"},
        {"from": "gpt", "value": "4"},
        {"from": "human", "value": "And 3+3?"},
        {"from": "gpt", "value": " 6 "},
    ],
    "source": "math",
    "score": 4.5,
}


def test_sharegpt_row_normalises_to_chat_messages_keeping_source_and_score():
    row = normalize_row(SHAREGPT, 7)
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert row["messages"][-1]["content"] == "6"
    assert (row["id"], row["source"], row["score"]) == ("7", "math", 4.5)


def test_chat_messages_and_role_aliases_are_accepted():
    row = normalize_row({"messages": [{"role": "prompter", "content": "hi"}, {"role": "model", "content": "yo"}]}, 0)
    assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
    assert row["source"] == "unknown" and row["score"] is None


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"text": "no conversation here"}, "no_conversation"),
        ({"conversations": []}, "no_conversation"),
        ({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "  "}]}, "empty_turn"),
        ({"conversations": [{"from": "alien", "value": "hi"}, {"from": "gpt", "value": "x"}]}, "unknown_role"),
        ({"conversations": [{"from": "human", "value": "hi"}]}, "no_assistant_turn"),
        ({"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"},
                            {"from": "human", "value": "c"}]}, "last_turn_not_assistant"),
        ({"conversations": [{"from": "gpt", "value": "b"}]}, "starts_with_assistant"),
        ("just a string", "not_a_mapping"),
    ],
)
def test_each_kind_of_malformed_row_is_rejected_with_its_reason(row, reason):
    conversations, dropped = normalize_rows([SHAREGPT, row], on_invalid="drop")
    assert len(conversations) == 1
    assert dropped == {reason: 1}


def test_invalid_rows_raise_one_error_that_counts_and_names_them():
    rows = [SHAREGPT, {"conversations": []}, SHAREGPT, {"conversations": [{"from": "x", "value": "y"}]}, {}]
    with pytest.raises(DataError) as error:
        normalize_rows(rows, on_invalid="error")
    message = str(error.value)
    assert "3 invalid row(s)" in message
    assert "no_conversation: 2 row(s)" in message and "row 1" in message and "row 4" in message
    assert "unknown_role: 1 row(s)" in message and "row 3" in message
    assert "data.on_invalid: drop" in message


def conversations(count):
    return [{"id": str(i), "source": "s", "score": None,
             "messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
            for i in range(count)]


def test_split_is_seeded_disjoint_and_sized():
    rows = conversations(100)
    train, test = split_conversations(rows, 0.15, seed=1)
    assert len(test) == 15 and len(train) == 85
    assert {r["id"] for r in train}.isdisjoint(r["id"] for r in test)
    assert split_conversations(rows, 0.15, seed=1) == (train, test)
    assert split_conversations(rows, 0.15, seed=2)[1] != test


def test_split_refuses_a_split_that_leaves_a_side_empty():
    with pytest.raises(DataError, match="cannot be split"):
        split_conversations(conversations(3), 0.1, seed=0)


def test_sample_is_seeded_and_keeps_order():
    rows = conversations(50)
    chosen = sample(rows, 10, seed=3)
    assert chosen == sample(rows, 10, seed=3)
    assert [int(r["id"]) for r in chosen] == sorted(int(r["id"]) for r in chosen)
    assert sample(rows, None, seed=3) == rows


def test_eval_example_is_history_plus_last_assistant_turn():
    example = to_eval_example(normalize_row(SHAREGPT, 0))
    assert [m["content"] for m in example["input"]] == ["Be brief.", "What is 2+2?", "4", "And 3+3?"]
    assert example["reference"] == "6"


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
def test_local_files_load_through_datasets(tmp_path, suffix):
    import pandas as pd

    path = tmp_path / f"rows{suffix}"
    frame = pd.DataFrame([SHAREGPT, SHAREGPT])
    if suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif suffix == ".json":
        path.write_text(json.dumps([SHAREGPT, SHAREGPT]))
    else:
        frame.to_parquet(path)
    rows = load_raw_rows(make_config({"data": {"source": str(path)}}).data)
    assert [normalize_row(r, i)["messages"][-1]["content"] for i, r in enumerate(rows)] == ["6", "6"]


def test_missing_local_file_is_named(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_raw_rows(make_config({"data": {"source": str(tmp_path / "missing.jsonl")}}).data)


def test_unreachable_hub_dataset_fails_with_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="could not load Hub dataset 'no-such-org/no-such-dataset'"):
        load_raw_rows(make_config({"data": {"source": "no-such-org/no-such-dataset"}}).data)
