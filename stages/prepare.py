"""Stage prepare: load the conversation dataset, validate it, split it, draw the eval sample.

Writes the train, validation, test and eval splits (history as input, last assistant turn as reference)
and the dataset statistics, all or none: a failed run leaves the previous outputs untouched.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lab.core.cli import run_stage
from lab.core.params import load_config
from lab.data.prepare import run_prepare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True, help="where train/validation/test/eval.jsonl go")
    parser.add_argument("--metrics", type=Path, required=True, help="the dataset statistics (JSON)")
    args = parser.parse_args()
    result = run_prepare(load_config(), args.data_dir, args.metrics)
    print(f"prepare: {result['stats']['rows']}")


if __name__ == "__main__":
    run_stage(main)
