"""Row validation: one raw row, in any format of lab.data.formats, to the common conversation schema.

    {"id": str, "source": str, "score": float | None,
     "messages": [{"role": "system" | "user" | "assistant", "content": str}, ...]}

A row that breaks the schema raises InvalidRow with a short, countable reason; `normalize_rows`
collects them, and data.on_invalid decides whether they stop prepare (one DataError naming every
reason and the rows) or are dropped and counted. Hostile data of any shape ends in one of the two:
every value is type-checked before it is used, so no row can raise anything else.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from lab.core.errors import DataError
from lab.data.formats import AUTO, FORMATS, conversation_units, resolve_format
from lab.data.units import brief, unusable

# ShareGPT speakers and chat roles seen in the wild, mapped to the chat schema.
ROLE_ALIASES = {
    "system": "system",
    "human": "user", "user": "user", "prompter": "user",
    "gpt": "assistant", "assistant": "assistant", "model": "assistant", "bot": "assistant",
    "chatgpt": "assistant", "bing": "assistant", "bard": "assistant",
}
# Consecutive turns of one role are joined with a blank line (data.same_role_turns: merge).
MERGE_SEPARATOR = "\n\n"
# A lone surrogate (JSON allows "\ud800") cannot be encoded as UTF-8: such a row could not be written.
_SURROGATE = re.compile("[\ud800-\udfff]")
# Examples of each reason quoted in the error (with their detail), then the rest only by label.
QUOTED_EXAMPLES = 3
LISTED_LABELS = 20


class InvalidRow(ValueError):
    """One row breaks the schema; `reason` is a short, countable category."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def _visible(text: str) -> bool:
    """Whether `text` has a character that shows: a turn of spaces, control or format characters
    (zero-width spaces, BOMs) holds nothing to learn from or to score."""
    return any(char.isprintable() and not char.isspace() for char in text)


def _text(value: Any, what: str) -> str:
    """A turn's text, stripped; InvalidRow when it is not a string, shows nothing or cannot be encoded."""
    if value is not None and not isinstance(value, str):
        raise InvalidRow("not_text", f"{what} is a {type(value).__name__}, not text")
    if value is None or not _visible(value):
        raise InvalidRow("empty_turn", f"{what} has no text")
    if _SURROGATE.search(value):
        raise InvalidRow("bad_unicode", f"{what} holds a lone surrogate, which is not valid Unicode text")
    return value.strip()


def _messages(turns: list[tuple[Any, Any]], same_role_turns: str) -> list[dict[str, str]]:
    """The turns as chat messages, same-role runs merged or rejected (data.same_role_turns)."""
    messages: list[dict[str, str]] = []
    for position, (speaker, text) in enumerate(turns):
        role = ROLE_ALIASES.get(speaker.strip().lower()) if isinstance(speaker, str) else None
        if role is None:
            raise InvalidRow("unknown_role", f"turn {position} has role {brief(speaker)}")
        content = _text(text, f"turn {position} ({role})")
        if messages and messages[-1]["role"] == role:
            if same_role_turns == "reject":
                raise InvalidRow("same_role_turns", f"turns {position - 1} and {position} are both from the {role}")
            messages[-1] = {"role": role, "content": messages[-1]["content"] + MERGE_SEPARATOR + content}
        else:
            messages.append({"role": role, "content": content})
    return messages


def _check_order(messages: list[dict[str, str]]) -> None:
    """A conversation to learn from starts with the user (after any system turn) and ends on the assistant."""
    first_turn = next((m["role"] for m in messages if m["role"] != "system"), None)
    if first_turn == "assistant":
        raise InvalidRow("starts_with_assistant", "the first non-system turn is from the assistant")
    if not any(m["role"] == "assistant" for m in messages):
        raise InvalidRow("no_assistant_turn", "no assistant turn to predict")
    if messages[-1]["role"] != "assistant":
        raise InvalidRow("last_turn_not_assistant", f"the last turn is from {messages[-1]['role']!r}")


def _metadata(row: Any, index: int, default_source: str) -> dict[str, Any]:
    """id, source and score. `datasets` fills a column that some rows lack with None, so None means
    "absent": the row's index, the default source, no score. A score that is not a finite number
    counts as none (it only orders and filters rows); an id (string or number) or source (string or
    integer, a source's label) of another type is a fault."""
    row_id, source, score = row.get("id"), row.get("source"), row.get("score")
    if row_id is not None and (isinstance(row_id, bool) or not isinstance(row_id, (str, int, float))):
        raise InvalidRow("bad_field", f"id is a {type(row_id).__name__}, not a string or number")
    if source is not None and (isinstance(source, bool) or not isinstance(source, (str, int))):
        raise InvalidRow("bad_field", f"source is a {type(source).__name__}, not a string")
    row_id = str(index if row_id is None else row_id)
    source = default_source if source is None or source == "" else str(source)
    for name, value in (("id", row_id), ("source", source)):
        if _SURROGATE.search(value):
            raise InvalidRow("bad_unicode", f"{name} holds a lone surrogate, which is not valid Unicode text")
    return {"id": row_id, "source": source, "score": _score(score)}


def _score(score: Any) -> float | None:
    """A finite number as a float, else None: NaN or infinity would not even be valid JSON in data/*.jsonl."""
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        return None
    try:
        value = float(score)
    except OverflowError:  # an integer beyond the range of a float
        return None
    return value if math.isfinite(value) else None


def normalize_row(row: Any, index: int, data_format: str, default_source: str = "unknown", *,
                  same_role_turns: str) -> dict[str, Any]:
    """Convert one raw row in `data_format` (a name in lab.data.formats.FORMATS) to the common schema, or
    raise InvalidRow. `index` is the id of a row without one; `default_source` the source of a row
    without one; `same_role_turns` (merge | reject) what consecutive turns of one role become. A format's
    `carried` fields (a chat log's `feedback`) are kept beside the messages, never in them."""
    if (fault := unusable(row)) is not None:
        raise InvalidRow(*fault)
    adapter = FORMATS[data_format]
    turns = adapter.turns(row)
    if turns is None:
        raise InvalidRow("no_conversation", f"no {' / '.join(map(repr, adapter.columns))} in a {data_format} row")
    if not turns:
        raise InvalidRow("no_conversation", "the conversation is empty")
    messages = _messages(turns, same_role_turns)
    _check_order(messages)
    carried = {name: row[name] for name in adapter.carried if name in row}
    return {**_metadata(row, index, default_source), **carried, "messages": messages}


def normalize_rows(rows: Iterable[Any], on_invalid: str, data_format: str, default_source: str = "unknown", *,
                   same_role_turns: str) -> tuple[list[dict[str, Any]], Counter[str]]:
    """Normalise every row read in `data_format` ("auto": detected from the first rows' columns, see
    lab.data.formats); on_invalid='error' raises one DataError naming all bad rows by reason, 'drop'
    returns the valid conversations and the invalid rows counted by reason."""
    rows = list(rows)
    if all(unusable(row) is not None for row in rows):  # no row to tell the format by, or to read
        rejected = [(f"row {index}", InvalidRow(*unusable(row))) for index, row in enumerate(rows)]
        return _verdict([], rejected, "" if data_format == AUTO else data_format, on_invalid)
    name = resolve_format(rows, data_format)
    units, faults = conversation_units(rows, name)
    conversations = []
    rejected = [(fault.label, InvalidRow(fault.reason, fault.detail)) for fault in faults]
    for index, (label, row) in enumerate(units):
        try:
            conversations.append(normalize_row(row, index, name, default_source, same_role_turns=same_role_turns))
        except InvalidRow as error:
            rejected.append((label, error))
    return _verdict(conversations, rejected, name, on_invalid)


def _verdict(conversations: list[dict[str, Any]], rejected: list[tuple[str, InvalidRow]], name: str,
             on_invalid: str) -> tuple[list[dict[str, Any]], Counter[str]]:
    """The conversations and the invalid rows counted by reason; with on_invalid='error' and any
    invalid row, one DataError naming every reason and its rows instead."""
    dropped = Counter(error.reason for _, error in rejected)
    if dropped and on_invalid == "error":
        raise DataError(f"{sum(dropped.values())} invalid row(s) in the {name + ' ' if name else ''}dataset:\n"
                        + invalid_rows_report(rejected)
                        + "\nFix the data, or set data.on_invalid: drop to drop and count them.")
    return conversations, dropped


def invalid_rows_report(rejected: list[tuple[str, InvalidRow]]) -> str:
    """One line per reason: how many rows, the first few with their detail, then the other rows' labels."""
    by_reason: dict[str, list[tuple[str, InvalidRow]]] = {}
    for label, error in rejected:
        by_reason.setdefault(error.reason, []).append((label, error))
    lines = []
    for reason, found in sorted(by_reason.items()):
        line = f"  {reason}: {len(found)} row(s), e.g. " + "; ".join(
            f"{label} ({error})" for label, error in found[:QUOTED_EXAMPLES])
        others = [label for label, _ in found[QUOTED_EXAMPLES:]]
        if others:
            more = f" and {len(others) - LISTED_LABELS} more" if len(others) > LISTED_LABELS else ""
            line += f"; also {', '.join(others[:LISTED_LABELS])}{more}"
        lines.append(line)
    return "\n".join(lines)
