"""The chat CLI's feedback log (tools/chat.py --log FILE): one JSON line per answer, appended.

A row is written once its answer can no longer be rated or corrected: when the next message is
sent, at /new, /quit, the end of the input, or Ctrl-C. Until then it is pending, and /rate and /fix
change it; so every row is written whole, once, and never rewritten. A killed chat loses at most the
pending answer. Each row is one os.write of a complete line to a file opened for appending, flushed
to disk before the chat goes on; a line cut short by a crash mid-write (no newline at its end) is
ended before the next row, so it stays one unreadable line (prepare counts it as an invalid row,
data.on_invalid) and never merges with a good one.

The row is the lab's conversation schema (`id`, `source`, `messages`: the conversation up to and
including the answer, as the model answered it) plus the feedback (`rating`, `correction`), what
links the answers of one conversation (`conversation`, `turn`) and what produced the answer. lab/data/feedback.py
reads it back for training.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lab.core.errors import LabError

# The rows' `source`: the domain prepare reports them under (per-source counts, data.mix.proportions).
LOG_SOURCE = "chat"


def answer_row(conversation: str, turn: int, messages: list[dict[str, str]], produced_by: dict[str, Any],
               ) -> dict[str, Any]:
    """The log row of one answer: `messages` ends with it; `produced_by` says what answered (model,
    adapters, the adapter that answered, generation settings, lab revision, prompt facts)."""
    return {"id": f"{conversation}-{turn}", "source": LOG_SOURCE, "messages": [dict(m) for m in messages],
            "rating": None, "correction": None, "conversation": conversation, "turn": turn,
            "time": datetime.now(UTC).isoformat(timespec="seconds"), **produced_by}


class ChatLog:
    """A JSON Lines file that rows are appended to, whole, one at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as error:
            raise LabError(f"--log {path}: cannot open it for appending ({error.strerror})") from None
        self._end_cut_line()

    def _end_cut_line(self) -> None:
        """End a last line that a killed writer left without its newline, so the next row starts a line."""
        size = os.fstat(self._fd).st_size
        if size == 0:
            return
        with self.path.open("rb") as handle:
            handle.seek(size - 1)
            if handle.read(1) != b"\n":
                self._write(b"\n")

    def _write(self, data: bytes) -> None:
        written = 0
        while written < len(data):
            written += os.write(self._fd, data[written:])
        os.fsync(self._fd)

    def append(self, row: dict[str, Any]) -> None:
        """Append `row` as one line, on disk when this returns."""
        self._write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))

    def close(self) -> None:
        os.close(self._fd)
