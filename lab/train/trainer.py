"""The lab's SFTTrainer: trl's, with each optimizer step's examples split into forward passes by a
token budget (lab.train.microbatch) when train.micro_batch_tokens asks for it, and, with several
data-parallel processes, each step's tokens dealt out evenly among them (lab.train.rank_balance).

trl is imported inside `lab_trainer`: with the unsloth backend, Unsloth must be imported first (by
lab.model.runtime.resolve_runtime), and it replaces trl's SFTTrainer with its own, which this extends.
"""

from __future__ import annotations

import contextlib
from typing import Any

from lab.core.errors import ConfigError
from lab.train.microbatch import Budget, split_batch
from lab.train.rank_balance import balanced_train_sampler


def lab_trainer(budget: Budget | None, **kwargs: Any) -> Any:
    """An SFTTrainer built from `kwargs`. The train sampler is balanced across processes (one process:
    the Trainer's own). With a token `budget` (lab.train.microbatch.plan_budget), every training step (one
    optimizer step's examples, collated as one padding-free batch: lab.train.fine_tune.sft_config) runs as
    forward passes of at most that many tokens, gradients accumulated between them; the trainer's
    `micro_batches()` then says how the steps were split."""
    from trl import SFTTrainer

    class LabTrainer(SFTTrainer):
        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            dataset = self.train_dataset if train_dataset is None else train_dataset
            return balanced_train_sampler(super()._get_train_sampler(dataset), dataset, self.args)

        def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
            if budget is None:
                return super().training_step(model, inputs, num_items_in_batch)
            return _planned_step(self, super().training_step, model, inputs, num_items_in_batch)

        def micro_batches(self) -> dict[str, Any]:
            """How the optimizer steps were split into forward passes, for the metrics: an auto budget
            follows the memory free at the time, so it is kept apart from `ran`'s settings."""
            if budget is None:
                return {"micro_batch_tokens": None}
            passes = self.forward_passes
            mean = round(sum(passes) / len(passes), 2) if passes else None
            return {**budget.as_dict(), "forward_passes_per_step": mean,
                    "max_forward_passes": max(passes, default=None)}

    trainer = LabTrainer(**kwargs)
    trainer.forward_passes = []  # per optimizer step
    trainer.budget = budget
    return trainer


def _planned_step(trainer: Any, plain_step: Any, model: Any, inputs: dict[str, Any], num_items_in_batch: Any) -> Any:
    """One optimizer step's examples as forward passes of at most trainer.budget's tokens.

    Each pass's loss is its assistant tokens' summed loss over the whole step's count
    (num_items_in_batch), so the passes' gradients add up to the step's; DDP all-reduces once, after
    the last pass."""
    if num_items_in_batch is None or not (trainer.model_accepts_loss_kwargs or trainer.compute_loss_func):
        raise ConfigError("train.micro_batch_tokens: this model's loss cannot be normalised over the whole "
                          "optimizer step (it takes no num_items_in_batch); set train.micro_batch_tokens: null")
    passes = split_batch(inputs, trainer.budget.tokens)
    total = None
    for index, part in enumerate(passes):
        last = index == len(passes) - 1
        with contextlib.nullcontext() if last else trainer.accelerator.no_sync(model):
            loss = plain_step(model, part, num_items_in_batch)
        total = loss if total is None else total + loss
    trainer.forward_passes.append(len(passes))
    return total
