"""Stage domains_prepare (pipelines/domains/dvc.yaml): the domain pipeline's data, prepared as the prepare stage
prepares it with the domains section laid over the data section, split by domain.

Writes DATA_DIR/<adapter>/{train,validation,eval}.jsonl for each of domains.adapters (mixed: every domain's rows)
and the statistics, all or none.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lab.core.cli import run_stage
from lab.core.params import load_config
from lab.domains.data import run_domains_prepare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True, help="output: one folder of splits per adapter")
    parser.add_argument("--metrics", type=Path, required=True, help="output: the statistics (JSON)")
    args = parser.parse_args()
    stats = run_domains_prepare(load_config(), args.data_dir, args.metrics)
    print(f"domains_prepare: {stats['adapters']}")


if __name__ == "__main__":
    run_stage(main)
