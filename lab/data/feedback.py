"""The chat CLI's feedback as training data: its log (tools/chat.py --log) read as the dataset format
`chat_log`, and the filters over its ratings (params.yaml `feedback`).

A log row is one answer (lab/chat/log.py writes it):
    {"id", "source", "messages": the conversation up to and including the answer,
     "rating": 1-5 or null, "correction": text or null, "conversation": str, "turn": int,
     ...what produced it: model, adapters, generation settings, time}
Prepare reads only the conversation from it. The correction, where there is one, replaces the answer
(the last assistant turn), so the model learns the user's text. Everything else stays out of the
training text; what the filters need goes into the row's `feedback` mapping:
    {"rating": the answer's own rating, "corrected": bool,
     "lowest_earlier_rating": the lowest rating among the conversation's uncorrected earlier answers}
The earlier answers count because the row's history holds them and training learns every assistant
turn of a row (lab/train/masking.py). They are the rows of the same file with the same `conversation` and
a lower `turn`; the chat puts a correction in place of its answer for the turns after it, so a
corrected earlier answer is not the model's any more, and its rating does not count.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lab.core.choices import MAX_RATING, MIN_RATING
from lab.core.config import FeedbackConfig
from lab.data.units import Grouping, RowFault, Unit, brief, unusable

# The columns that tell a chat log from other chat-messages data (lab.data.formats' detection).
LOG_COLUMNS = ("messages", "rating", "correction")
# What links the rows of one conversation.
CONVERSATION_COLUMNS = ("conversation", "turn")
BAD_FEEDBACK = "bad_feedback"

Predicate = Callable[[dict[str, Any]], bool]


def feedback_problem(row: Mapping[str, Any]) -> str | None:
    """Why a log row's rating or correction cannot be used, or None."""
    rating, correction = row.get("rating"), row.get("correction")
    if rating is not None and (isinstance(rating, bool) or not isinstance(rating, int)
                               or not MIN_RATING <= rating <= MAX_RATING):
        return f"rating {brief(rating)} is not a whole number from {MIN_RATING} to {MAX_RATING}, or null"
    if correction is not None and not (isinstance(correction, str) and correction.strip()):
        return f"correction {brief(correction)} is not text, or null"
    return None


def corrected_messages(row: Mapping[str, Any]) -> Any:
    """The row's messages with its correction in place of the answer (the last turn, when it is the
    assistant's); anything else as it is, for validation (lab.data.rows) to name."""
    messages, correction = row.get("messages"), row.get("correction")
    if correction is None or not isinstance(messages, list) or not messages:
        return messages
    last = messages[-1]
    if not (isinstance(last, Mapping) and last.get("role") == "assistant"):
        return messages
    return [*messages[:-1], {**last, "content": correction}]


def _position(row: Mapping[str, Any]) -> tuple[str, int] | None:
    """(conversation, turn) of a row that has both, else None: such a row stands alone."""
    conversation, turn = row.get("conversation"), row.get("turn")
    if not isinstance(conversation, str) or isinstance(turn, bool) or not isinstance(turn, int):
        return None
    return conversation, turn


def _earlier_ratings(rows: Sequence[Mapping[str, Any]]) -> list[int | None]:
    """For each row, the lowest rating among the uncorrected answers of its conversation's earlier turns."""
    by_conversation: dict[str, list[tuple[int, int | None]]] = defaultdict(list)
    for row in rows:
        position = _position(row)
        if position is not None and row.get("correction") is None and row.get("rating") is not None:
            by_conversation[position[0]].append((position[1], row["rating"]))
    lowest: list[int | None] = []
    for row in rows:
        position = _position(row)
        earlier = [] if position is None else [
            rating for turn, rating in by_conversation[position[0]] if turn < position[1]]
        lowest.append(min(earlier, default=None))
    return lowest


def group_chat_log(rows: Sequence[Any]) -> Grouping:
    """Each usable log row as a conversation in the chat `messages` layout, its correction applied and
    its `feedback` attached; the rows that are no mapping, or whose rating or correction is malformed,
    as faults (counted like invalid rows, data.on_invalid)."""
    faults: list[RowFault] = []
    usable: list[tuple[int, Mapping[str, Any]]] = []
    for index, row in enumerate(rows):
        fault = unusable(row)
        problem = None if fault is not None else feedback_problem(row)
        if fault is not None or problem is not None:
            faults.append(RowFault(f"row {index}", *(fault or (BAD_FEEDBACK, problem))))
        else:
            usable.append((index, row))
    lowest = _earlier_ratings([row for _, row in usable])
    units = []
    for (index, row), earlier in zip(usable, lowest, strict=True):
        feedback = {"rating": row.get("rating"), "corrected": row.get("correction") is not None,
                    "lowest_earlier_rating": earlier}
        units.append(Unit(f"row {index}", {"id": row.get("id"), "source": row.get("source"),
                                           "messages": corrected_messages(row), "feedback": feedback}))
    return units, faults


def _rated_at_least(feedback: Mapping[str, Any] | None, floor: int) -> bool:
    """Whether no model answer that a row trains on is rated below `floor` (its own when uncorrected,
    and its history's); rows of other sources have no feedback and pass."""
    if feedback is None:
        return True
    own = None if feedback["corrected"] else feedback["rating"]
    return all(rating is None or rating >= floor for rating in (own, feedback["lowest_earlier_rating"]))


def _unrated(feedback: Mapping[str, Any] | None) -> bool:
    """Whether a row is a chat log's answer that was neither rated nor corrected."""
    return feedback is not None and not feedback["corrected"] and feedback["rating"] is None


def feedback_filters(feedback: FeedbackConfig) -> dict[str, Predicate]:
    """The feedback filters that are on, by param name, each True for a row to keep (lab.data.filters runs
    them after data.filters, over the training rows, and counts what each removes)."""
    keep: dict[str, Predicate] = {}
    if feedback.min_rating is not None:
        floor = feedback.min_rating
        keep["min_rating"] = lambda row: _rated_at_least(row.get("feedback"), floor)
    if feedback.unrated == "drop":
        keep["unrated"] = lambda row: not _unrated(row.get("feedback"))
    return keep
