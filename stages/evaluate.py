"""Stage evaluate: greedy generation on the eval sample and ROUGE against the references.

`python stages/evaluate.py base` scores the base model, `... finetuned` the base model with
the LoRA adapter merged. Two DVC stages run them, so a new training run reuses the cached
base evaluation. Writes metrics/predictions/<model>.jsonl (per example) and
metrics/eval_<model>.json (aggregates). Scores per example: ROUGE precision, recall and
F-measure, and (param evaluate.semantic_similarity) embedding cosine similarity.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lab.cli import run_stage
from lab.config import LabConfig, load_config
from lab.generation import generate
from lab.io import read_jsonl, write_json, write_jsonl
from lab.modeling import load_for_inference, resolve_device
from lab.scoring import aggregate, rouge_scores
from lab.semantic import EMBEDDING_MODEL, semantic_similarity

MODELS = ("base", "finetuned")


def evaluate(config: LabConfig, model: Any, tokenizer: Any, examples: list[dict]) -> tuple[list[dict], dict]:
    """Generate for every eval example, score it, and aggregate; returns (rows, metrics)."""
    ev = config.evaluate
    outputs, timing = generate(model, tokenizer, [e["input"] for e in examples], ev.batch_size,
                               ev.max_new_tokens, ev.max_input_tokens, decode=ev.decode, cuda_graph=ev.cuda_graph)
    predictions, references = [o["prediction"] for o in outputs], [e["reference"] for e in examples]
    scores = rouge_scores(predictions, references, ev.rouge_use_stemmer, tuple(ev.rouge_types), ev.rouge_tokenizer)
    if ev.semantic_similarity:
        for score, similarity in zip(scores, semantic_similarity(predictions, references), strict=True):
            score["semantic"] = similarity
    rows = [{**example, **output, "scores": score} for example, output, score in zip(examples, outputs, scores,
                                                                                      strict=True)]
    metrics = aggregate(rows)
    metrics["generation"] = {**timing, "batch_size": ev.batch_size, "max_new_tokens": ev.max_new_tokens,
                             "greedy": True}
    metrics["rouge_config"] = {"types": ev.rouge_types, "use_stemmer": ev.rouge_use_stemmer,
                               "tokenizer": ev.rouge_tokenizer}
    metrics["semantic_model"] = EMBEDDING_MODEL if ev.semantic_similarity else None
    return rows, metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", choices=MODELS)
    parser.add_argument("--base", type=Path, default=Path("models/base"))
    parser.add_argument("--adapter", type=Path, default=Path("models/adapter"))
    parser.add_argument("--eval-file", type=Path, default=Path("data/eval.jsonl"))
    parser.add_argument("--out-dir", type=Path, default=Path("metrics"))
    args = parser.parse_args()
    config = load_config()
    device = resolve_device()
    model, tokenizer = load_for_inference(args.base, args.adapter if args.model == "finetuned" else None, device)
    rows, metrics = evaluate(config, model, tokenizer, read_jsonl(args.eval_file))
    metrics = {"model": args.model, "device": device, **metrics}
    write_jsonl(args.out_dir / "predictions" / f"{args.model}.jsonl", rows)
    write_json(args.out_dir / f"eval_{args.model}.json", metrics)
    print(f"evaluate {args.model}: rouge1 {metrics['rouge1']} rouge2 {metrics['rouge2']} rougeL {metrics['rougeL']} "
          f"({metrics['generation']['tokens_per_s']} new tokens/s)")


if __name__ == "__main__":
    run_stage(main)
