import json

import pytest

from lab.core.errors import ConfigError, DataError
from lab.data.prepare import load_raw_rows, sample, split_conversations, to_eval_example
from lab.data.rows import normalize_row, normalize_rows

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
    row = normalize_row(SHAREGPT, 7, "sharegpt", same_role_turns="merge")
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert row["messages"][-1]["content"] == "6"
    assert (row["id"], row["source"], row["score"]) == ("7", "math", 4.5)


def test_chat_messages_and_role_aliases_are_accepted():
    row = normalize_row({"messages": [{"role": "prompter", "content": "hi"}, {"role": "model", "content": "yo"}]},
                        0, "messages", same_role_turns="merge")
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
    conversations, dropped = normalize_rows([SHAREGPT, row], on_invalid="drop", data_format="auto",
                                            same_role_turns="merge")
    assert len(conversations) == 1
    assert dropped == {reason: 1}


def test_invalid_rows_raise_one_error_that_counts_and_names_them():
    rows = [SHAREGPT, {"conversations": []}, SHAREGPT, {"conversations": [{"from": "x", "value": "y"}]}, {}]
    with pytest.raises(DataError) as error:
        normalize_rows(rows, on_invalid="error", data_format="auto", same_role_turns="merge")
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
    example = to_eval_example(normalize_row(SHAREGPT, 0, "sharegpt", same_role_turns="merge"))
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
    rows = load_raw_rows(make_config({"data": {"source": str(path)}}).data, 0)
    assert [normalize_row(r, i, "sharegpt", same_role_turns="merge")["messages"][-1]["content"]
            for i, r in enumerate(rows)] == ["6", "6"]


def test_missing_local_file_is_named(tmp_path):
    # params.yaml's checks name it when it loads; the loader names it too, should it vanish after.
    with pytest.raises(ConfigError, match="missing.jsonl' is not allowed; it must be an existing .* no such file"):
        make_config({"data": {"source": str(tmp_path / "missing.jsonl")}})
    rows = tmp_path / "rows.jsonl"
    rows.touch()
    data = make_config({"data": {"source": str(rows)}}).data
    rows.unlink()
    with pytest.raises(DataError, match="not found"):
        load_raw_rows(data, 0)


def test_unreachable_hub_dataset_fails_with_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="could not load Hub dataset 'no-such-org/no-such-dataset'"):
        load_raw_rows(make_config({"data": {"source": "no-such-org/no-such-dataset"}}).data, 0)


def test_builtin_domains_mix_in_as_their_own_sources_and_are_counted():
    from lab.data.prepare import prepare

    config = make_config({"data": {"builtin": {"packages": ["json", "statistics", "collections"],
                                               "code_examples": 10, "math_examples": 40},
                                   "eval_examples": 8, "validation_examples": 4, "max_train_examples": None}})
    result = prepare(config)
    everything = result["train"] + result["validation"] + result["test"]
    sources = {row["source"] for row in everything}
    assert sources == {"math", "code", "docs"}
    assert {row["id"].split(".")[0] for row in everything if row["source"] == "docs"} == {"json", "statistics",
                                                                                           "collections"}
    assert sum(row["source"] == "math" for row in everything) == 40
    assert sum(row["source"] == "code" for row in everything) == 10
    assert result["stats"]["train_sources"]["math"] == sum(row["source"] == "math" for row in result["train"])
    # Validation, train and test never share a conversation.
    ids = [[row["id"] for row in result[split]] for split in ("train", "validation", "test")]
    assert len(set().union(*ids)) == sum(map(len, ids)) and len(ids[1]) == 4


def test_prepare_drops_duplicates_and_training_rows_that_leak_into_the_test_split(tmp_path):
    from lab.data.prepare import prepare

    def row(i: int, answer: str) -> dict:
        return {"conversations": [{"from": "human", "value": f"Tell me about topic {i}."},
                                  {"from": "gpt", "value": answer}], "source": "s"}

    words = [f"w{i}" for i in range(400)]
    rows = [row(i, " ".join(words[i * 8:i * 8 + 40])) for i in range(40)]
    rows += [row(0, " ".join(words[0:40])).copy() for _ in range(3)]  # exact copies of row 0
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    config = make_config({"data": {"source": str(path), "eval_examples": 2, "validation_examples": 2,
                                   "test_size": 0.2, "max_train_examples": None,
                                   "dedup": {"near": True, "leak_check": True}}})
    result = prepare(config)
    removed = result["stats"]["removed"]
    assert removed["exact_duplicates"] == 3
    # Neighbouring rows share 32 of 40 words (overlapping windows), far above the threshold: near
    # duplicates chain, and every surviving training row is unlike every test row.
    from lab.data.dedup import leaked

    dedup = config.data.dedup
    assert not leaked(result["train"], result["test"], dedup.threshold, dedup.num_perm, dedup.shingle_words, 0)
    kept = len(result["train"]) + len(result["validation"]) + len(result["test"])
    assert kept == 43 - removed["exact_duplicates"] - removed["near_duplicates"] - removed["leaked"]
