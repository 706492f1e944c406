"""LoRA supervised fine-tuning with trl's SFTTrainer: the trainer config, the run with one
progress bar, and `fine_tune`, the whole train stage short of writing its outputs. Checkpoints go to
a folder that outlives a killed run, which the next run with the same params resumes from
(lab.train.checkpoints).

transformers, trl and dvclive are imported inside functions: with the unsloth backend, Unsloth
must be imported (by lab.model.runtime.resolve_runtime) before transformers so that its patches apply.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from lab.core.config import LabConfig, TrainConfig, as_dict
from lab.core.reproducibility import cpu_threads, full_determinism
from lab.model.loading import no_library_progress_bars
from lab.model.runtime import Runtime, out_of_memory_advice, peak_memory_gib, resolve_runtime
from lab.train.attention import ATTENTION_NAME, attention_path
from lab.train.backends import check_chat_template, check_lora_targets, load_trainable_model
from lab.train.checkpoints import (
    checkpoint_step,
    live_callback,
    loss_before,
    mark_finished,
    prepare_checkpoints,
    resume_point,
    run_fingerprint,
    save_args,
)
from lab.train.distributed import batch_plan, is_main_process, main_process_first, world_size
from lab.train.masking import tokenize_for_training
from lab.train.microbatch import plan_budget, planned
from lab.train.progress import progress_callback
from lab.train.trainer import lab_trainer

# trl logs this on every padding-free run whose attention is not FlashAttention.
PADDING_FREE_WARNING = "Padding-free training is enabled, but the attention implementation is not set to a supported"
_TRL_SFT_LOGGER = "trl.trainer.sft_trainer"


def sft_config(config: LabConfig, runtime: Runtime, output_dir: Path, validate: bool = False,
               resumable: bool = False) -> Any:
    """trl's SFTConfig from the lab's params; every default that matters is set explicitly.

    train.group_by_length draws each optimizer step's examples from a pool of similar lengths
    (transformers' LengthGroupedSampler), which cuts the pad tokens of padded batches; it changes
    the data order, so it is off unless asked for. With `validate`, the validation loss is computed
    every train.eval_steps, each of those steps' adapter is saved, and the best one (lowest
    validation loss) is loaded back at the end: model selection on the validation split only.
    `resumable` saves full checkpoints (adapter, optimizer, scheduler, RNG states, callback states)
    every train.eval_steps, with or without validation, so that a killed run can resume."""
    from trl import SFTConfig

    train = config.train
    plan = batch_plan(train, config.lr, world_size())  # one process: grad_accum and lr as set
    # With a token budget the trainer collates each optimizer step's examples as one batch, which
    # lab.train.trainer splits into forward passes: the same examples per step, in the same order.
    whole_step = planned(train)
    per_device = train.batch_size * plan.grad_accum_per_process if whole_step else train.batch_size
    return SFTConfig(
        output_dir=str(output_dir),
        per_device_train_batch_size=per_device,
        # On CPU, validation batches as large as a planned step's (fewer, larger products: 4 passes of 8
        # take well under 16 of 2); on a GPU the lab's batch_size, since a token budget that fits a small
        # GPU's training step need not fit a step's worth of examples' logits at once.
        per_device_eval_batch_size=per_device if runtime.device == "cpu" else train.batch_size,
        gradient_accumulation_steps=1 if whole_step else plan.grad_accum_per_process,
        num_train_epochs=train.epochs,
        learning_rate=plan.lr,
        # transformers reads a float in [0, 1) as a share of all steps, a whole number as steps.
        warmup_steps=train.warmup_steps if train.warmup_steps < 1 else int(train.warmup_steps),
        weight_decay=train.weight_decay,
        lr_scheduler_type=train.lr_scheduler,
        lr_scheduler_kwargs={"num_cycles": train.scheduler_cycles} if train.lr_scheduler == "cosine_with_restarts"
        else None,
        max_grad_norm=train.max_grad_norm,
        optim=train.optimizer,
        seed=config.train_seed,
        data_seed=config.train_seed,
        full_determinism=full_determinism(runtime.device),
        logging_steps=train.logging_steps,
        eval_strategy="steps" if validate else "no",
        eval_steps=train.eval_steps,
        **save_args(train.eval_steps, validate, resumable),
        load_best_model_at_end=validate,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        report_to="none",
        # Inputs are truncated before training, which padding-free batching requires.
        max_length=None,
        padding_free=train.padding_free,
        # The unsloth backend brings its own (cheaper) checkpointing through get_peft_model.
        gradient_checkpointing=train.gradient_checkpointing and runtime.backend == "hf",
        bf16=runtime.dtype == "bfloat16",
        fp16=runtime.dtype == "float16",
        use_cpu=runtime.device == "cpu",
        dataloader_num_workers=0,
        # Every LoRA weight gets a gradient at every step: DDP need not search the graph for unused ones.
        ddp_find_unused_parameters=False,
        # The lab draws its own bar (progress_callback); run_training drops the per-step printer.
        disable_tqdm=True,
        train_sampling_strategy=_sampling_strategy(config),
    )


def _sampling_strategy(config: LabConfig) -> str:
    """transformers' train sampler: a curriculum (data.order) is read in file order (SequentialSampler,
    every epoch the same order), else the rows are drawn in a seeded random order (RandomSampler), or
    by similar lengths (train.group_by_length; lab.core.config refuses it with a curriculum)."""
    if config.data.order == "curriculum":
        return "sequential"
    return "group_by_length" if config.train.group_by_length else "random"


def _is_padding_free_warning(record: logging.LogRecord) -> bool:
    """Logging filter: False (drop) for trl's padding-free/FlashAttention warning only."""
    return PADDING_FREE_WARNING not in record.getMessage()  # accelerate prefixes "[RANK 0] "


def _silence_padding_free_warning(model: Any, runtime: Runtime) -> None:
    """Drop trl's padding-free warning where a test proves that batching exact.

    A padding-free batch carries restarting position ids and no attention mask: lab.train.attention cuts
    the row at those restarts (and transformers' SDPA would build a block-diagonal causal mask from
    them), so no example attends to another. tests/test_training.py proves it on the real model (the
    padded loss, and a different one for the same tokens as one sequence); tests/test_gpu_training.py
    does the same through Unsloth. Any other attention implementation keeps the warning."""
    implementation = getattr(model.config, "_attn_implementation", None)
    if runtime.backend == "unsloth" or implementation in ("sdpa", ATTENTION_NAME):
        logging.getLogger(_TRL_SFT_LOGGER).addFilter(_is_padding_free_warning)


def run_training(model: Any, tokenizer: Any, rows: list[dict], validation_rows: list[dict], config: LabConfig,
                 runtime: Runtime, checkpoint_dir: Path, callbacks: list[Any],
                 resume_from: Path | None) -> dict[str, Any]:
    """Train with one progress bar, checkpoints in `checkpoint_dir` (resuming from `resume_from`
    when given), and return the trainer's figures for the whole run; the caller saves the adapter.

    With validation rows, the model holds the best validation step's adapter when this returns
    (and training stops early after train.early_stopping_patience validations without a better
    loss, when that is set)."""
    from datasets import Dataset
    from transformers import EarlyStoppingCallback, PrinterCallback

    _silence_padding_free_warning(model, runtime)
    patience = config.train.early_stopping_patience
    stopping = [EarlyStoppingCallback(early_stopping_patience=patience)] if validation_rows and patience else []
    progress = progress_callback()
    trainer = lab_trainer(
        plan_budget(config.train, model, runtime),
        model=model, args=sft_config(config, runtime, checkpoint_dir, validate=bool(validation_rows), resumable=True),
        train_dataset=Dataset.from_list(rows),
        eval_dataset=Dataset.from_list(validation_rows) if validation_rows else None,
        processing_class=tokenizer, callbacks=[*callbacks, *stopping, progress],
    )
    # disable_tqdm=True swaps transformers' bars for PrinterCallback, which prints every log dict.
    trainer.remove_callback(PrinterCallback)
    started = time.perf_counter()
    with out_of_memory_advice("training", *_training_memory_advice(config, rows)):
        output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    seconds = time.perf_counter() - started
    state = trainer.state  # after a resume, its log history starts with the checkpoint's
    resumed_step = checkpoint_step(resume_from) if resume_from else 0
    # The trainer's training_loss sums this session's steps only (over all steps).
    training_loss = output.training_loss + loss_before(state.log_history, resumed_step) / max(state.global_step, 1)
    return {**_loss_figures(state.log_history, training_loss), **_selection(state, bool(validation_rows)),
            "steps": state.global_step, "resumed_from_step": resumed_step if resume_from else None,
            "runtime_s": round(seconds, 1), "steady_steps_per_s": progress.steady_steps_per_s(),
            "planned_steps": state.max_steps, "micro_batches": trainer.micro_batches()}


def _training_memory_advice(config: LabConfig, rows: list[dict]) -> tuple[str, list[str]]:
    """The shape of a training micro-batch and the params that shrink its memory, for an out-of-memory error."""
    train = config.train
    longest = max((len(row["input_ids"]) for row in rows), default=0)
    shape = (f"batch size {train.batch_size} (train.batch_size) with examples of up to {longest} tokens "
             f"(train.max_seq_length {train.max_seq_length})")
    remedies = [f"lower train.batch_size (raising train.grad_accum from {train.grad_accum} keeps the effective batch)",
                "lower train.max_seq_length (longer examples are truncated)"]
    if planned(train):  # the forward pass holds up to the token budget, not batch_size examples
        remedies.insert(0, f"lower train.micro_batch_tokens (now {train.micro_batch_tokens}; the tokens of one "
                           "forward pass)")
    if not train.gradient_checkpointing:
        remedies.append("set train.gradient_checkpointing: true (activations recomputed, not kept)")
    return shape, remedies


def _loss_figures(log_history: list[dict[str, Any]], training_loss: float) -> dict[str, Any]:
    """Mean loss over the run and over its first and last quarters of logged steps."""
    losses = [entry["loss"] for entry in log_history if "loss" in entry]
    # Single-step losses are noisy at batch 8: compare the means of the first and last quarters.
    quarter = max(1, len(losses) // 4)
    return {
        "train_loss": round(training_loss, 4),
        "loss_first_quarter": round(sum(losses[:quarter]) / quarter, 4) if losses else None,
        "loss_last_quarter": round(sum(losses[-quarter:]) / quarter, 4) if losses else None,
    }


def _selection(state: Any, validated: bool) -> dict[str, Any]:
    """Which step's adapter the stage keeps, its validation loss, and why training stopped."""
    history = [(entry["step"], entry["eval_loss"]) for entry in state.log_history if "eval_loss" in entry]
    if not validated or not history:
        return {"best_step": state.global_step, "best_validation_loss": None, "validation_losses": [],
                "stop_reason": "completed" if state.global_step >= state.max_steps else "stopped"}
    best_step, best_loss = min(history, key=lambda item: (item[1], item[0]))
    return {"best_step": best_step, "best_validation_loss": round(best_loss, 4),
            "validation_losses": [{"step": step, "loss": round(loss, 4)} for step, loss in history],
            "stop_reason": "early_stopping" if state.global_step < state.max_steps else "completed"}


def fine_tune(config: LabConfig, base_dir: Path, conversations: list[dict[str, Any]],
              validation: list[dict[str, Any]], live_dir: Path | None,
              checkpoint_dir: Path) -> tuple[Any, Any, dict[str, Any]]:
    """LoRA fine-tuning of the base model on `conversations`, the loss curves (train, and
    validation on `validation`) logged to `live_dir` for `dvc plots`, checkpoints in
    `checkpoint_dir` (a killed run of the same params, data and base model resumes from there);
    returns the model holding the best validation step's adapter (the last step's without
    validation), its tokenizer and the train metrics.

    In a data-parallel run (lab.train.distributed) every process calls this; only the first logs the
    curves (the others pass live_dir None) and marks the checkpoints finished."""
    runtime = resolve_runtime(config.train)  # with unsloth, imports it before transformers
    check_chat_template(config, runtime)
    check_lora_targets(base_dir, config.train.lora, config.model.trust_remote_code)
    from dvclive import Live

    fingerprint = run_fingerprint(config, runtime, base_dir, conversations, validation)
    with main_process_first():  # the first process clears stale checkpoints before the others read them
        resume_from = (prepare_checkpoints(checkpoint_dir, fingerprint) if is_main_process()
                       else resume_point(checkpoint_dir, fingerprint))
    with no_library_progress_bars():
        model, tokenizer = load_trainable_model(base_dir, config, runtime)
        rows, validation_rows, token_stats = tokenize_splits(tokenizer, conversations, validation, config.train)
        callbacks = [live_callback(Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=False))] if live_dir else []
        figures = run_training(model, tokenizer, rows, validation_rows, config, runtime, checkpoint_dir,
                               callbacks=callbacks, resume_from=resume_from)
    if is_main_process():
        mark_finished(checkpoint_dir, fingerprint)
    tokens_seen = int(token_stats["train"]["tokens"] * config.train.epochs)
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
        "ran": {**_what_ran(config, runtime), "attention": attention_path(model, runtime.backend, runtime.device)},
        "micro_batches": micro_batches,
        "distributed": batch_plan(config.train, config.lr, world_size()).as_dict(),
    }
    return model, tokenizer, metrics


def tokenize_splits(tokenizer: Any, conversations: list[dict[str, Any]], validation: list[dict[str, Any]],
                    train: TrainConfig) -> tuple[list[dict], list[dict], dict[str, dict[str, int] | None]]:
    """The training and validation rows tokenized and fitted to train.max_seq_length by
    train.long_sequences (lab.train.masking), and the counts of each (validation: None without one)."""
    rows, stats = tokenize_for_training(tokenizer, conversations, train.max_seq_length, train.long_sequences)
    validation_rows, validation_stats = (
        tokenize_for_training(tokenizer, validation, train.max_seq_length, train.long_sequences, "validation")
        if validation else ([], None))
    return rows, validation_rows, {"train": stats, "validation": validation_stats}


def _what_ran(config: LabConfig, runtime: Runtime) -> dict[str, Any]:
    """The resolved runtime and the training choices, for the metrics."""
    train = config.train
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
