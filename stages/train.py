"""Stage train: LoRA supervised fine-tuning of the base model on the train split.

Writes the adapter and tokenizer, the loss curve (dvclive) and the train metrics: losses, steps,
tokens, speed, peak memory, what actually ran and the step it resumed from. Checkpoints go to a
folder DVC keeps between runs, so a killed run resumes. With train.processes above 1 it relaunches
itself through `accelerate launch`, one process per GPU (lab/train/distributed.py). Paths come from dvc.yaml.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lab.core.cli import run_stage
from lab.core.host_memory import keep_freed_memory
from lab.core.io import read_jsonl, staged_outputs, write_json
from lab.core.params import load_config
from lab.core.reproducibility import save_adapter
from lab.train.distributed import is_main_process, launched, pin_one_gpu, relaunch, resolve_processes
from lab.train.fine_tune import fine_tune


def main() -> None:
    """Fine-tune, then commit the adapter, the loss curves and the metrics together; print one line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", type=Path, required=True, help="base model directory")
    parser.add_argument("--train-file", type=Path, required=True, help="train split (.jsonl)")
    parser.add_argument("--validation-file", type=Path, required=True, help="validation split (.jsonl)")
    parser.add_argument("--adapter", type=Path, required=True, help="output: LoRA adapter directory")
    parser.add_argument("--live-dir", type=Path, required=True, help="output: dvclive directory")
    parser.add_argument("--checkpoints", type=Path, required=True,
                        help="output kept between runs: checkpoints that a rerun with the same params resumes from")
    parser.add_argument("--metrics", type=Path, required=True, help="output: train metrics (.json)")
    args = parser.parse_args()
    keep_freed_memory()  # activations are reallocated every pass: keep their pages mapped (lab/core/host_memory.py)
    config = load_config()
    processes = resolve_processes(config.train)
    if processes > 1 and not launched():
        sys.exit(relaunch(processes))  # this script again, once per GPU, through accelerate launch
    if processes == 1:
        pin_one_gpu()
    conversations, validation = read_jsonl(args.train_file), read_jsonl(args.validation_file)
    if not is_main_process():  # a data-parallel peer: it trains, the first process writes
        fine_tune(config, args.base, conversations, validation, None, args.checkpoints)
        return
    # The checkpoints are not staged: they outlive a stopped run on purpose (lab/train/checkpoints.py).
    with staged_outputs(args.adapter, args.live_dir, args.metrics) as (adapter, live_dir, metrics_path):
        model, tokenizer, metrics = fine_tune(config, args.base, conversations, validation, live_dir, args.checkpoints)
        save_adapter(model, tokenizer, adapter)
        write_json(metrics_path, metrics)
    resumed = f", resumed at step {metrics['resumed_from_step']}" if metrics["resumed_from_step"] is not None else ""
    print(f"train: {metrics['steps']} steps ({metrics['stop_reason']}{resumed}), loss {metrics['loss_first_quarter']} "
          f"-> {metrics['loss_last_quarter']}, best validation loss {metrics['best_validation_loss']} at step "
          f"{metrics['best_step']}, {metrics['tokens_per_s']} tokens/s on {metrics['ran']['device']} -> {args.adapter}")


if __name__ == "__main__":
    run_stage(main)
