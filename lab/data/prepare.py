"""Conversation datasets: loading, validation into one schema (lab.data.rows), dedup, splits, and the
prepare stage's outputs.

The common schema of a conversation row (lab.data.rows):
    {"id": str, "source": str, "score": float | None,
     "messages": [{"role": "system" | "user" | "assistant", "content": str}, ...]}
An eval example is the history before the last assistant turn plus that turn as reference:
    {"id", "source", "input": [messages...], "reference": str}
"""

from __future__ import annotations

import platform
import random
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lab.core.checks import DATA_FILE_LOADERS
from lab.core.config import BUILTIN_DATASET, DataConfig, DedupConfig, LabConfig
from lab.core.errors import DataError
from lab.core.hub import load_hub_dataset
from lab.core.io import staged_outputs, write_json, write_jsonl
from lab.core.provenance import package_versions
from lab.data.answer_format import apply_answer_format
from lab.data.feedback import feedback_filters
from lab.data.filters import apply_filters
from lab.data.json_rows import read_json_rows
from lab.data.mixing import not_sampled, sample, training_rows
from lab.data.rows import normalize_rows
from lab.data.stats import SourceLedger, dataset_stats

# The prepare stage's outputs: data/<split>.jsonl for each, and the statistics (metrics/data.json).
SPLITS = ("train", "validation", "test", "eval")


def load_raw_rows(config: DataConfig, seed: int) -> list[Any]:
    """Rows of the configured source (data.source)."""
    return load_source_rows(config.source, config, seed, "data.source", config.revision)


def load_source_rows(source: str, config: DataConfig, seed: int, key: str, revision: str | None = None,
                     hub_commits: dict[str, Any] | None = None) -> list[Any]:
    """Rows of one source, the param `key` names: the builtin dataset, a local file, or a Hub dataset id
    at `revision` (None: its default branch), whose resolved commit goes into `hub_commits`."""
    if source == BUILTIN_DATASET:
        return builtin_rows(config, seed)
    path = Path(source)
    if path.suffix.lower() in DATA_FILE_LOADERS or path.exists():
        if not path.is_file():
            raise DataError(f"{key}: file {path} not found")
        loader = DATA_FILE_LOADERS.get(path.suffix.lower())
        if loader is None:
            raise DataError(f"{key}: {path} is not .json, .jsonl or .parquet")
        if loader == "json":  # read line by line: one bad line is one invalid row (lab.data.json_rows)
            return read_json_rows(path, key)
        return _load_with_datasets(loader, data_files=str(path), split="train", what=str(path))
    rows, commit = load_hub_dataset(source, config.hub_split, revision)
    if hub_commits is not None:
        hub_commits[source] = {"revision": revision, "commit": commit}
    return rows


def load_conversations(config: DataConfig, seed: int, hub_commits: dict[str, Any] | None = None,
                       ) -> tuple[list[dict[str, Any]], int, Counter[str]]:
    """The conversations of data.source (at data.revision) and then of each data.mix.extra_sources entry
    (each read in its own format), the raw rows read, and the invalid rows dropped by reason. A row without
    a `source` column gets "unknown" from data.source, and its entry's source string from an extra source.
    Each Hub source's requested revision and resolved commit go into `hub_commits`."""
    entries = [("data.source", config.source, config.format, "unknown", config.revision)] + [
        (f"data.mix.extra_sources[{i}]", extra.source, extra.format, extra.source, None)
        for i, extra in enumerate(config.mix.extra_sources)]
    conversations: list[dict[str, Any]] = []
    raw_count, dropped = 0, Counter[str]()
    for key, source, data_format, default_source, revision in entries:
        rows = load_source_rows(source, config, seed, key, revision, hub_commits)
        where = f"{key} ({source})"
        try:
            found, bad = normalize_rows(rows, config.on_invalid, data_format, default_source,
                                        same_role_turns=config.same_role_turns)
        except DataError as error:
            raise DataError(f"{where}: {error}" if key != "data.source" else str(error)) from None
        if not found:  # an empty source, or every row dropped: nothing would say so later but a failed split
            reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(bad.items()))
            raise DataError(f"{where}: no valid conversation in {len(rows)} row(s)"
                            + (f"; dropped (data.on_invalid: drop) by reason: {reasons}" if bad else ""))
        conversations += found
        raw_count += len(rows)
        dropped.update(bad)
    return conversations, raw_count, dropped


def builtin_rows(config: DataConfig, seed: int) -> list[dict[str, Any]]:
    """The builtin dataset: the docs domain, plus the code and math domains where their counts are
    above 0 (each row's `source` names its domain: docs, code or math; its id names the object)."""
    from lab.data.builtin.docstrings import build_docstring_conversations

    builtin = config.builtin
    rows = build_docstring_conversations(builtin)
    if builtin.code_examples:
        from lab.data.builtin.code import build_code_conversations

        rows += build_code_conversations(builtin.packages, builtin.min_words, builtin.code_examples, seed)
    if builtin.math_examples:
        from lab.data.builtin.math import build_math_conversations

        rows += build_math_conversations(builtin.math_examples, seed)
    return rows


def _load_with_datasets(name: str, what: str, **kwargs: Any) -> list[Any]:
    import datasets

    try:
        return list(datasets.load_dataset(name, **kwargs))
    except Exception as error:  # datasets raises many types; the user needs one clear line
        raise DataError(f"could not load {what}: {type(error).__name__}: {error}") from None


def split_conversations(
    conversations: Sequence[dict[str, Any]], test_size: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Seeded shuffle, then the first `test_size` share is the test split."""
    order = list(range(len(conversations)))
    random.Random(seed).shuffle(order)
    test_count = round(len(order) * test_size)
    if test_count == 0 or test_count == len(order):
        raise DataError(f"{len(order)} conversation(s) cannot be split with test_size={test_size}")
    test = [conversations[i] for i in sorted(order[:test_count])]
    train = [conversations[i] for i in sorted(order[test_count:])]
    return train, test


def to_eval_example(conversation: dict[str, Any]) -> dict[str, Any]:
    """History before the last assistant turn as input, that turn as the reference."""
    messages = conversation["messages"]
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return {
        "id": conversation["id"],
        "source": conversation["source"],
        "input": messages[:last],
        "reference": messages[last]["content"],
    }


def deduplicate(conversations: list[dict[str, Any]], dedup: DedupConfig, seed: int,
                on_removed: Callable[[str, list[dict[str, Any]]], None] | None = None,
                ) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Conversations without their exact and (data.dedup.near) near duplicates, first kept; and how
    many each check removed. `on_removed(check, rows)` gets each check's removed rows."""
    from lab.data import dedup as checks

    removed = {"exact_duplicates": 0, "near_duplicates": 0}
    for check, on in (("exact_duplicates", dedup.exact), ("near_duplicates", dedup.near)):
        if not on:
            continue
        drop = set(checks.exact_duplicates(conversations) if check == "exact_duplicates" else
                   checks.near_duplicates(conversations, dedup.threshold, dedup.num_perm, dedup.shingle_words, seed))
        removed[check] = len(drop)
        if on_removed is not None:
            on_removed(check, [row for i, row in enumerate(conversations) if i in drop])
        conversations = [row for i, row in enumerate(conversations) if i not in drop]
    return conversations, removed


def drop_leaks(train: list[dict[str, Any]], held_out: list[dict[str, Any]], dedup: DedupConfig,
               seed: int) -> tuple[list[dict[str, Any]], int]:
    """Training conversations without those that have an exact or near duplicate held out
    (data.dedup.leak_check), and how many were dropped."""
    if not dedup.leak_check:
        return train, 0
    from lab.data.dedup import leaked

    drop = set(leaked(train, held_out, dedup.threshold, dedup.num_perm, dedup.shingle_words, seed))
    return [row for i, row in enumerate(train) if i not in drop], len(drop)


def prepare(config: LabConfig) -> dict[str, Any]:
    """The train, validation, test and eval rows and their stats, from the configured sources.

    Rows are validated (data.on_invalid) and deduplicated over all sources, then split with a seeded
    shuffle (data.test_size); training rows that leak into the test split are dropped; the
    validation rows (data.validation_examples) are drawn from the training split; the rest is
    filtered (data.filters, then a chat log's `feedback` filters) and the training rows are chosen from
    it (data.max_train_examples, data.mix.proportions: see `training_rows`), so the three never
    overlap and test, eval and validation do not depend on the filters or the mix; the eval sample
    comes from the test split (data.eval_examples), each as history-as-input and
    last-assistant-turn-as-reference.
    """
    data = config.data
    hub_commits: dict[str, Any] = {}
    conversations, raw_count, dropped = load_conversations(data, config.seed, hub_commits)
    ledger = SourceLedger(conversations)
    valid_count = len(conversations)
    conversations, removed = deduplicate(conversations, data.dedup, config.seed, ledger.remove)
    train_all, test = split_conversations(conversations, data.test_size, config.seed)
    kept, removed["leaked"] = drop_leaks(train_all, test, data.dedup, config.seed)
    ledger.remove_difference("leaked", train_all, kept)
    validation, train_pool = _hold_out_validation(kept, len(test), data, config.seed)
    # Filters shape what the model learns from, never what it is measured on: test, eval and
    # validation stay the same rows whatever the filters, so runs that differ in them compare paired.
    earlier_steps = set(ledger.removed)
    train_pool = apply_filters(train_pool, data.filters, ledger.remove, more=feedback_filters(config.feedback))
    filtered = {step: sum(counts.values()) for step, counts in ledger.removed.items() if step not in earlier_steps}
    train, repeats = training_rows(train_pool, data, config.seed)
    eval_examples = [to_eval_example(c) for c in sample(test, data.eval_examples, config.seed)]
    for place, rows in (("test", test), ("validation", validation)):
        ledger.place(place, rows)
    ledger.place("not_sampled", not_sampled(train_pool, train))
    ledger.train(train, repeats)
    # The answer format is taught, never imposed on test/eval references (lab/data/answer_format.py).
    train, validation = (apply_answer_format(rows, data.answer_format) for rows in (train, validation))
    stats = dataset_stats(raw_count, valid_count, dropped, train, test, eval_examples)
    stats.update(removed=removed, filtered=filtered, per_source=ledger.to_dict(), source=data.source, hub=hub_commits,
                 extra_sources=[extra.source for extra in data.mix.extra_sources],
                 mix={"proportions": data.mix.proportions, "repeats": sum(repeats.values())},
                 order={"order": data.order, "curriculum_key": data.curriculum_key if data.order == "curriculum"
                        else None})
    stats["rows"].update(train_available=len(train_pool), validation=len(validation))
    if BUILTIN_DATASET in [data.source, *stats["extra_sources"]]:
        # The builtin rows depend on the docstrings, i.e. on these versions.
        stats["builtin_versions"] = {"python": platform.python_version(), **package_versions(data.builtin.packages)}
    return {"train": train, "validation": validation, "test": test, "eval": eval_examples, "stats": stats}


def run_prepare(config: LabConfig, data_dir: Path, metrics: Path) -> dict[str, Any]:
    """The prepare stage: `prepare`, then data_dir/<split>.jsonl for each of SPLITS and the statistics
    at `metrics`, all or none (lab.core.io.staged_outputs): a run that fails (bad data, a full disk) or is
    stopped leaves the previous outputs as they were."""
    with staged_outputs(*(data_dir / f"{split}.jsonl" for split in SPLITS), metrics) as staged:
        result = prepare(config)
        for split, path in zip(SPLITS, staged[:-1], strict=True):
            write_jsonl(path, result[split])
        write_json(staged[-1], result["stats"])
    return result


def _hold_out_validation(train_all: list[dict[str, Any]], test_count: int, data: DataConfig,
                         seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The validation rows (a seeded sample of the training split) and the training pool left."""
    if data.eval_examples > test_count:
        raise DataError(f"data.eval_examples={data.eval_examples} but the test split has only {test_count} rows")
    if data.validation_examples >= len(train_all):
        raise DataError(f"data.validation_examples={data.validation_examples} but the training split has only "
                        f"{len(train_all)} rows")
    # By position, not id: a user's dataset may repeat ids.
    chosen = set(random.Random(seed).sample(range(len(train_all)), data.validation_examples))
    return ([row for i, row in enumerate(train_all) if i in chosen],
            [row for i, row in enumerate(train_all) if i not in chosen])
