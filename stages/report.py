"""Stage report: metrics/report.md with the lab's tables, the PNG plots it embeds (metrics/plots/),
and the run's headline (the file DVC lists as metrics, see lab/core/summary.py).

Every number in the report is read from the metrics and predictions files, never typed in
(see lab/report/build.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lab.core.cli import run_stage
from lab.core.io import read_json, staged_outputs, write_json, write_text
from lab.core.summary import headline
from lab.report.build import build_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics-dir", type=Path, required=True,
                        help="holds the metrics files and predictions/; report.md and plots/ are written there")
    parser.add_argument("--loss-curve", type=Path, required=True, help="dvclive's loss TSV")
    parser.add_argument("--summary", type=Path, required=True, help="output: the headline metrics (.json)")
    args = parser.parse_args()
    report_path = args.metrics_dir / "report.md"
    with staged_outputs(report_path, args.metrics_dir / "plots", args.summary) as (report, plots, summary):
        write_text(report, build_report(args.metrics_dir, args.loss_curve, plots))
        write_json(summary, headline(read_json(args.metrics_dir / "train.json"),
                                     read_json(args.metrics_dir / "compare.json")))
    print(f"report: {report_path} (plots in {args.metrics_dir / 'plots'})")


if __name__ == "__main__":
    run_stage(main)
