"""Stage train: LoRA supervised fine-tuning of the base model on the train split.

Writes the adapter and tokenizer, the loss curve (dvclive) and the train metrics: losses, steps,
tokens, speed, peak memory, and what actually ran. Paths come from dvc.yaml.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lab.cli import run_stage
from lab.config import load_config
from lab.io import atomic_dir, read_jsonl, write_json
from lab.training import fine_tune


def main() -> None:
    """Fine-tune, save the adapter atomically, write the metrics, print one line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", type=Path, required=True, help="base model directory")
    parser.add_argument("--train-file", type=Path, required=True, help="train split (.jsonl)")
    parser.add_argument("--validation-file", type=Path, required=True, help="validation split (.jsonl)")
    parser.add_argument("--adapter", type=Path, required=True, help="output: LoRA adapter directory")
    parser.add_argument("--live-dir", type=Path, required=True, help="output: dvclive directory")
    parser.add_argument("--metrics", type=Path, required=True, help="output: train metrics (.json)")
    args = parser.parse_args()
    config = load_config()
    model, tokenizer, metrics = fine_tune(config, args.base, read_jsonl(args.train_file),
                                          read_jsonl(args.validation_file), args.live_dir)
    with atomic_dir(args.adapter) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    write_json(args.metrics, metrics)
    print(f"train: {metrics['steps']} steps ({metrics['stop_reason']}), loss {metrics['loss_first_quarter']} -> "
          f"{metrics['loss_last_quarter']}, best validation loss {metrics['best_validation_loss']} at step "
          f"{metrics['best_step']}, {metrics['tokens_per_s']} tokens/s on {metrics['ran']['device']} -> {args.adapter}")


if __name__ == "__main__":
    run_stage(main)
