"""A raw row on its way to a conversation: the unit a format groups rows into, and the faults found on the way.

The formats (lab.data.formats), the chat-log reader (lab.data.feedback) and the JSON Lines reader
(lab.data.json_rows) all speak these types, so they live below all three."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple


class Unit(NamedTuple):
    """One raw conversation to normalise, with the label that error messages name it by."""

    label: str
    row: Any


class RowFault(NamedTuple):
    """A row found unusable while grouping rows into conversations; counted like an invalid row."""

    label: str
    reason: str
    detail: str


class UnreadableRow(NamedTuple):
    """A row that could not be read at all (a line of a JSON Lines file that is not JSON), kept in
    its place among the rows so that it is counted like an invalid row and row numbers stay true."""

    reason: str
    detail: str


Grouping = tuple[list[Unit], list[RowFault]]


def brief(value: Any, limit: int = 60) -> str:
    """repr(value) cut to `limit` characters, for error messages about hostile data (a megabyte-long
    role must not make a megabyte-long message); repr also escapes control characters and surrogates."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


def unusable(row: Any) -> tuple[str, str] | None:
    """The (reason, detail) of a row that is no mapping of columns at all (unreadable, or a bare
    value), or None for a mapping, which the format's adapter then reads."""
    if isinstance(row, UnreadableRow):
        return row.reason, row.detail
    if not isinstance(row, Mapping):
        return "not_a_mapping", f"row is a {type(row).__name__}"
    return None
