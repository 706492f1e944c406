"""The chat log as training data (lab/data/feedback.py) and the log file itself (lab/chat/log.py), on logs
written by the chat's own row writer: corrections, ratings through a conversation's history, the
feedback filters in prepare and their counts, and appends that never damage earlier rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from lab.chat.log import ChatLog, answer_row
from lab.core.config import FeedbackConfig
from lab.core.errors import ConfigError, DataError
from lab.data.feedback import feedback_filters
from lab.data.formats import detect_format
from lab.data.json_rows import read_json_rows
from lab.data.prepare import prepare
from lab.data.rows import normalize_rows

from .conftest import REPO, make_config

PRODUCED_BY = {"model": "models/base", "adapters": {}, "adapter": None, "generation": {"max_new_tokens": 8},
               "lab_revision": None}


def conversation_rows(conversation: str, turns: list[tuple[str, str, int | None, str | None]],
                      system: str | None = None) -> list[dict]:
    """The log rows of one conversation as the chat writes them: (question, answer, rating,
    correction) per turn, a correction standing in for its answer in the later turns' history."""
    messages = [{"role": "system", "content": system}] if system else []
    rows = []
    for turn, (question, answer, rating, correction) in enumerate(turns, start=1):
        messages.append({"role": "user", "content": question})
        messages.append({"role": "assistant", "content": answer})
        row = answer_row(conversation, turn, messages, PRODUCED_BY)
        rows.append({**row, "rating": rating, "correction": correction})
        if correction is not None:
            messages[-1] = {"role": "assistant", "content": correction}
    return rows


LOW_THEN_MORE = conversation_rows("c-low", [("What is 2+2?", "Five.", 1, None), ("Sure?", "Yes, five.", None, None)])
FIXED = conversation_rows("c-fix", [("Name a prime.", "Nine.", 2, "Seven."), ("Another?", "Eleven.", 5, None),
                                    ("One more?", "Thirteen.", None, None)], system="Be brief.")


def normalized(rows: list[dict]) -> list[dict]:
    conversations, dropped = normalize_rows(rows, on_invalid="error", data_format="auto", same_role_turns="merge")
    assert not dropped
    return conversations


def test_a_chat_log_is_detected_by_its_feedback_columns_and_plain_messages_still_are_messages():
    assert detect_format(FIXED[0]) == "chat_log"
    assert detect_format({"messages": FIXED[0]["messages"]}) == "messages"


def test_a_correction_replaces_the_answer_and_only_the_conversation_reaches_the_training_text():
    rows = normalized(FIXED)
    assert [m["content"] for m in rows[0]["messages"]] == ["Be brief.", "Name a prime.", "Seven."]
    # The later turns' history holds the correction, as the chat continued from it.
    assert [m["content"] for m in rows[1]["messages"]] == ["Be brief.", "Name a prime.", "Seven.", "Another?",
                                                           "Eleven."]
    for row in rows:
        assert set(row) == {"id", "source", "score", "feedback", "messages"}
        assert all(set(message) == {"role", "content"} for message in row["messages"])
    assert rows[0]["source"] == "chat" and rows[0]["id"] == "c-fix-1"


def test_each_row_knows_its_rating_its_correction_and_the_lowest_rating_in_its_history():
    feedback = [row["feedback"] for row in normalized(LOW_THEN_MORE + FIXED)]
    assert feedback == [
        {"rating": 1, "corrected": False, "lowest_earlier_rating": None},
        {"rating": None, "corrected": False, "lowest_earlier_rating": 1},
        # The corrected answer's rating (2) rated the model's answer, which training never sees.
        {"rating": 2, "corrected": True, "lowest_earlier_rating": None},
        {"rating": 5, "corrected": False, "lowest_earlier_rating": None},
        {"rating": None, "corrected": False, "lowest_earlier_rating": 5},
    ]


def kept_ids(rows: list[dict], min_rating: int | None, unrated: str) -> list[str]:
    keep = feedback_filters(FeedbackConfig(min_rating=min_rating, unrated=unrated))
    return [row["id"] for row in rows if all(test(row) for test in keep.values())]


def test_the_feedback_filters_drop_low_rated_answers_their_later_turns_and_optionally_unrated_ones():
    rows = normalized(LOW_THEN_MORE + FIXED)
    every = ["c-low-1", "c-low-2", "c-fix-1", "c-fix-2", "c-fix-3"]
    assert not feedback_filters(FeedbackConfig(min_rating=None, unrated="keep"))
    assert kept_ids(rows, None, "keep") == every
    assert kept_ids(rows, 3, "keep") == ["c-fix-1", "c-fix-2", "c-fix-3"]
    assert kept_ids(rows, None, "drop") == ["c-low-1", "c-fix-1", "c-fix-2"]
    assert kept_ids(rows, 3, "drop") == ["c-fix-1", "c-fix-2"]
    # Rows of other sources carry no feedback and are never touched.
    other = {"id": "x", "source": "docs", "score": None, "messages": rows[0]["messages"]}
    assert kept_ids([other], 5, "drop") == ["x"]


def test_malformed_feedback_is_an_invalid_row_named_by_its_reason():
    bad = [{**FIXED[0], "rating": 9}, {**FIXED[1], "rating": True}, {**FIXED[2], "correction": "  "}]
    with pytest.raises(DataError) as error:
        normalize_rows(bad + LOW_THEN_MORE, on_invalid="error", data_format="auto", same_role_turns="merge")
    message = str(error.value)
    assert "bad_feedback: 3 row(s)" in message and "row 0 (bad_feedback: rating 9 is not a whole number" in message
    kept, dropped = normalize_rows(bad + LOW_THEN_MORE, on_invalid="drop", data_format="auto", same_role_turns="merge")
    assert dropped == {"bad_feedback": 3} and [row["id"] for row in kept] == ["c-low-1", "c-low-2"]


def write_log(path, rows) -> None:
    log = ChatLog(path)
    for row in rows:
        log.append(row)
    log.close()


def test_prepare_trains_on_the_log_with_corrections_and_counts_the_feedback_filters(tmp_path):
    # Ten conversations of two turns: the even ones start with a low-rated answer; every third is corrected.
    rows = []
    for n in range(10):
        first = ("Ok.", 1 if n % 2 == 0 else 4, f"Fixed {n}." if n % 3 == 0 else None)
        rows += conversation_rows(f"c{n}", [(f"Question {n}?", f"Answer {n}. {first[0]}", first[1], first[2]),
                                            (f"Follow-up {n}?", f"More {n}.", None, None)])
    write_log(tmp_path / "log.jsonl", rows)
    config = make_config({"data": {"source": str(tmp_path / "log.jsonl"), "eval_examples": 2, "validation_examples": 2,
                                   "max_train_examples": None, "test_size": 0.2, "dedup": {"leak_check": False}},
                          "feedback": {"min_rating": 3, "unrated": "keep"}})
    result = prepare(config)
    by_id = {row["id"]: row for row in rows}
    held_out = {row["id"] for split in ("test", "validation") for row in result[split]}
    pool = [by_id[i] for i in by_id if i not in held_out]
    # A pool row is dropped when its own uncorrected answer or its conversation's first one is rated 1.
    low = {f"c{n}" for n in range(10) if n % 2 == 0 and n % 3 != 0}
    expected = [row["id"] for row in pool if row["conversation"] not in low]
    assert sorted(row["id"] for row in result["train"]) == sorted(expected)
    assert result["stats"]["filtered"] == {"min_rating": len(pool) - len(expected)}
    assert result["stats"]["per_source"]["chat"]["removed"]["min_rating"] == len(pool) - len(expected)
    for row in result["train"]:
        logged = by_id[row["id"]]
        answer = logged["correction"] or logged["messages"][-1]["content"]
        assert row["messages"][-1] == {"role": "assistant", "content": answer}
        assert row["messages"][:-1] == logged["messages"][:-1]
    assert any(by_id[row["id"]]["correction"] for row in result["train"])


def test_an_append_never_merges_with_a_line_cut_by_a_killed_writer(tmp_path):
    path = tmp_path / "log.jsonl"
    write_log(path, FIXED[:1])
    with path.open("ab") as handle:  # a writer killed mid-line
        handle.write(b'{"id": "cut", "messa')
    write_log(path, FIXED[1:])
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 5
    assert [json.loads(line)["id"] for line in (lines[0], lines[2], lines[3])] == ["c-fix-1", "c-fix-2", "c-fix-3"]
    rows = read_json_rows(path, "data.source")
    kept, dropped = normalize_rows(rows, on_invalid="drop", data_format="auto", same_role_turns="merge")
    assert dropped == {"not_json": 1} and len(kept) == 3


def test_a_killed_chat_leaves_whole_rows_only(tmp_path):
    """Rows appended by a process killed (SIGKILL) at a random point: every line written is whole JSON."""
    path = tmp_path / "log.jsonl"
    script = ("import sys; from lab.chat.log import ChatLog; log = ChatLog(__import__('pathlib').Path(sys.argv[1]))\n"
              "row = {'id': 'x', 'source': 'chat', 'text': 'y' * 20000}\n"
              "while True: log.append(row)\n")
    process = subprocess.Popen([sys.executable, "-c", script, str(path)], env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        while not path.exists() or path.stat().st_size < 400_000:
            time.sleep(0.01)
    finally:
        process.kill()
        process.wait()
    write_log(path, FIXED[:1])
    lines = path.read_bytes().split(b"\n")[:-1]
    parsed = [line for line in lines if line]
    good = sum(1 for line in parsed if line.startswith(b"{") and line.endswith(b"}"))
    assert good >= len(parsed) - 1  # at most the one line the kill cut
    assert json.loads(lines[-1])["id"] == "c-fix-1"


@pytest.mark.parametrize("data_format", ["chat_log", "auto"])
def test_a_log_mixed_into_other_data_is_filtered_alone(tmp_path, data_format):
    rows = []
    for n in range(6):
        rows += conversation_rows(f"m{n}", [(f"Why {n}?", f"Because {n}.", 1 if n % 2 else None, None)])
    write_log(tmp_path / "log.jsonl", rows)
    config = make_config({"data": {"builtin": {"packages": ["json", "string", "textwrap"]}, "eval_examples": 2,
                                   "max_train_examples": None, "test_size": 0.3, "validation_examples": 2,
                                   "mix": {"extra_sources": [{"source": str(tmp_path / "log.jsonl"),
                                                              "format": data_format}]}},
                          "feedback": {"min_rating": 2, "unrated": "drop"}})
    result = prepare(config)
    per_source = result["stats"]["per_source"]
    assert per_source["chat"]["in"] == 6
    pool = per_source["chat"]["in"] - per_source["chat"]["test"] - per_source["chat"]["validation"]
    assert pool > 0
    # Every chat answer is either rated 1 or unrated: none is trained on; the builtin rows all pass.
    assert per_source["chat"]["removed"]["min_rating"] + per_source["chat"]["removed"]["unrated"] == pool
    assert all(counts["removed"].get("min_rating", 0) == counts["removed"].get("unrated", 0) == 0
               for source, counts in per_source.items() if source != "chat")
    assert result["train"] and all(row["source"] != "chat" for row in result["train"])


@pytest.mark.parametrize(("overrides", "message"), [
    ({"min_rating": 0}, "feedback.min_rating: 0 is not allowed; it must be a rating from 1 to 5 (tools/chat.py /rate), "
                        "or null (off)"),
    ({"min_rating": 2.5}, "feedback.min_rating: expected int, got 2.5"),
    ({"unrated": "ignore"}, "feedback.unrated: 'ignore' is not allowed; allowed: keep|drop"),
])
def test_impossible_feedback_params_are_named(overrides, message):
    with pytest.raises(ConfigError) as error:
        make_config({"feedback": overrides})
    assert str(error.value) == message
