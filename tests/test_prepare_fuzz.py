"""prepare against hostile data, fuzzed with hypothesis.

Each example writes a local data.source file: valid conversations (tagged, so the test knows them),
exact copies of some, rows of any JSON shape, valid rows with one thing broken (a missing key, a null,
a wrong type, an empty, blank or control-character turn, an unknown role, a last turn from the user,
two turns of one role, a lone system turn, a huge string, a lone surrogate, a list where text belongs)
and, in JSON Lines, raw lines that are not JSON or not UTF-8. Whatever the input, prepare either gives
valid splits whose counts add up, or raises the lab's DataError / ConfigError naming the problem
(an invalid-row report that counts exactly the rows `drop` would drop); nothing else ever escapes.
The stage itself (a subprocess) is run on a few examples: a failure exits with one line and leaves
the previous outputs untouched.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lab.core.errors import ConfigError, DataError
from lab.core.io import read_jsonl
from lab.core.params import load_config
from lab.data.json_rows import read_json_rows
from lab.data.prepare import SPLITS, prepare
from lab.data.rows import normalize_rows

from .conftest import REPO, make_config

# Where each format keeps its turns: (column, speaker key, text key), or its prompt and answer columns.
TURN_FORMATS = {"sharegpt": ("conversations", "from", "value"), "messages": ("messages", "role", "content")}
PAIR_FORMATS = {"alpaca": ("instruction", "output"), "question_answer": ("question", "answer")}
SPEAKERS = {"user": ["human", "user", "prompter", " User "], "assistant": ["gpt", "assistant", "model", "BOT"],
            "system": ["system"]}
ANY_CHAR = st.characters()  # every code point: control characters and lone surrogates included
TEXT = st.text(ANY_CHAR, max_size=12)
HUGE = st.builds(lambda piece, times: piece * times, st.text(ANY_CHAR, min_size=1, max_size=3),
                 st.integers(2_000, 30_000))
SURROGATE_TEXT = st.one_of(st.sampled_from(["\ud800", "a\udfffb"]), TEXT.map(lambda text: f"ok {text}\udc80"))
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.just(10**400), TEXT, SURROGATE_TEXT)
JSONISH = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                       max_leaves=6)
# What a broken turn's text becomes, by kind: each must be rejected, except huge and control-character
# text, which are valid and must come out written as they are.
BAD_TEXTS = {
    "null_text": st.none(),
    "blank_text": st.sampled_from(["", " ", "\t\n ", "\u3000"]),
    "invisible_text": st.sampled_from(["\u200b\ufeff", "\x00\x01\x7f", "\u2028", "\x1b[0m"]),
    "surrogate_text": SURROGATE_TEXT,
    "nested_text": st.one_of(st.lists(TEXT, min_size=1, max_size=2), JSONISH.filter(lambda value: not isinstance(
        value, str))),
    "huge_text": HUGE,
    "control_text": st.text(st.characters(categories=["Cc"]), min_size=1, max_size=5).map(lambda text: f"ok{text}!"),
}
BAD_METADATA = {
    "bad_id": st.one_of(JSONISH, SURROGATE_TEXT),
    "bad_source": st.one_of(JSONISH, SURROGATE_TEXT),
    "bad_score": st.one_of(st.sampled_from([math.nan, math.inf, -math.inf, 10**400, "4.5", True]), JSONISH),
}
BAD_ROLE = st.one_of(st.sampled_from(["", "alien", "tool", "USER!", "function"]), JSONISH)
RAW_LINE = st.one_of(st.binary(max_size=30), TEXT.map(lambda text: text.encode("utf-8", "surrogatepass")),
                     st.sampled_from([b"{", b"[1, 2", b"1" * 5000, b"[" * 100_000, b'{"conversations": NaN}']))
# How a valid row is broken.
BREAKS = (*BAD_TEXTS, *BAD_METADATA, "drop_column", "null_column", "wrong_column", "bad_role", "drop_turn_key",
          "turn_not_mapping", "ends_on_user", "same_role", "system_only", "no_turns")


def visible_text(marker: str) -> st.SearchStrategy[str]:
    """Valid text: a unique marker (so valid rows are no duplicates) and any valid UTF-8 after it."""
    return st.text(st.characters(codec="utf-8"), max_size=15).map(lambda tail: f"{marker} {tail}")


@st.composite
def valid_row(draw: Any, data_format: str, index: int) -> dict[str, Any]:
    """A valid conversation in `data_format`, with optional id, source and score of valid types."""
    row: dict[str, Any] = {}
    if data_format in PAIR_FORMATS:
        prompt, answer = PAIR_FORMATS[data_format]
        row |= {prompt: draw(visible_text(f"q{index}")), answer: draw(visible_text(f"a{index}"))}
        if data_format == "alpaca" and draw(st.booleans()):
            row["input"] = draw(st.one_of(st.none(), visible_text("context")))
    else:
        column, speaker, text = TURN_FORMATS[data_format]
        roles = ["system"] * draw(st.integers(0, 1)) + ["user", "assistant"] * draw(st.integers(1, 2))
        row[column] = [{speaker: draw(st.sampled_from(SPEAKERS[role])), text: draw(visible_text(f"{role[0]}{index}"))}
                       for role in roles]
    for key, values in (("id", st.one_of(st.text(st.characters(codec="utf-8"), max_size=5), st.integers())),
                        ("source", st.sampled_from(["", "web", "books"])), ("score", st.floats(-10, 10))):
        if draw(st.booleans()):
            row[key] = draw(st.one_of(st.none(), values))
    return row


@st.composite
def broken_row(draw: Any, data_format: str, index: int) -> Any:
    """A valid row with one thing broken (which may, by chance, leave it valid: the test never relies
    on a broken row being invalid, only on a valid one never being counted as invalid)."""
    row = draw(valid_row(data_format, index))
    how = draw(st.sampled_from(BREAKS))
    columns = [TURN_FORMATS[data_format][0]] if data_format in TURN_FORMATS else list(PAIR_FORMATS[data_format])
    column = draw(st.sampled_from(columns))
    if how == "drop_column":
        del row[column]
    elif how in ("null_column", "wrong_column"):
        row[column] = None if how == "null_column" else draw(JSONISH)
    elif how in BAD_METADATA:
        row[how.removeprefix("bad_")] = draw(BAD_METADATA[how])
    elif data_format in PAIR_FORMATS:
        row[column] = draw(BAD_TEXTS.get(how, JSONISH))
    else:
        break_turns(draw, row[column], how, *TURN_FORMATS[data_format][1:])
    return row


def break_turns(draw: Any, turns: list[Any], how: str, speaker: str, text: str) -> None:
    """Break the turn list of a sharegpt or messages row in place."""
    at = draw(st.integers(0, len(turns) - 1))
    if how in BAD_TEXTS:
        turns[at][text] = draw(BAD_TEXTS[how])
    elif how == "bad_role":
        turns[at][speaker] = draw(BAD_ROLE)
    elif how == "drop_turn_key":
        del turns[at][draw(st.sampled_from([speaker, text]))]
    elif how == "turn_not_mapping":
        turns[at] = draw(JSONISH)
    elif how == "ends_on_user":
        turns.append({speaker: "human", text: "and then?"})
    elif how == "same_role":
        turns.insert(at + 1, {**turns[at], text: "more of the same"})
    elif how == "system_only":
        turns[:] = [{speaker: "system", text: "Be brief."}]
    else:  # no_turns
        turns.clear()


@st.composite
def dataset(draw: Any) -> dict[str, Any]:
    """A data file's rows, each tagged valid | copy | broken | any | raw, and how it is written and read."""
    data_format = draw(st.sampled_from([*TURN_FORMATS, *PAIR_FORMATS]))
    suffix = draw(st.sampled_from([".jsonl", ".json"]))
    valid = [draw(valid_row(data_format, i)) for i in range(draw(st.integers(0, 12)))]
    rows = [("valid", row) for row in valid]
    rows += [("copy", draw(st.sampled_from(valid))) for _ in range(draw(st.integers(0, 2)) if valid else 0)]
    rows += [("broken", draw(broken_row(data_format, 100 + i))) for i in range(draw(st.integers(0, 8)))]
    rows += [("any", row) for row in draw(st.lists(JSONISH, max_size=2))]
    if suffix == ".jsonl":  # raw lines would make a .json array unreadable as a whole (a file-level error)
        rows += [("raw", line.replace(b"\n", b" ")) for line in draw(st.lists(RAW_LINE, max_size=3))]
    return {"rows": draw(st.permutations(rows)), "format": data_format, "suffix": suffix,
            "read_as": draw(st.sampled_from(["auto", data_format])),
            # drop more often than error: only then do broken rows that are invalid reach the splits' checks
            "on_invalid": draw(st.sampled_from(["error", "drop", "drop"])),
            "same_role_turns": draw(st.sampled_from(["merge", "reject"])), "leak_check": draw(st.booleans()),
            "validation_examples": draw(st.integers(0, 1)), "answer_format": draw(st.sampled_from(["keep", "steps"])),
            "order": draw(st.sampled_from(["shuffle", "curriculum"]))}


def write_source(case: dict[str, Any], folder: Path) -> Path:
    """The rows as a .jsonl (one per line, raw lines as they are) or a .json array file."""
    path = folder / f"rows{case['suffix']}"
    if case["suffix"] == ".json":
        path.write_text(json.dumps([row for _, row in case["rows"]]), encoding="utf-8")
    else:
        path.write_bytes(b"".join((row if kind == "raw" else json.dumps(row).encode()) + b"\n"
                                  for kind, row in case["rows"]))
    return path


def overrides(case: dict[str, Any], path: Path) -> dict[str, Any]:
    return {"data": {"source": str(path), "format": case["read_as"], "on_invalid": case["on_invalid"],
                     "same_role_turns": case["same_role_turns"], "validation_examples": case["validation_examples"],
                     "answer_format": case["answer_format"], "order": case["order"], "eval_examples": 1,
                     "test_size": 0.25, "max_train_examples": None, "dedup": {"leak_check": case["leak_check"]}}}


@cache
def cached_config(frozen: str):  # loading params.yaml for each of 500 examples would take most of the time
    return make_config(json.loads(frozen))


def raw_row_count(case: dict[str, Any]) -> int:
    """The rows a reader must see: every row, less raw lines that are blank."""
    return sum(kind != "raw" or bool(row.strip()) for kind, row in case["rows"])


def check_message(message: dict[str, Any]) -> None:
    assert set(message) == {"role", "content"} and message["role"] in ("system", "user", "assistant")
    content = message["content"]
    assert isinstance(content, str) and any(c.isprintable() and not c.isspace() for c in content)
    content.encode("utf-8")  # no lone surrogate: the file can be written


def check_conversation(row: dict[str, Any]) -> None:
    """The common schema, alternating turns (merged or rejected), user first and assistant last."""
    assert set(row) == {"id", "source", "score", "messages"}
    assert isinstance(row["id"], str) and isinstance(row["source"], str) and row["source"]
    assert row["score"] is None or (isinstance(row["score"], float) and math.isfinite(row["score"]))
    for message in row["messages"]:
        check_message(message)
    roles = [message["role"] for message in row["messages"]]
    assert all(a != b for a, b in zip(roles, roles[1:], strict=False)), roles
    assert [role for role in roles if role != "system"][0] == "user" and roles[-1] == "assistant"


def check_splits(result: dict[str, Any], case: dict[str, Any]) -> None:
    """Valid splits, strict JSON in UTF-8, and counts that add up."""
    for split in ("train", "validation", "test"):
        for row in result[split]:
            check_conversation(row)
    for example in result["eval"]:
        assert isinstance(example["reference"], str) and example["reference"].strip()
        for message in example["input"]:
            check_message(message)
    json.dumps(result, ensure_ascii=False, allow_nan=False).encode("utf-8")
    stats = result["stats"]
    rows, dropped, removed = stats["rows"], stats["dropped"], stats["removed"]
    assert rows["raw"] == raw_row_count(case)
    assert rows["valid"] + sum(dropped.values()) == rows["raw"]
    assert not dropped or case["on_invalid"] == "drop"
    # A valid row is never counted as invalid; every exact copy is counted as a duplicate.
    assert rows["valid"] >= sum(kind in ("valid", "copy") for kind, _ in case["rows"])
    assert removed["exact_duplicates"] >= sum(kind == "copy" for kind, _ in case["rows"])
    kept = len(result["train"]) + len(result["validation"]) + len(result["test"])
    assert kept == rows["valid"] - sum(removed.values()) > 0
    for counts in stats["per_source"].values():
        assert counts["in"] == (sum(counts["removed"].values()) + counts["test"] + counts["validation"]
                                + counts["not_sampled"] + counts["train_unique"])


def check_error(error: Exception, case: dict[str, Any], path: Path) -> None:
    """A DataError or ConfigError that names the problem; an invalid-row report counts, by reason,
    exactly the rows that data.on_invalid: drop would drop, and names them."""
    message = str(error)
    assert message.strip()
    if "invalid row(s)" not in message:
        return
    assert case["on_invalid"] == "error"
    _, dropped = normalize_rows(read_json_rows(path, "data.source"), "drop", case["read_as"],
                                same_role_turns=case["same_role_turns"])
    reported = {reason: int(count) for reason, count in re.findall(r"^  (\w+): (\d+) row\(s\), e\.g\. row \d+ \(",
                                                                   message, flags=re.M)}
    assert reported == dropped
    assert message.startswith(f"{sum(dropped.values())} invalid row(s)")
    assert sum(dropped.values()) <= sum(kind not in ("valid", "copy") for kind, _ in case["rows"])


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=dataset())
def test_prepare_gives_valid_splits_or_a_lab_error_for_any_data(folder: Path, case: dict[str, Any]):
    path = write_source(case, folder)
    config = cached_config(json.dumps(overrides(case, path)))
    try:
        result = prepare(config)
    except (DataError, ConfigError) as error:
        # --hypothesis-show-statistics lists the outcomes: the kinds of error, and splits.
        event("error", re.sub(r"\d+", "N", str(error).replace(str(path), "FILE").splitlines()[0])[:60])
        check_error(error, case, path)
    else:
        event("splits", "dropped rows" if result["stats"]["dropped"] else "all rows valid")
        check_splits(result, case)


def run_stage(workdir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, str(REPO / "stages" / "prepare.py"), "--data-dir", "data", "--metrics",
               "metrics/data.json"]
    return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=120)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=dataset())
def test_the_prepare_stage_writes_valid_splits_or_exits_with_one_line_leaving_outputs(folder: Path,
                                                                                      case: dict[str, Any]):
    workdir = folder / "stage"
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    (workdir / "metrics").mkdir(exist_ok=True)
    path = write_source(case, workdir)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in overrides(case, path).items():
        params[section] = {**params[section], **values, "dedup": {**params[section]["dedup"], **values["dedup"]}}
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    outputs = [workdir / "data" / f"{split}.jsonl" for split in SPLITS] + [workdir / "metrics" / "data.json"]
    for output in outputs:
        output.write_text("previous run\n")
    stage = run_stage(workdir)
    try:
        expected = prepare(load_config(workdir / "params.yaml"))
    except (DataError, ConfigError) as error:
        assert stage.returncode != 0 and "Traceback" not in stage.stderr
        assert stage.stderr.startswith(f"prepare: error: {error}")
        assert all(output.read_text() == "previous run\n" for output in outputs)
        assert sorted(p.name for p in (workdir / "data").iterdir()) == sorted(f"{s}.jsonl" for s in SPLITS)
    else:
        assert stage.returncode == 0, stage.stderr
        for split, output in zip(SPLITS, outputs, strict=False):  # read back as the later stages read them
            assert read_jsonl(output) == expected[split]
        assert json.loads(outputs[-1].read_text(encoding="utf-8")) == json.loads(json.dumps(expected["stats"]))


@st.composite
def oasst_rows(draw: Any) -> list[Any]:
    """OpenAssistant message rows whose ids, parent links, roles, texts and ranks are drawn from small
    pools and hostile values: trees with cycles, orphans, duplicate ids and odd ranks, and other rows."""
    ids = st.one_of(st.sampled_from(["r0", "r1", "m0", "m1", "m2", "m3"]), JSONISH)
    message = st.fixed_dictionaries({
        "message_id": ids, "parent_id": st.one_of(st.none(), ids), "message_tree_id": st.one_of(st.none(), TEXT),
        "role": st.one_of(st.sampled_from(["prompter", "assistant"]), BAD_ROLE),
        "text": st.one_of(visible_text("t"), *BAD_TEXTS.values()),
        "rank": st.one_of(st.none(), st.integers(), st.floats(), st.just(10**400), JSONISH),
    })
    # A valid tree (r0 -> m0, or r0 -> m0 -> m1 -> m2) for the hostile messages to graft onto or clash with.
    tree = [{"message_id": message_id, "parent_id": parent, "role": role, "text": draw(visible_text(message_id)),
             "rank": 0} for message_id, parent, role in
            [("r0", None, "prompter"), ("m0", "r0", "assistant"), ("m1", "m0", "prompter"), ("m2", "m1", "assistant")]]
    rows = tree[:draw(st.sampled_from([0, 2, 4]))] + draw(st.lists(st.one_of(message, JSONISH), max_size=8))
    return draw(st.permutations(rows))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=oasst_rows(), on_invalid=st.sampled_from(["error", "drop"]),
       same_role_turns=st.sampled_from(["merge", "reject"]))
def test_oasst_trees_of_any_shape_give_valid_conversations_or_a_data_error(rows: list[Any], on_invalid: str,
                                                                           same_role_turns: str):
    try:
        conversations, dropped = normalize_rows(rows, on_invalid, "oasst", same_role_turns=same_role_turns)
    except DataError as error:
        event("outcome", "invalid-row report")
        assert on_invalid == "error" and str(error).splitlines()[0].endswith("invalid row(s) in the oasst dataset:")
    else:
        event("outcome", f"{'some' if conversations else 'no'} conversations, {'some' if dropped else 'no'} drops")
        for conversation in conversations:
            check_conversation(conversation)
        json.dumps(conversations, ensure_ascii=False, allow_nan=False).encode("utf-8")
        assert not dropped or on_invalid == "drop"
