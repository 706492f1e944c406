"""Row-level faults of real-world files: each is an invalid row that data.on_invalid stops on or drops
and counts, never a crash, and prepare's outputs are written all or none."""

import json
from pathlib import Path

import pytest

from lab.core.errors import DataError
from lab.data.json_rows import read_json_rows
from lab.data.prepare import load_conversations, prepare, run_prepare
from lab.data.rows import normalize_rows

from .conftest import make_config


def chat(i: int, *turns: tuple[str, str], **extra: object) -> dict:
    return {"conversations": [{"from": who, "value": text} for who, text in turns] or
            [{"from": "human", "value": f"Question {i} about topic {i}?"},
             {"from": "gpt", "value": f"Answer {i}: a different sentence for topic {i}."}], **extra}


GOOD = [chat(i) for i in range(12)]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def config_for(path: Path, **data: object):
    return make_config({"data": {"source": str(path), "eval_examples": 1, "validation_examples": 1,
                                 "max_train_examples": None, "test_size": 0.25, **data}})


def test_a_jsonl_line_that_is_not_json_is_one_invalid_row_not_a_failed_file(tmp_path):
    lines = [json.dumps(row) for row in GOOD]
    lines[3:3] = ['{"conversations": [', "not json at all"]
    path = write_lines(tmp_path / "rows.jsonl", lines)
    path.write_bytes(path.read_bytes() + b'{"conversations": "\xff"}\n')  # not UTF-8
    conversations, raw, dropped = load_conversations(config_for(path, on_invalid="drop").data, 0)
    assert len(conversations) == 12 and raw == 15 and dropped == {"not_json": 3}
    with pytest.raises(DataError) as error:
        load_conversations(config_for(path).data, 0)
    message = str(error.value)
    assert "3 invalid row(s) in the sharegpt dataset" in message
    assert "not_json: 3 row(s), e.g. row 3 (not_json: line 4 is not JSON (Expecting value at line 1 column" in message
    assert "row 4 (not_json: line 5 is not JSON" in message
    assert "row 14 (not_json: line 15 is not UTF-8 text (byte 20))" in message


def test_a_json_file_is_an_array_or_json_lines_and_a_broken_array_is_named(tmp_path):
    array = tmp_path / "rows.json"
    array.write_text(json.dumps(GOOD[:2], indent=2))
    assert read_json_rows(array, "data.source") == GOOD[:2]
    lines = write_lines(tmp_path / "lines.json", [json.dumps(GOOD[0]), "oops", json.dumps(GOOD[1])])
    rows = read_json_rows(lines, "data.source")
    assert rows[0] == GOOD[0] and rows[2] == GOOD[1] and rows[1].reason == "not_json"
    array.write_text(json.dumps(GOOD[:2], indent=2)[:-3])
    with pytest.raises(DataError, match=r"data.source: .*rows.json is not a valid JSON array "
                                        r"\(Expecting .,. delimiter at line 25 column 3\)"):
        read_json_rows(array, "data.source")


@pytest.mark.parametrize(
    ("row", "reason", "detail"),
    [
        (chat(0, ("human", "hi \ud800 there"), ("gpt", "yo")), "bad_unicode", "turn 0 (user) holds a lone surrogate"),
        (chat(0, ("human", "\x00\u200b\x7f"), ("gpt", "yo")), "empty_turn", "turn 0 (user) has no text"),
        (chat(0, ("human", "hi"), ("gpt", ["a", "list"])), "not_text", "turn 1 (assistant) is a list, not text"),
        (chat(0, ("human", "hi"), ("gpt", "yo"), id={"nested": 1}), "bad_field", "id is a dict"),
        (chat(0, ("human", "hi"), ("gpt", "yo"), source=["s"]), "bad_field", "source is a list"),
        (chat(0, ("human", "hi"), ("gpt", "yo"), source=True), "bad_field", "source is a bool"),
        (chat(0, ("human", "hi"), ("gpt", "yo"), source="s\udc00"), "bad_unicode", "source holds a lone surrogate"),
        (chat(0, ("system", "Be brief.")), "no_assistant_turn", "no assistant turn to predict"),
        (chat(0, ("martian", "hi"), ("gpt", "yo")), "unknown_role", "turn 0 has role 'martian'"),
        ({"conversations": [{"from": "human", "value": "hi"}, {"from": "x" * 500, "value": "yo"}]}, "unknown_role",
         "turn 1 has role 'xxxxxxxx"),
    ],
)
def test_hostile_values_are_invalid_rows_with_a_reason_and_a_short_detail(row, reason, detail):
    with pytest.raises(DataError) as error:
        normalize_rows([chat(1), row], on_invalid="error", data_format="sharegpt", same_role_turns="merge")
    assert f"{reason}: 1 row(s), e.g. row 1 ({reason}: {detail}" in str(error.value)
    assert len(str(error.value)) < 400  # a 500-character role is cut in the message
    assert normalize_rows([chat(1), row], on_invalid="drop", data_format="sharegpt",
                          same_role_turns="merge")[1] == {reason: 1}


def test_numeric_ids_and_integer_sources_are_labels_kept_as_strings():
    (row,), _ = normalize_rows([chat(0, id=12, source=3)], on_invalid="error", data_format="sharegpt",
                               same_role_turns="merge")
    assert (row["id"], row["source"]) == ("12", "3")


@pytest.mark.parametrize("score", [float("nan"), float("inf"), 10**400, "4.5", True, [1]])
def test_a_score_that_is_not_a_finite_number_counts_as_none(score):
    (row,), dropped = normalize_rows([chat(0, score=score)], on_invalid="error", data_format="sharegpt",
                                     same_role_turns="merge")
    assert row["score"] is None and not dropped


def test_data_same_role_turns_reaches_validation_merge_or_reject(tmp_path):
    doubled = chat(99, ("system", "Be brief."), ("system", "Be kind."), ("human", "Hi."), ("human", "Name a prime?"),
                   ("gpt", "Seven."), ("gpt", "Or eleven."))
    path = write_lines(tmp_path / "rows.jsonl", [json.dumps(row) for row in [*GOOD, doubled]])
    merged, _, dropped = load_conversations(config_for(path).data, 0)
    assert not dropped and [m["content"] for m in merged[-1]["messages"]] == [
        "Be brief.\n\nBe kind.", "Hi.\n\nName a prime?", "Seven.\n\nOr eleven."]
    kept, _, dropped = load_conversations(config_for(path, same_role_turns="reject", on_invalid="drop").data, 0)
    assert kept == merged[:-1] and dropped == {"same_role_turns": 1}
    with pytest.raises(DataError, match=r"same_role_turns: 1 row\(s\), e.g. row 12 \(same_role_turns: turns 0 and 1 "
                                        r"are both from the system\)"):
        load_conversations(config_for(path, same_role_turns="reject").data, 0)


def test_dropped_rows_are_counted_by_reason_and_duplicates_by_dedup_in_data_json(tmp_path):
    rows = [json.dumps(row) for row in GOOD] + [json.dumps(GOOD[0]), json.dumps(GOOD[0]), "{", json.dumps([1])]
    path = write_lines(tmp_path / "rows.jsonl", rows)
    stats = prepare(config_for(path, on_invalid="drop"))["stats"]
    assert stats["rows"]["raw"] == 16 and stats["rows"]["valid"] == 14
    assert stats["dropped"] == {"not_a_mapping": 1, "not_json": 1}
    # Duplicates are no row fault: data.dedup.exact removes them, counted overall and per source.
    assert stats["removed"]["exact_duplicates"] == 2
    assert stats["per_source"]["unknown"]["removed"]["exact_duplicates"] == 2
    assert stats["per_source"]["unknown"]["in"] == 14


def test_a_source_with_no_valid_conversation_is_named(tmp_path):
    path = write_lines(tmp_path / "rows.jsonl", ["junk", "[1, 2]", json.dumps(chat(0, ("human", "hi")))])
    with pytest.raises(DataError, match=r"data.source \(.*rows.jsonl\): no valid conversation in 3 row\(s\); dropped "
                                        r"\(data.on_invalid: drop\) by reason: no_assistant_turn: 1, not_a_mapping: 1, "
                                        r"not_json: 1"):
        load_conversations(config_for(path, on_invalid="drop").data, 0)
    with pytest.raises(DataError, match=r"3 invalid row\(s\) in the dataset:\n  not_a_mapping: 2 row\(s\)"):
        load_conversations(config_for(write_lines(tmp_path / "junk.jsonl", ["1", "x", "[]"])).data, 0)


def test_a_misspelled_builtin_package_stops_prepare_naming_it():
    config = make_config({"data": {"builtin": {"packages": ["json", "jsno"]}}})
    with pytest.raises(DataError, match="data.builtin.packages: 'jsno' cannot be imported"):
        prepare(config)


def test_prepare_outputs_are_all_or_none(tmp_path, monkeypatch):
    path = write_lines(tmp_path / "rows.jsonl", [json.dumps(row) for row in GOOD])
    data_dir, metrics = tmp_path / "data", tmp_path / "metrics" / "data.json"
    result = run_prepare(config_for(path), data_dir, metrics)
    written = {p.name: p.read_bytes() for p in [*data_dir.iterdir(), metrics]}
    assert sorted(written) == ["data.json", "eval.jsonl", "test.jsonl", "train.jsonl", "validation.jsonl"]
    assert [json.loads(line) for line in written["train.jsonl"].splitlines()] == result["train"]
    # A failure while writing the last file (a full disk) leaves every earlier output as it was.
    import lab.data.prepare

    def failing_write_json(*args: object) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(lab.data.prepare, "write_json", failing_write_json)
    with pytest.raises(OSError, match="No space left"):
        run_prepare(config_for(path, test_size=0.5), data_dir, metrics)
    assert {p.name: p.read_bytes() for p in [*data_dir.iterdir(), metrics]} == written  # no stray temporary files


def test_oasst_trees_with_hostile_ids_ranks_and_tree_ids_are_read_or_named():
    def message(message_id, parent_id, role, text, rank=None, tree="t\nnewline"):
        return {"message_id": message_id, "parent_id": parent_id, "role": role, "text": text, "rank": rank,
                "message_tree_id": tree}

    rows = [message("r", None, "prompter", "Name a prime."), message("a", "r", "assistant", "Seven.", 10**400),
            message("b", "r", "assistant", "Eleven.", -10**400), message("c", "r", "assistant", "Two.", float("nan")),
            message(["x"], "r", "assistant", "A list id.", 5), message("p", None, "prompter", "Alone?", tree="\ud800")]
    conversations, dropped = normalize_rows(rows, on_invalid="drop", data_format="oasst", same_role_turns="merge")
    # The most negative rank wins even past float range; the tree id with a newline is kept as the id.
    assert [m["content"] for m in conversations[0]["messages"]] == ["Name a prime.", "Eleven."]
    assert conversations[0]["id"] == "t\nnewline" and dropped == {"no_assistant_turn": 1}
    with pytest.raises(DataError, match=r"no_assistant_turn: 1 row\(s\), e.g. tree '\\ud800' "):
        normalize_rows(rows, on_invalid="error", data_format="oasst", same_role_turns="merge")
