"""Stage compare: how sure we are that fine-tuning changed the scores, and why they moved.

Reads both models' per-example predictions; writes metrics/compare.json (paired bootstrap, format
metrics over the examples each covers, per-source means, length effects: see lab/eval/comparison.py),
metrics/gallery.json (the examples that gained and lost most) and the per-example length-matched scores.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lab.core.cli import run_stage
from lab.core.io import read_jsonl, staged_outputs, write_json, write_jsonl
from lab.core.params import load_config
from lab.eval.comparison import compare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--predictions-dir", type=Path, required=True,
                        help="holds base.jsonl and finetuned.jsonl; paired.jsonl is written there")
    parser.add_argument("--metrics", type=Path, required=True, help="the compare metrics JSON to write")
    parser.add_argument("--gallery", type=Path, required=True, help="the gallery JSON to write")
    args = parser.parse_args()
    outputs = (args.predictions_dir / "paired.jsonl", args.gallery, args.metrics)
    with staged_outputs(*outputs) as (paired_path, gallery_path, metrics_path):
        config = load_config()
        metrics, gallery, paired_rows = compare(config.comparison, read_jsonl(args.predictions_dir / "base.jsonl"),
                                                read_jsonl(args.predictions_dir / "finetuned.jsonl"))
        write_jsonl(paired_path, paired_rows)
        write_json(gallery_path, gallery)
        write_json(metrics_path, metrics)
    headline = config.compare.headline_metric
    test = metrics["metrics"][headline]
    print(f"compare: {metrics['examples']} examples, {headline} {test['difference']:+.4f} "
          f"[{test['ci_low']:+.4f}, {test['ci_high']:+.4f}] p={test['p_value']}")


if __name__ == "__main__":
    run_stage(main)
