"""LoRA supervised fine-tuning with trl's SFTTrainer: `fine_tune`, the whole train stage short of writing
its outputs, in its steps (plan, load, tokenize, train, record), then the steps' functions in that order.
Checkpoints go to a folder that outlives a killed run, which the next run with the same params resumes
from (lab.train.checkpoints).

transformers, trl and dvclive are imported inside functions: with the unsloth backend, Unsloth
must be imported (by lab.model.runtime.resolve_runtime) before transformers so that its patches apply.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from lab.core.config import LabConfig, TrainConfig, TrainingSetup
from lab.model.loading import no_library_progress_bars
from lab.model.runtime import Runtime, out_of_memory_advice, resolve_runtime
from lab.train.arguments import sft_config
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
)
from lab.train.distributed import is_main_process, main_process_first
from lab.train.masking import tokenize_for_training
from lab.train.microbatch import plan_budget, planned
from lab.train.progress import progress_callback
from lab.train.record import loss_figures, selection, train_metrics
from lab.train.trainer import lab_trainer

# trl logs this on every padding-free run whose attention is not FlashAttention.
PADDING_FREE_WARNING = "Padding-free training is enabled, but the attention implementation is not set to a supported"
_TRL_SFT_LOGGER = "trl.trainer.sft_trainer"


def fine_tune(config: LabConfig, base_dir: Path, conversations: list[dict[str, Any]],
              validation: list[dict[str, Any]], live_dir: Path | None,
              checkpoint_dir: Path) -> tuple[Any, Any, dict[str, Any]]:
    """LoRA fine-tuning of the base model on `conversations`, the loss curves (train, and
    validation on `validation`) logged to `live_dir` for `dvc plots`, checkpoints in
    `checkpoint_dir` (a killed run of the same params, data and base model resumes from there);
    returns the model holding the best validation step's adapter (the last step's without
    validation), its tokenizer and the train metrics. The caller saves the adapter.

    In a data-parallel run (lab.train.distributed) every process calls this; only the first logs the
    curves (the others pass live_dir None) and marks the checkpoints finished."""
    setup = config.training
    # 1. Plan: what runs on this machine, checked before any weight loads, and where to resume.
    runtime = resolve_runtime(setup.train)  # with unsloth, imports it before transformers
    check_chat_template(setup, runtime)
    check_lora_targets(base_dir, setup.train.lora, setup.model.trust_remote_code)
    fingerprint = run_fingerprint(config, runtime, base_dir, conversations, validation)
    with main_process_first():  # the first process clears stale checkpoints before the others read them
        resume_from = (prepare_checkpoints(checkpoint_dir, fingerprint) if is_main_process()
                       else resume_point(checkpoint_dir, fingerprint))
    with no_library_progress_bars():
        # 2. Load the base model with its LoRA adapters.
        model, tokenizer = load_trainable_model(base_dir, setup, runtime)
        # 3. Tokenize the rows to train.max_seq_length.
        rows, validation_rows, token_stats = tokenize_splits(tokenizer, conversations, validation, setup.train)
        # 4. Train, logging the curves to dvclive.
        figures = run_training(model, tokenizer, rows, validation_rows, setup, runtime, checkpoint_dir,
                               callbacks=_live_callbacks(live_dir), resume_from=resume_from)
    if is_main_process():
        mark_finished(checkpoint_dir, fingerprint)
    # 5. Record what ran and how fast.
    attention = attention_path(model, runtime.backend, runtime.device)
    return model, tokenizer, train_metrics(figures, token_stats, setup, runtime, attention)


def _live_callbacks(live_dir: Path | None) -> list[Any]:
    """dvclive's logger of the loss curves, in the process that logs them."""
    if live_dir is None:
        return []
    from dvclive import Live

    return [live_callback(Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=False))]


def tokenize_splits(tokenizer: Any, conversations: list[dict[str, Any]], validation: list[dict[str, Any]],
                    train: TrainConfig) -> tuple[list[dict], list[dict], dict[str, dict[str, int] | None]]:
    """The training and validation rows tokenized and fitted to train.max_seq_length by
    train.long_sequences (lab.train.masking), and the counts of each (validation: None without one)."""
    rows, stats = tokenize_for_training(tokenizer, conversations, train.max_seq_length, train.long_sequences)
    validation_rows, validation_stats = (
        tokenize_for_training(tokenizer, validation, train.max_seq_length, train.long_sequences, "validation")
        if validation else ([], None))
    return rows, validation_rows, {"train": stats, "validation": validation_stats}


def run_training(model: Any, tokenizer: Any, rows: list[dict], validation_rows: list[dict], setup: TrainingSetup,
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
    patience = setup.train.early_stopping_patience
    stopping = [EarlyStoppingCallback(early_stopping_patience=patience)] if validation_rows and patience else []
    progress = progress_callback()
    trainer = lab_trainer(
        plan_budget(setup.train, model, runtime),
        model=model, args=sft_config(setup, runtime, checkpoint_dir, validate=bool(validation_rows), resumable=True),
        train_dataset=Dataset.from_list(rows),
        eval_dataset=Dataset.from_list(validation_rows) if validation_rows else None,
        processing_class=tokenizer, callbacks=[*callbacks, *stopping, progress],
    )
    # disable_tqdm=True swaps transformers' bars for PrinterCallback, which prints every log dict.
    trainer.remove_callback(PrinterCallback)
    started = time.perf_counter()
    with out_of_memory_advice("training", *_training_memory_advice(setup.train, rows)):
        output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    seconds = time.perf_counter() - started
    state = trainer.state  # after a resume, its log history starts with the checkpoint's
    resumed_step = checkpoint_step(resume_from) if resume_from else 0
    # The trainer's training_loss sums this session's steps only (over all steps).
    training_loss = output.training_loss + loss_before(state.log_history, resumed_step) / max(state.global_step, 1)
    return {**loss_figures(state.log_history, training_loss), **selection(state, bool(validation_rows)),
            "steps": state.global_step, "resumed_from_step": resumed_step if resume_from else None,
            "runtime_s": round(seconds, 1), "steady_steps_per_s": progress.steady_steps_per_s(),
            "planned_steps": state.max_steps, "micro_batches": trainer.micro_batches()}


def _training_memory_advice(train: TrainConfig, rows: list[dict]) -> tuple[str, list[str]]:
    """The shape of a training micro-batch and the params that shrink its memory, for an out-of-memory error."""
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
