"""Stage domains_evaluate_routed (pipelines/domains/dvc.yaml): the routed system end to end. Every eval prompt is
routed (the domains_router stage's router) and answered by the adapter it was routed to, then scored as the
evaluate stage scores a model.

Writes the predictions (each row with its route) and the aggregates, with the examples each adapter answered.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lab.core.cli import run_stage
from lab.core.io import read_jsonl, staged_outputs, write_json, write_jsonl
from lab.core.params import load_config
from lab.domains.routed_eval import evaluate_routed
from lab.domains.router import Router
from lab.model.runtime import resolve_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", type=Path, required=True, help="base model directory")
    parser.add_argument("--adapters-dir", type=Path, required=True, help="folder of the adapters, one per name")
    parser.add_argument("--router", type=Path, required=True, help="the router folder")
    parser.add_argument("--eval-file", type=Path, required=True, help="every domain's eval examples (.jsonl)")
    parser.add_argument("--predictions", type=Path, required=True, help="output: per-example rows (.jsonl)")
    parser.add_argument("--metrics", type=Path, required=True, help="output: the aggregates (.json)")
    args = parser.parse_args()
    with staged_outputs(args.predictions, args.metrics) as (predictions_path, metrics_path):
        config, router = load_config(), Router.load(args.router)
        rows, metrics = evaluate_routed(config, args.base, args.adapters_dir, router, read_jsonl(args.eval_file),
                                        resolve_device())
        write_jsonl(predictions_path, rows)
        write_json(metrics_path, metrics)
    print(f"evaluate routed: rouge1 {metrics['rouge1']} rouge2 {metrics['rouge2']} rougeL {metrics['rougeL']}, "
          f"routes {metrics['routes']}")


if __name__ == "__main__":
    run_stage(main)
