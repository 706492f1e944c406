"""Public conversation-dataset formats: how the rows of each become (speaker, text) turns.

Every format is an `Adapter` in `FORMATS`, known by the columns that identify it. An adapter only reads
a layout; lab.data.prepare maps the speakers to chat roles, validates the turns and builds the common schema,
so every format is checked by the same rules and its faults are counted under the same reasons.
OpenAssistant trees spread one conversation over many rows, so their adapter first groups the rows
into conversations in the chat `messages` layout (`group_oasst`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from lab.core.errors import DataError
from lab.data.feedback import group_chat_log
from lab.data.units import Grouping, RowFault, Unit, brief, unusable

AUTO = "auto"
# A dataset loaded through `datasets` gives every row all of the table's columns, so a few rows show
# the schema; reading more than the first (and only rows that are mappings) keeps malformed rows from hiding it.
DETECTION_ROWS = 100
# OpenAssistant calls the user "prompter".
OASST_ROLES = {"prompter": "user", "assistant": "assistant"}

Turn = tuple[Any, Any]  # (speaker, text) as the row has them: lab.data.prepare maps and validates both


@dataclass(frozen=True)
class Adapter:
    """How the rows of one public format become conversations.

    A row with all of `columns` is in this format. `turns` reads one row, or says None when the row
    carries no conversation in this layout. `group`, for a format that spreads one conversation over
    several rows, first assembles the rows into conversations that `turns` then reads.
    """

    columns: tuple[str, ...]
    turns: Callable[[Mapping[str, Any]], list[Turn] | None]
    example: str
    optional_columns: tuple[str, ...] = ()
    group: Callable[[Sequence[Any]], Grouping] | None = None
    # Fields of the (grouped) row that the normalised conversation keeps beside its messages.
    carried: tuple[str, ...] = ()


def _turn_list(row: Mapping[str, Any], column: str, speaker_key: str, text_key: str) -> list[Turn] | None:
    """The turns of a row whose `column` is a list of {speaker_key, text_key} mappings."""
    turns = row.get(column)
    if not isinstance(turns, list):
        return None
    return [(t.get(speaker_key), t.get(text_key)) if isinstance(t, Mapping) else (None, None) for t in turns]


def _sharegpt_turns(row: Mapping[str, Any]) -> list[Turn] | None:
    return _turn_list(row, "conversations", "from", "value")


def _chat_turns(row: Mapping[str, Any]) -> list[Turn] | None:
    return _turn_list(row, "messages", "role", "content")


def _prompt_answer(prompt_column: str, answer_column: str) -> Callable[[Mapping[str, Any]], list[Turn] | None]:
    """A reader for single-turn rows: the prompt column is the user turn, the answer column the reply."""

    def turns(row: Mapping[str, Any]) -> list[Turn] | None:
        prompt, answer = row.get(prompt_column), row.get(answer_column)
        if prompt is None and answer is None:
            return None
        return [("user", prompt), ("assistant", answer)]

    return turns


def _alpaca_turns(row: Mapping[str, Any]) -> list[Turn] | None:
    """Instruction (with its optional input) as the user turn, output as the reply."""
    instruction, context, output = row.get("instruction"), row.get("input"), row.get("output")
    if instruction is None and output is None:
        return None
    # `input` is the material the instruction works on (code to fix, a list to sort), so it belongs in
    # the same user turn; a blank instruction stays blank so the row is rejected, not half read.
    if isinstance(instruction, str) and instruction.strip() and isinstance(context, str) and context.strip():
        instruction = f"{instruction.strip()}\n\n{context.strip()}"
    return [("user", instruction), ("assistant", output)]


def _rank_value(rank: Any) -> float | None:
    """A sibling's rank as a float, None when unranked (null, NaN or not a number); an integer too
    large for a float ranks as infinite, on its side, instead of failing the conversion."""
    if isinstance(rank, bool) or not isinstance(rank, (int, float)):
        return None
    try:
        value = float(rank)
    except OverflowError:
        return math.inf if rank > 0 else -math.inf
    return None if math.isnan(value) else value


def _rank_order(message: Mapping[str, Any]) -> tuple[bool, float, str]:
    """Sort key of sibling replies: lowest rank first, unranked (null or NaN) last, ties by message_id."""
    rank = _rank_value(message.get("rank"))
    return (rank is None, 0.0 if rank is None else rank, str(message["message_id"]))


def _index_messages(rows: Sequence[Any]) -> tuple[dict[str, Mapping[str, Any]], dict[str, int], list[RowFault]]:
    """OpenAssistant messages by message_id (first occurrence wins), their row numbers, and the faulty rows."""
    messages: dict[str, Mapping[str, Any]] = {}
    row_of: dict[str, int] = {}
    faults = []
    for index, row in enumerate(rows):
        label = f"row {index}"
        if (fault := unusable(row)) is not None:
            faults.append(RowFault(label, *fault))
        elif row.get("message_id") in (None, ""):
            faults.append(RowFault(label, "no_message_id", "the message has no message_id"))
        elif str(row["message_id"]) in messages:
            faults.append(RowFault(label, "duplicate_message_id", f"message {brief(row['message_id'])} appears twice"))
        else:
            messages[str(row["message_id"])] = row
            row_of[str(row["message_id"])] = index
    return messages, row_of, faults


def _best_path(root: Mapping[str, Any], replies: Mapping[str, list[Mapping[str, Any]]]) -> list[Mapping[str, Any]]:
    """From `root` down to a leaf through the best-ranked reply at each step, ending on the assistant.

    A message reached from a root has its whole parent chain in the tree, so the walk cannot loop.
    """
    path = [root]
    while children := replies.get(str(path[-1]["message_id"])):
        path.append(min(children, key=_rank_order))
    # A prompt nobody answered has nothing to learn from; a lone root prompt is kept, so that
    # validation names the tree as having no assistant turn instead of hiding it.
    while len(path) > 1 and path[-1].get("role") == "prompter":
        path.pop()
    return path


def _chat_role(role: Any) -> Any:
    """The chat role of an OpenAssistant role; anything else is passed on for validation to name."""
    return OASST_ROLES.get(role, role) if isinstance(role, str) else role


def _descendants(roots: Iterable[str], replies: Mapping[str, list[Mapping[str, Any]]]) -> set[str]:
    """The message_ids of the roots and everything below them."""
    reached, pending = set(), list(roots)
    while pending:
        message_id = pending.pop()
        reached.add(message_id)
        pending.extend(str(child["message_id"]) for child in replies.get(message_id, []))
    return reached


def group_oasst(rows: Sequence[Any]) -> Grouping:
    """One conversation per OpenAssistant tree (its best-ranked path), and the rows that fit no tree.

    Each tree is rebuilt from parent_id links; from each root (parent_id null) the path follows the
    lowest-ranked reply at each step (see `_best_path`). Conversations are in the chat `messages`
    layout with roles mapped, id = message_tree_id, in the order of their roots in `rows`.
    """
    messages, row_of, faults = _index_messages(rows)
    replies: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    roots = []
    for message_id, message in messages.items():
        parent = message.get("parent_id")
        if parent is None:
            roots.append(message_id)
        else:
            replies[str(parent)].append(message)
    units = []
    for root_id in roots:
        root = messages[root_id]
        tree_id = str(root.get("message_tree_id") or root_id)
        turns = [{"role": _chat_role(m.get("role")), "content": m.get("text")} for m in _best_path(root, replies)]
        # The label goes into error messages: a tree id of odd characters is quoted (and escaped) there.
        label = f"tree {tree_id if tree_id.isprintable() and len(tree_id) <= 60 else brief(tree_id)}"
        units.append(Unit(label, {"id": tree_id, "source": root.get("source"), "messages": turns}))
    for message_id in sorted(messages.keys() - _descendants(roots, replies), key=row_of.__getitem__):
        faults.append(RowFault(f"row {row_of[message_id]}", "orphan_message",
                               f"message {brief(message_id)} does not lead up to a root message (parent_id null)"))
    return units, faults


def oasst_conversations(rows: Sequence[Any]) -> list[dict[str, Any]]:
    """The best-path conversation of each OpenAssistant tree in `rows` (see `group_oasst`, which also
    names the rows that fit in no tree)."""
    return [unit.row for unit in group_oasst(rows)[0]]


FORMATS: dict[str, Adapter] = {
    "sharegpt": Adapter(("conversations",), _sharegpt_turns, "ShareGPT, FineTome: a list of {from, value}"),
    "messages": Adapter(("messages",), _chat_turns, "chat messages: a list of {role, content}"),
    "alpaca": Adapter(("instruction", "output"), _alpaca_turns, "CodeAlpaca-20k, Alpaca",
                      optional_columns=("input",)),
    "question_answer": Adapter(("question", "answer"), _prompt_answer("question", "answer"), "GSM8K"),
    "query_response": Adapter(("query", "response"), _prompt_answer("query", "response"), "MetaMathQA"),
    "inputs_targets": Adapter(("inputs", "targets"), _prompt_answer("inputs", "targets"), "FLAN"),
    "oasst": Adapter(("message_id", "parent_id", "role", "text"), _chat_turns,
                     "OpenAssistant OASST1/OASST2: one row per message of a tree",
                     optional_columns=("message_tree_id", "rank"), group=group_oasst),
    "chat_log": Adapter(("messages", "rating", "correction"), _chat_turns,
                        "tools/chat.py --log: one answer per row, with its rating and correction",
                        optional_columns=("conversation", "turn"), group=group_chat_log, carried=("feedback",)),
}


def describe_formats() -> str:
    """One line per known format: its name, identifying columns and an example dataset."""
    lines = []
    for name, adapter in FORMATS.items():
        optional = f" (optional: {', '.join(adapter.optional_columns)})" if adapter.optional_columns else ""
        lines.append(f"  {name}: {', '.join(adapter.columns)}{optional} - {adapter.example}")
    return "\n".join(lines)


def detect_format(columns: Iterable[str]) -> str:
    """The one format whose identifying columns are all among `columns`; DataError when none or several are."""
    found = set(columns)
    matches = [name for name, adapter in FORMATS.items() if found.issuperset(adapter.columns)]
    # A format identified by all of another's columns and more is the closer reading (chat_log: messages).
    closest = [name for name in matches if all(set(FORMATS[name].columns) >= set(FORMATS[other].columns)
                                               for other in matches)]
    if len(closest) == 1:
        return closest[0]
    problem = f"they match several formats ({', '.join(matches)})" if matches else "they match no known format"
    raise DataError(
        f"cannot tell the dataset's format from its columns: {problem}.\n"
        f"Columns found: {', '.join(sorted(map(str, found))) or '(none)'}\n"
        f"Known formats and the columns that identify them:\n{describe_formats()}\n"
        "Set data.format to the format to read."
    )


def resolve_format(rows: Sequence[Any], data_format: str) -> str:
    """The format to read `rows` in: `data_format` itself, or for "auto" the one that the columns of
    the first rows identify."""
    if data_format != AUTO:
        if data_format not in FORMATS:
            raise DataError(f"data.format: unknown format {data_format!r}; known: {AUTO}, {', '.join(FORMATS)}")
        return data_format
    columns: set[str] = set()
    for row in islice((row for row in rows if isinstance(row, Mapping)), DETECTION_ROWS):
        columns.update(row)
    return detect_format(columns)


def conversation_units(rows: Sequence[Any], data_format: str) -> Grouping:
    """The raw conversations of `rows` in `data_format` (a name in FORMATS), each labelled for error
    messages, and the rows that grouping found unusable (none for a one-row-per-conversation format)."""
    group = FORMATS[data_format].group
    if group is None:
        return [Unit(f"row {index}", row) for index, row in enumerate(rows)], []
    return group(rows)
