"""What the train stage records of a run in metrics/train.json: the loss figures, the step whose adapter it
keeps and why it stopped, and what actually ran (runtime and training choices)."""

from __future__ import annotations

from typing import Any

from lab.core.config import TrainConfig, TrainingSetup, as_dict
from lab.core.reproducibility import cpu_threads
from lab.model.runtime import Runtime, peak_memory_gib, world_size
from lab.train.distributed import batch_plan
from lab.train.microbatch import planned


def train_metrics(figures: dict[str, Any], token_stats: dict[str, Any], setup: TrainingSetup, runtime: Runtime,
                  attention: str) -> dict[str, Any]:
    """metrics/train.json's content from the trainer's figures (lab.train.fine_tune.run_training), the token counts
    and what ran."""
    figures = dict(figures)
    tokens_seen = int(token_stats["train"]["tokens"] * setup.train.epochs)
    # This session's share of the tokens (by steps, after a resume) over this session's time.
    session_share = 1 - (figures["resumed_from_step"] or 0) / max(figures["steps"], 1)
    steady = figures.pop("steady_steps_per_s")
    micro_batches = figures.pop("micro_batches")
    metrics = {
        **figures,
        "tokens_seen": tokens_seen,
        # After the first steps' warm-up, at the run's mean tokens per optimizer step (every process's).
        "steady_tokens_per_s": round(steady * tokens_seen / figures["planned_steps"], 1) if steady else None,
        "tokens_per_s": round(tokens_seen * session_share / figures["runtime_s"], 1) if figures["runtime_s"] else None,
        "peak_memory_gib": peak_memory_gib(runtime.device),
        "data": token_stats["train"],
        "validation_data": token_stats["validation"],
        "ran": {**what_ran(setup.train, runtime), "attention": attention},
        "micro_batches": micro_batches,
        "distributed": batch_plan(setup.train, setup.lr, world_size()).as_dict(),
    }
    return metrics


def loss_figures(log_history: list[dict[str, Any]], training_loss: float) -> dict[str, Any]:
    """Mean loss over the run and over its first and last quarters of logged steps."""
    losses = [entry["loss"] for entry in log_history if "loss" in entry]
    # Single-step losses are noisy at batch 8: compare the means of the first and last quarters.
    quarter = max(1, len(losses) // 4)
    return {
        "train_loss": round(training_loss, 4),
        "loss_first_quarter": round(sum(losses[:quarter]) / quarter, 4) if losses else None,
        "loss_last_quarter": round(sum(losses[-quarter:]) / quarter, 4) if losses else None,
    }


def selection(state: Any, validated: bool) -> dict[str, Any]:
    """Which step's adapter the stage keeps, its validation loss, and why training stopped."""
    history = [(entry["step"], entry["eval_loss"]) for entry in state.log_history if "eval_loss" in entry]
    if not validated or not history:
        return {"best_step": state.global_step, "best_validation_loss": None, "validation_losses": [],
                "stop_reason": "completed" if state.global_step >= state.max_steps else "stopped"}
    best_step, best_loss = min(history, key=lambda item: (item[1], item[0]))
    return {"best_step": best_step, "best_validation_loss": round(best_loss, 4),
            "validation_losses": [{"step": step, "loss": round(loss, 4)} for step, loss in history],
            "stop_reason": "early_stopping" if state.global_step < state.max_steps else "completed"}


def what_ran(train: TrainConfig, runtime: Runtime) -> dict[str, Any]:
    """The resolved runtime and the training choices, for the metrics."""
    checkpointing: str | bool = train.gradient_checkpointing
    if train.gradient_checkpointing and runtime.backend == "unsloth":
        checkpointing = train.checkpointing_mode
    warmup = (f"{int(train.warmup_steps)} steps" if train.warmup_steps >= 1 or train.warmup_steps == 0
              else f"{train.warmup_steps:.1%} of steps")
    return {**runtime.as_dict(), "optimizer": train.optimizer, "lr_scheduler": train.lr_scheduler,
            "warmup": warmup, "max_grad_norm": train.max_grad_norm, "padding_free": train.padding_free,
            "max_seq_length": train.max_seq_length, "long_sequences": train.long_sequences,
            "group_by_length": train.group_by_length, "gradient_checkpointing": checkpointing,
            "micro_batch_tokens": train.micro_batch_tokens if planned(train) else None,
            "lora": {**as_dict(train.lora), "modules": train.lora.modules()},
            **({"cpu_threads": cpu_threads()} if runtime.device == "cpu" else {})}
