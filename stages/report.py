"""Stage report: metrics/report.md with the lab's tables, and the PNG plots it embeds (metrics/plots/).

Every number in the report is read from the metrics and predictions files, never typed in
(see lab/report.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lab.cli import run_stage
from lab.io import write_text
from lab.report import build_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics-dir", type=Path, required=True,
                        help="holds the metrics files and predictions/; report.md and plots/ are written there")
    parser.add_argument("--loss-curve", type=Path, required=True, help="dvclive's loss TSV")
    args = parser.parse_args()
    report_path = args.metrics_dir / "report.md"
    write_text(report_path, build_report(args.metrics_dir, args.loss_curve))
    print(f"report: {report_path} (plots in {args.metrics_dir / 'plots'})")


if __name__ == "__main__":
    run_stage(main)
