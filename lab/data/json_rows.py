"""Rows of a local .json or .jsonl file, read line by line so that one bad line is one bad row.

`datasets` reads a JSON Lines file as a whole: one line that is not JSON fails the file, and a column
whose type changes between rows is re-encoded as a JSON string, which hides every conversation in it.
Here each line is parsed on its own, with Python's json module (any value of any type per row, as
written): a line that is not UTF-8 or not JSON becomes an UnreadableRow in its place, which
validation counts as an invalid row (data.on_invalid), and the other rows are read as they are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lab.core.errors import DataError
from lab.data.units import UnreadableRow

NOT_JSON = "not_json"
# Some editors start UTF-8 files with a byte order mark, which is not JSON.
BYTE_ORDER_MARK = b"\xef\xbb\xbf"


def _why_not(error: Exception) -> str:
    """What json.loads raised, in a few words: JSONDecodeError, ValueError (an integer over Python's
    digit limit) or RecursionError (nesting deeper than the parser's stack)."""
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at line {error.lineno} column {error.colno}"
    return f"{type(error).__name__}: {str(error)[:80]}"


def _line_row(raw: bytes, line_number: int) -> Any:
    """The value on one line of a JSON Lines file, or an UnreadableRow saying why there is none."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return UnreadableRow(NOT_JSON, f"line {line_number} is not UTF-8 text (byte {error.start + 1})")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        return UnreadableRow(NOT_JSON, f"line {line_number} is not JSON ({_why_not(error)})")


def json_lines(data: bytes) -> list[Any]:
    """The rows of JSON Lines text: one per non-blank line, an UnreadableRow for a line that is not JSON."""
    rows = []
    for line_number, raw in enumerate(data.split(b"\n"), start=1):
        if raw.strip():
            rows.append(_line_row(raw.strip(), line_number))
    return rows


def read_json_rows(path: Path, key: str) -> list[Any]:
    """The rows of a local file: a .jsonl is JSON Lines; a .json is one JSON array of rows, or one
    object (a one-row file), or else JSON Lines (as `datasets` reads both). A .json array that does
    not parse is a DataError saying where: a broken array has no rows to recover one by one."""
    data = path.read_bytes().removeprefix(BYTE_ORDER_MARK)
    if path.suffix.lower() == ".jsonl":
        return json_lines(data)
    try:
        document = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        if data.lstrip().startswith(b"["):
            raise DataError(f"{key}: {path} is not a valid JSON array ({_why_not(error)})") from None
        return json_lines(data)
    return document if isinstance(document, list) else [document]
