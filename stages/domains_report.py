"""Stage domains_report (pipelines/domains/dvc.yaml): the domain x adapter table with paired bootstrap intervals,
the router's accuracy and fallback rate, and the routed system against the mixed adapter.

Writes the full comparison (JSON), the report (markdown) and the headline summary, the one file DVC lists as
metrics, all or none.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lab.core.cli import run_stage
from lab.core.io import staged_outputs, write_json, write_text
from lab.core.params import load_config
from lab.domains.report import build_domain_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics-dir", type=Path, required=True,
                        help="the domain pipeline's metrics (predictions/, train/, eval/, router.json, data.json)")
    parser.add_argument("--comparison", type=Path, required=True, help="output: every paired test (JSON)")
    parser.add_argument("--report", type=Path, required=True, help="output: the report (markdown)")
    parser.add_argument("--summary", type=Path, required=True, help="output: the headline (JSON, DVC metrics)")
    args = parser.parse_args()
    with staged_outputs(args.comparison, args.report, args.summary) as (comparison_path, report_path, summary_path):
        comparison, report, summary = build_domain_report(load_config(), args.metrics_dir)
        write_json(comparison_path, comparison)
        write_text(report_path, report)
        write_json(summary_path, summary)
    print(f"domains_report: {summary} -> {args.report}")


if __name__ == "__main__":
    run_stage(main)
