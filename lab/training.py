"""LoRA supervised fine-tuning with trl's SFTTrainer: the trainer config, the run with one
progress bar, and `fine_tune`, the whole train stage short of writing its outputs.

transformers, trl and dvclive are imported inside functions: with the unsloth backend, Unsloth
must be imported (by lab.runtime.resolve_runtime) before transformers so that its patches apply.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lab.backends import load_trainable_model
from lab.config import LabConfig, as_dict
from lab.masking import tokenize_for_training
from lab.modeling import no_library_progress_bars
from lab.runtime import Runtime, peak_memory_gib, resolve_runtime

# trl logs this on every padding-free run whose attention is not FlashAttention.
PADDING_FREE_WARNING = "Padding-free training is enabled, but the attention implementation is not set to a supported"
_TRL_SFT_LOGGER = "trl.trainer.sft_trainer"


def sft_config(config: LabConfig, runtime: Runtime, output_dir: Path) -> Any:
    """trl's SFTConfig from the lab's params; every default that matters is set explicitly.

    train.group_by_length draws each optimizer step's examples from a pool of similar lengths
    (transformers' LengthGroupedSampler), which cuts the pad tokens of padded batches; it changes
    the data order, so it is off unless asked for."""
    from trl import SFTConfig

    train = config.train
    return SFTConfig(
        output_dir=str(output_dir),
        per_device_train_batch_size=train.batch_size,
        gradient_accumulation_steps=train.grad_accum,
        num_train_epochs=train.epochs,
        learning_rate=config.lr,
        warmup_steps=train.warmup_steps,
        weight_decay=train.weight_decay,
        lr_scheduler_type=train.lr_scheduler,
        optim=train.optimizer,
        seed=config.seed,
        data_seed=config.seed,
        logging_steps=train.logging_steps,
        save_strategy="no",
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
        # The lab draws its own bar (progress_callback); run_training drops the per-step printer.
        disable_tqdm=True,
        train_sampling_strategy="group_by_length" if train.group_by_length else "random",
    )


def progress_callback() -> Any:
    """A TrainerCallback drawing one tqdm bar on stderr: steps, ETA, the last logged loss and the
    tokens/s so far (from trl's running `num_tokens`). Like every lab bar, it shows on a terminal
    only (tqdm's disable=None), so logs and captured output stay clean."""
    from tqdm import tqdm
    from transformers import TrainerCallback

    class TrainingProgress(TrainerCallback):
        """One bar for the whole run, instead of a printed dict per logging step."""

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            """Open the bar at the run's optimizer-step count; tokens/s counts from here."""
            self.started = time.perf_counter()
            self.bar = tqdm(total=state.max_steps, desc="train", unit="step", file=sys.stderr, disable=None,
                            dynamic_ncols=True)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            """Advance to the trainer's step count (one optimizer step, all accumulation included)."""
            self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
            """Show the loss just logged, and the tokens/s since the run began."""
            if not logs or "loss" not in logs:
                return  # the end-of-run summary: the stage prints its own line
            postfix = {"loss": f"{logs['loss']:.4f}"}
            if "num_tokens" in logs:
                postfix["tokens/s"] = f"{logs['num_tokens'] / (time.perf_counter() - self.started):,.0f}"
            self.bar.set_postfix(postfix)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            """Close the bar, leaving its final state on screen."""
            self.bar.close()

    return TrainingProgress()


def _is_padding_free_warning(record: logging.LogRecord) -> bool:
    """Logging filter: False (drop) for trl's padding-free/FlashAttention warning only."""
    return PADDING_FREE_WARNING not in record.getMessage()  # accelerate prefixes "[RANK 0] "


def _silence_padding_free_warning(model: Any, runtime: Runtime) -> None:
    """Drop trl's padding-free warning where a test proves that batching exact.

    With SDPA, a padding-free batch carries restarting position ids and no attention mask, and
    transformers builds a block-diagonal causal mask from those ids: no example attends to another.
    tests/test_training.py proves it on the real model (the padded loss, and a different one for
    the same tokens as one sequence); tests/test_gpu_training.py does the same through Unsloth.
    Any other attention implementation keeps the warning."""
    if runtime.backend == "unsloth" or getattr(model.config, "_attn_implementation", None) == "sdpa":
        logging.getLogger(_TRL_SFT_LOGGER).addFilter(_is_padding_free_warning)


def run_training(model: Any, tokenizer: Any, rows: list[dict], config: LabConfig, runtime: Runtime,
                 work_dir: Path, callbacks: list[Any]) -> dict[str, Any]:
    """Train with one progress bar and return the trainer's figures; the caller saves the adapter."""
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import SFTTrainer

    _silence_padding_free_warning(model, runtime)
    trainer = SFTTrainer(
        model=model, args=sft_config(config, runtime, work_dir),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer, callbacks=[*callbacks, progress_callback()],
    )
    # disable_tqdm=True swaps transformers' bars for PrinterCallback, which prints every log dict.
    trainer.remove_callback(PrinterCallback)
    started = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - started
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    # Single-step losses are noisy at batch 8: compare the means of the first and last quarters.
    quarter = max(1, len(losses) // 4)
    return {
        "train_loss": round(output.training_loss, 4),
        "loss_first_quarter": round(sum(losses[:quarter]) / quarter, 4) if losses else None,
        "loss_last_quarter": round(sum(losses[-quarter:]) / quarter, 4) if losses else None,
        "steps": trainer.state.global_step,
        "runtime_s": round(seconds, 1),
    }


def fine_tune(config: LabConfig, base_dir: Path, conversations: list[dict[str, Any]],
              live_dir: Path) -> tuple[Any, Any, dict[str, Any]]:
    """LoRA fine-tuning of the base model on `conversations`, the loss curve logged to `live_dir`
    for `dvc plots`; returns the trained model, its tokenizer and the train metrics."""
    runtime = resolve_runtime(config.train)  # with unsloth, imports it before transformers
    from transformers.integrations import DVCLiveCallback

    from dvclive import Live

    with no_library_progress_bars(), tempfile.TemporaryDirectory() as work_dir:
        model, tokenizer = load_trainable_model(base_dir, config, runtime)
        rows, token_stats = tokenize_for_training(tokenizer, conversations, config.train.max_seq_length)
        live = Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=False)
        figures = run_training(model, tokenizer, rows, config, runtime, Path(work_dir),
                               callbacks=[DVCLiveCallback(live=live)])
    tokens_seen = int(token_stats["tokens"] * config.train.epochs)
    metrics = {
        **figures,
        "tokens_seen": tokens_seen,
        "tokens_per_s": round(tokens_seen / figures["runtime_s"], 1) if figures["runtime_s"] else None,
        "peak_memory_gib": peak_memory_gib(runtime.device),
        "data": token_stats,
        "ran": _what_ran(config, runtime),
    }
    return model, tokenizer, metrics


def _what_ran(config: LabConfig, runtime: Runtime) -> dict[str, Any]:
    """The resolved runtime and the training choices, for the metrics."""
    train = config.train
    checkpointing: str | bool = train.gradient_checkpointing
    if train.gradient_checkpointing and runtime.backend == "unsloth":
        checkpointing = train.checkpointing_mode
    return {**runtime.as_dict(), "optimizer": train.optimizer, "padding_free": train.padding_free,
            "group_by_length": train.group_by_length, "gradient_checkpointing": checkpointing,
            "lora": as_dict(train.lora)}
