"""Stage domains_router (pipelines/domains/dvc.yaml): the router, nearest domain centroid of the prompts' sentence
embeddings, fitted on every domain's training prompts and measured on the eval examples' known domains.

Writes the router folder (lab.domains.router: router.json and centroids.npy, what `Router.load` reads) and its record:
accuracy, fallback and misrouted rates, overall and per domain, the confusion counts and every eval route.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lab.core.cli import run_stage
from lab.core.io import read_jsonl, staged_outputs, write_json
from lab.core.params import load_config
from lab.domains.routing import fit_router


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True, help="domains_prepare's folder (<domain>/train.jsonl)")
    parser.add_argument("--eval-file", type=Path, required=True, help="every domain's eval examples (.jsonl)")
    parser.add_argument("--router", type=Path, required=True, help="output: the router folder")
    parser.add_argument("--metrics", type=Path, required=True, help="output: the router's record (JSON)")
    args = parser.parse_args()
    with staged_outputs(args.router, args.metrics) as (router_path, metrics_path):
        router, record = fit_router(load_config().domains, args.data_dir, read_jsonl(args.eval_file))
        router.save(router_path)
        write_json(metrics_path, record)
    print(f"domains_router: accuracy {record['accuracy']:.1%}, fallback {record['fallback_rate']:.1%}, misrouted "
          f"{record['misrouted_rate']:.1%} on {record['examples']} eval examples -> {args.router}")


if __name__ == "__main__":
    run_stage(main)
