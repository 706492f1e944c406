"""trl's SFTConfig from the lab's params: every trainer argument that matters, set explicitly.

trl is imported inside the function: with the unsloth backend, Unsloth must be imported (by
lab.model.runtime.resolve_runtime) before transformers so that its patches apply.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.core.config import TrainingSetup
from lab.core.reproducibility import full_determinism
from lab.model.runtime import Runtime, world_size
from lab.train.checkpoints import save_args
from lab.train.distributed import batch_plan
from lab.train.microbatch import planned


def sft_config(setup: TrainingSetup, runtime: Runtime, output_dir: Path, validate: bool = False,
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

    train = setup.train
    return SFTConfig(
        output_dir=str(output_dir),
        **_batch_arguments(setup, runtime),
        num_train_epochs=train.epochs,
        # transformers reads a float in [0, 1) as a share of all steps, a whole number as steps.
        warmup_steps=train.warmup_steps if train.warmup_steps < 1 else int(train.warmup_steps),
        weight_decay=train.weight_decay,
        lr_scheduler_type=train.lr_scheduler,
        lr_scheduler_kwargs={"num_cycles": train.scheduler_cycles} if train.lr_scheduler == "cosine_with_restarts"
        else None,
        max_grad_norm=train.max_grad_norm,
        optim=train.optimizer,
        seed=setup.seed,
        data_seed=setup.seed,
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
        train_sampling_strategy=_sampling_strategy(setup),
    )


def _batch_arguments(setup: TrainingSetup, runtime: Runtime) -> dict[str, Any]:
    """The batch sizes, gradient accumulation and learning rate of one process (lab.train.distributed's plan)."""
    train = setup.train
    plan = batch_plan(train, setup.lr, world_size())  # one process: grad_accum and lr as set
    # With a token budget the trainer collates each optimizer step's examples as one batch, which
    # lab.train.trainer splits into forward passes: the same examples per step, in the same order.
    whole_step = planned(train)
    per_device = train.batch_size * plan.grad_accum_per_process if whole_step else train.batch_size
    return {
        "per_device_train_batch_size": per_device,
        # On CPU, validation batches as large as a planned step's (fewer, larger products: 4 passes of 8
        # take well under 16 of 2); on a GPU the lab's batch_size, since a token budget that fits a small
        # GPU's training step need not fit a step's worth of examples' logits at once.
        "per_device_eval_batch_size": per_device if runtime.device == "cpu" else train.batch_size,
        "gradient_accumulation_steps": 1 if whole_step else plan.grad_accum_per_process,
        "learning_rate": plan.lr,
    }


def _sampling_strategy(setup: TrainingSetup) -> str:
    """transformers' train sampler: a curriculum (data.order) is read in file order (SequentialSampler,
    every epoch the same order), else the rows are drawn in a seeded random order (RandomSampler), or
    by similar lengths (train.group_by_length; lab.core.config refuses it with a curriculum)."""
    if setup.data_order == "curriculum":
        return "sequential"
    return "group_by_length" if setup.train.group_by_length else "random"
