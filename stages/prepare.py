"""Stage prepare: load the conversation dataset, validate it, split it, draw the eval sample.

Writes the train, validation, test and eval splits (history as input, last assistant turn as reference)
and the dataset statistics.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lab.cli import run_stage
from lab.config import load_config
from lab.data import prepare
from lab.io import staged_outputs, write_json, write_jsonl

SPLITS = ("train", "validation", "test", "eval")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True, help="where train/validation/test/eval.jsonl go")
    parser.add_argument("--metrics", type=Path, required=True, help="the dataset statistics (JSON)")
    args = parser.parse_args()
    # The five files are committed together: a failed or stopped run leaves the previous ones.
    with staged_outputs(*(args.data_dir / f"{split}.jsonl" for split in SPLITS), args.metrics) as staged:
        result = prepare(load_config())
        for split, path in zip(SPLITS, staged[:-1], strict=True):
            write_jsonl(path, result[split])
        write_json(staged[-1], result["stats"])
    print(f"prepare: {result['stats']['rows']}")


if __name__ == "__main__":
    run_stage(main)
