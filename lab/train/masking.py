"""Tokenization for training, with the assistant-only loss mask.

Each conversation goes through the model's chat template; only the tokens of assistant turns
(with their end-of-turn token) carry a loss. System, user and template tokens are masked.
"""

from __future__ import annotations

from typing import Any

from lab.core.errors import ConfigError
from lab.model.chat_template import render_chat


def assistant_spans(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The chat-template text of a conversation and the character spans of its assistant turns.

    Each span runs from the end of the generation prompt to the end of the turn as the template
    renders it, so the end-of-turn token is learned too (that is what teaches the model to stop).
    """
    text = render_chat(tokenizer, messages)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = render_chat(tokenizer, messages[:index], add_generation_prompt=True)
        through_turn = render_chat(tokenizer, messages[: index + 1])
        if not (text.startswith(through_turn) and through_turn.startswith(prompt)):
            raise ConfigError(
                "the chat template does not render conversations prefix-consistently, "
                "so assistant turns cannot be located for the loss mask"
            )
        spans.append((len(prompt), len(through_turn)))
    return text, spans


def tokenize_conversation(tokenizer: Any, messages: list[dict[str, str]]) -> dict[str, list[int]]:
    """input_ids and assistant_masks (1 on tokens of assistant turns, the only ones with a loss)."""
    text, spans = assistant_spans(tokenizer, messages)
    # The template text already holds BOS/special tokens: adding them again would double them.
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    mask = [int(any(start <= begin < end for start, end in spans)) for begin, _ in encoded["offset_mapping"]]
    return {"input_ids": list(encoded["input_ids"]), "assistant_masks": mask}


def tokenize_for_training(
    tokenizer: Any, conversations: list[dict[str, Any]], max_seq_length: int, long_sequences: str,
    split: str = "training",
) -> tuple[list[dict[str, list[int]]], dict[str, int]]:
    """Tokenize, and fit each example to max_seq_length up front (padding-free batching needs it): a
    longer one is truncated or dropped (train.long_sequences), and either way counted. An example left
    with no assistant token (its answers all past the cut) is dropped and counted: it would train on an
    empty loss. `split` names the rows in the error raised when none is left."""
    rows = []
    stats = {"examples": 0, "truncated": 0, "dropped_too_long": 0, "dropped_no_loss_tokens": 0, "tokens": 0,
             "loss_tokens": 0}
    for conversation in conversations:
        row = tokenize_conversation(tokenizer, conversation["messages"])
        if len(row["input_ids"]) > max_seq_length:
            if long_sequences == "drop":
                stats["dropped_too_long"] += 1
                continue
            stats["truncated"] += 1
            row = {key: values[:max_seq_length] for key, values in row.items()}
        if not any(row["assistant_masks"]):
            stats["dropped_no_loss_tokens"] += 1
            continue
        rows.append(row)
        stats["examples"] += 1
        stats["tokens"] += len(row["input_ids"])
        stats["loss_tokens"] += sum(row["assistant_masks"])
    if not rows:
        raise ConfigError(
            f"no {split} example has an assistant token within train.max_seq_length={max_seq_length} "
            f"(train.long_sequences={long_sequences}; {stats['dropped_too_long']} dropped as too long, "
            f"{stats['dropped_no_loss_tokens']} with no assistant token left after the cut)"
        )
    return rows, stats
