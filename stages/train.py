"""Stage train: LoRA supervised fine-tuning of the base model on data/train.jsonl.

Writes the adapter and tokenizer to models/adapter, the loss curve to dvclive/ and
metrics/train.json (losses, steps, tokens, speed, peak memory, and what actually ran).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from lab.cli import run_stage
from lab.config import LabConfig, as_dict, load_config
from lab.io import atomic_dir, read_jsonl, write_json
from lab.modeling import resolve_runtime


def train(config: LabConfig, base_dir: Path, train_file: Path, adapter_dir: Path, live_dir: Path) -> dict:
    """Fine-tune with LoRA and save the adapter; return the train metrics."""
    # 1. Resolve what runs here; with unsloth this imports it before transformers.
    runtime = resolve_runtime(config.train)
    from transformers.integrations import DVCLiveCallback

    from dvclive import Live
    from lab.training import load_trainable_model, peak_memory_gib, run_training, tokenize_for_training

    # 2. Model with LoRA adapters, and the tokenized conversations.
    model, tokenizer = load_trainable_model(base_dir, config, runtime)
    rows, token_stats = tokenize_for_training(tokenizer, read_jsonl(train_file), config.train.max_seq_length)

    # 3. Train, logging the loss curve for `dvc plots`.
    live = Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=False)
    with tempfile.TemporaryDirectory() as work_dir:
        figures = run_training(model, tokenizer, rows, config, runtime, Path(work_dir),
                               callbacks=[DVCLiveCallback(live=live)])

    # 4. Save the adapter atomically, and report.
    with atomic_dir(adapter_dir) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    tokens_seen = token_stats["tokens"] * config.train.epochs
    return {
        **figures,
        "tokens_seen": int(tokens_seen),
        "tokens_per_s": round(tokens_seen / figures["runtime_s"], 1),
        "peak_memory_gib": peak_memory_gib(runtime.device),
        "data": token_stats,
        "ran": {**runtime.as_dict(), "optimizer": config.train.optimizer,
                "padding_free": config.train.padding_free, "group_by_length": config.train.group_by_length,
                "gradient_checkpointing": (config.train.checkpointing_mode if config.train.gradient_checkpointing
                                           and runtime.backend == "unsloth" else config.train.gradient_checkpointing),
                "lora": as_dict(config.train.lora)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", type=Path, default=Path("models/base"))
    parser.add_argument("--train-file", type=Path, default=Path("data/train.jsonl"))
    parser.add_argument("--adapter", type=Path, default=Path("models/adapter"))
    parser.add_argument("--live-dir", type=Path, default=Path("dvclive"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/train.json"))
    args = parser.parse_args()
    metrics = train(load_config(), args.base, args.train_file, args.adapter, args.live_dir)
    write_json(args.metrics, metrics)
    print(f"train: {metrics['steps']} steps, loss {metrics['loss_first_quarter']} -> {metrics['loss_last_quarter']}, "
          f"{metrics['tokens_per_s']} tokens/s on {metrics['ran']['device']}")


if __name__ == "__main__":
    run_stage(main)
