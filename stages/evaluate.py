"""Stage evaluate: greedy generation on the eval sample, scored against the references.

`evaluate.py base` scores the base model, `evaluate.py finetuned --adapter DIR` the base with the
LoRA adapter merged. Two DVC stages run them, so a new training run reuses the cached base
evaluation. Writes the predictions file (per example: ROUGE precision, recall and
F-measure, semantic similarity where evaluate.semantic_similarity is on, and the format metrics of
data.answer_format, null where one does not apply) and the metrics file (the aggregates;
each format metric as its mean and the count of examples it covers). Paths come from dvc.yaml.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lab.core.cli import run_stage
from lab.core.host_memory import keep_freed_memory
from lab.core.io import read_jsonl, staged_outputs, write_json, write_jsonl
from lab.core.params import load_config
from lab.eval.evaluation import base_quantization, evaluate
from lab.model.loading import load_for_inference
from lab.model.runtime import resolve_device


def main() -> None:
    """Load the model, evaluate it, write predictions and metrics, print one line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", choices=("base", "finetuned"))
    parser.add_argument("--base", type=Path, required=True, help="base model directory")
    parser.add_argument("--adapter", type=Path, help="LoRA adapter directory (finetuned only)")
    parser.add_argument("--eval-file", type=Path, required=True, help="eval sample (.jsonl)")
    parser.add_argument("--predictions", type=Path, required=True, help="output: per-example rows (.jsonl)")
    parser.add_argument("--metrics", type=Path, required=True, help="output: the aggregates (.json)")
    args = parser.parse_args()
    if (args.model == "finetuned") != (args.adapter is not None):
        parser.error("--adapter is required for finetuned and not taken by base")
    keep_freed_memory()  # prefill and decode reallocate their tensors: keep their pages mapped (lab.core.host_memory)
    with staged_outputs(args.predictions, args.metrics) as (predictions_path, metrics_path):
        config = load_config()
        quantization = base_quantization(config.evaluation, finetuned=args.model == "finetuned")
        model, tokenizer = load_for_inference(args.base, args.adapter, resolve_device(), quantization,
                                              config.model.trust_remote_code)
        rows, metrics = evaluate(config.evaluation, model, tokenizer, read_jsonl(args.eval_file))
        metrics = {"model": args.model, "base_quantization": quantization, **metrics}
        write_jsonl(predictions_path, rows)
        write_json(metrics_path, metrics)
    print(f"evaluate {args.model}: rouge1 {metrics['rouge1']} rouge2 {metrics['rouge2']} rougeL {metrics['rougeL']} "
          f"({metrics['generation']['tokens_per_s']} new tokens/s on {metrics['device']})")


if __name__ == "__main__":
    run_stage(main)
