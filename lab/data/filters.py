"""Quality filters over conversations (data.filters), applied to every conversation before dedup and
the split, so that the test split and the eval sample are held to the same standard as training.

Each filter is off when its param is null. Lengths and symbol shares are measured on the answer:
the last assistant turn, the one the eval sample scores as its reference (a multi-turn
conversation's earlier answers are judged with it, kept or dropped as one). The language is
detected on the text of all turns together, which is longer and so detected more reliably.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from lab.core.config import FiltersConfig
from lab.core.errors import ConfigError
from lab.core.text import word_count

Predicate = Callable[[dict[str, Any]], bool]


def answer_text(conversation: dict[str, Any]) -> str:
    """The last assistant turn: the answer that the filters and the per-source lengths measure."""
    return next(m["content"] for m in reversed(conversation["messages"]) if m["role"] == "assistant")


def answer_words(conversation: dict[str, Any]) -> int:
    """Whitespace words of the answer (lab.core.text.word_count, the lab's unit of length)."""
    return word_count(answer_text(conversation))


def symbol_share(text: str) -> float:
    """Share of the non-space characters of `text` that are neither letters nor digits (0 when empty)."""
    visible = [char for char in text if not char.isspace()]
    if not visible:
        return 0.0
    return sum(not char.isalnum() for char in visible) / len(visible)


@lru_cache(maxsize=1)
def _language_identifier() -> Any:
    """py3langid's identifier over all its languages; its model ships inside the wheel (offline).
    Loading it takes about a second, so it is loaded once, and only when the filter is on."""
    try:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
    except ImportError:
        raise ConfigError("data.filters.languages needs py3langid, which requirements.txt pins: "
                          "pip install -r requirements.txt (or set data.filters.languages: null)") from None
    return LanguageIdentifier.from_model_file(MODEL_FILE)


def detect_language(conversation: dict[str, Any]) -> str:
    """The ISO 639 code py3langid gives the text of all turns (system, user and assistant) together."""
    return _language_identifier().classify("\n".join(m["content"] for m in conversation["messages"]))[0]


def check_languages(languages: list[str]) -> None:
    """Fail before any work if data.filters.languages names a code the detector does not know."""
    known = _language_identifier().labels  # a property: the distinct language codes
    unknown = [code for code in languages if code not in known]
    if unknown:
        raise ConfigError(f"data.filters.languages: {languages} includes {unknown}, which py3langid does not "
                          f"detect; allowed: {' '.join(sorted(known))}")


def active_filters(filters: FiltersConfig) -> dict[str, Predicate]:
    """The filters that are on, by param name, each a predicate that is True for a row to keep, in a
    fixed order (cheap ones first, the language model last, so it sees the fewest rows)."""
    keep: dict[str, Predicate] = {}
    if filters.min_answer_words is not None:
        low = filters.min_answer_words
        keep["min_answer_words"] = lambda row: answer_words(row) >= low
    if filters.max_answer_words is not None:
        high = filters.max_answer_words
        keep["max_answer_words"] = lambda row: answer_words(row) <= high
    if filters.min_score is not None:
        floor = filters.min_score
        # A row without a score has nothing to be judged by (the builtin rows, most datasets): kept.
        keep["min_score"] = lambda row: row.get("score") is None or row["score"] >= floor
    if filters.max_symbol_share is not None:
        share = filters.max_symbol_share
        keep["max_symbol_share"] = lambda row: symbol_share(answer_text(row)) <= share
    if filters.languages is not None:
        check_languages(filters.languages)
        languages = set(filters.languages)
        keep["languages"] = lambda row: detect_language(row) in languages
    return keep


def apply_filters(conversations: list[dict[str, Any]], filters: FiltersConfig,
                  on_removed: Callable[[str, list[dict[str, Any]]], None] | None = None,
                  more: Mapping[str, Predicate] | None = None) -> list[dict[str, Any]]:
    """The conversations that pass every filter that is on (data.filters, then `more`), in their order.
    Filters run one after the other, so a row is counted against the first filter it fails:
    `on_removed(name, rows)` gets each filter's name and the rows it removed."""
    for name, keep in {**active_filters(filters), **(more or {})}.items():
        verdicts = [keep(row) for row in conversations]
        if on_removed is not None:
            on_removed(name, [row for row, kept in zip(conversations, verdicts, strict=True) if not kept])
        conversations = [row for row, kept in zip(conversations, verdicts, strict=True) if kept]
    return conversations
