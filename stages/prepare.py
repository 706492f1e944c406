"""Stage prepare: load the conversation dataset, validate it, split it, draw the eval sample.

Writes data/train.jsonl, data/test.jsonl, data/eval.jsonl (history as input, last assistant
turn as reference) and metrics/data.json.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path
from typing import Any

from lab.cli import run_stage
from lab.config import BUILTIN_DATASET, LabConfig, load_config
from lab.data import (
    DataError,
    dataset_stats,
    load_raw_rows,
    normalize_rows,
    sample,
    split_conversations,
    to_eval_example,
)
from lab.io import write_json, write_jsonl


def prepare(config: LabConfig) -> dict[str, Any]:
    """Return the train, test and eval rows and the stats, all from the configured source."""
    data = config.data
    raw_rows = load_raw_rows(data)
    conversations, dropped = normalize_rows(raw_rows, data.on_invalid)
    train_all, test = split_conversations(conversations, data.test_size, config.seed)
    if data.eval_examples > len(test):
        raise DataError(f"data.eval_examples={data.eval_examples} but the test split has only {len(test)} rows")
    train = sample(train_all, data.max_train_examples, config.seed)
    eval_examples = [to_eval_example(c) for c in sample(test, data.eval_examples, config.seed)]
    stats = dataset_stats(len(raw_rows), dropped, train, test, eval_examples)
    stats["rows"]["train_available"] = len(train_all)
    stats["source"] = data.source
    if data.source == BUILTIN_DATASET:
        from lab.docstrings import package_versions

        stats["builtin_versions"] = {"python": platform.python_version(), **package_versions(data.builtin_packages)}
    return {"train": train, "test": test, "eval": eval_examples, "stats": stats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/data.json"))
    args = parser.parse_args()
    result = prepare(load_config())
    for split in ("train", "test", "eval"):
        write_jsonl(args.data_dir / f"{split}.jsonl", result[split])
    write_json(args.metrics, result["stats"])
    print(f"prepare: {result['stats']['rows']}")


if __name__ == "__main__":
    run_stage(main)
