"""How an optimizer step's examples are split into forward passes must not change what it learns:
2 micro-batches x 4 accumulations, 1 x 8 (the same 8 examples) and the token-budget passes of
train.micro_batch_tokens give the same loss and the same adapter gradients, because the loss is
normalised over all assistant tokens of the optimizer step (transformers' num_items_in_batch), not
per micro-batch. Real embedded model, padding-free batches."""

from __future__ import annotations

import pytest
import torch

from lab.model.runtime import resolve_runtime
from lab.train.backends import load_trainable_model
from lab.train.fine_tune import run_training
from lab.train.masking import tokenize_conversation

from .conftest import make_config
from .helpers import ANSWERS, QUESTIONS  # eight conversations of different lengths


def _one_step(embedded_model_dir, tmp_path, batch_size: int, grad_accum: int,
              micro_batch_tokens: int | None = None) -> tuple[float, dict[str, torch.Tensor], dict]:
    """One optimizer step of plain SGD (no momentum, decay, clipping or warmup): the update is
    -lr x the gradient, so the LoRA weights' change is the step's gradient, scaled."""
    config = make_config({"seed": 7, "lr": 1.0, "train": {
        "batch_size": batch_size, "grad_accum": grad_accum, "optimizer": "sgd", "weight_decay": 0.0,
        "max_grad_norm": 0.0, "warmup_steps": 0, "lr_scheduler": "constant", "max_seq_length": 128,
        "micro_batch_tokens": micro_batch_tokens}})
    runtime = resolve_runtime(config.train)
    model, tokenizer = load_trainable_model(embedded_model_dir, config.training, runtime)
    rows = [tokenize_conversation(tokenizer, [{"role": "user", "content": q}, {"role": "assistant", "content": a}])
            for q, a in zip(QUESTIONS, ANSWERS, strict=True)]
    before = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    figures = run_training(model, tokenizer, rows, [], config.training, runtime,
                           tmp_path / f"{batch_size}x{grad_accum}-{micro_batch_tokens}", callbacks=[], resume_from=None)
    assert figures["steps"] == 1
    update = {name: before[name] - p.detach() for name, p in model.named_parameters() if p.requires_grad}
    return figures["train_loss"], update, figures["micro_batches"]


def _flat(update: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([u.flatten() for u in update.values()])


@pytest.fixture(scope="module")
def two_by_four(embedded_model_dir, tmp_path_factory):
    """The lab's split, 2 examples x 4 accumulations: the reference every other split must match."""
    return _one_step(embedded_model_dir, tmp_path_factory.mktemp("plain"), batch_size=2, grad_accum=4)


def test_two_by_four_and_eight_by_one_give_the_same_loss_and_gradients(embedded_model_dir, tmp_path, two_by_four):
    loss_split, update_split, _ = two_by_four
    loss_whole, update_whole, _ = _one_step(embedded_model_dir, tmp_path, batch_size=8, grad_accum=1)
    assert loss_split == pytest.approx(loss_whole, rel=1e-4)
    gradient_split, gradient_whole = _flat(update_split), _flat(update_whole)
    assert gradient_whole.norm() > 0  # the step did learn something
    # Equal up to float32 summation order: far closer than a per-micro-batch mean would be.
    assert torch.allclose(gradient_split, gradient_whole, rtol=1e-3, atol=1e-6 * gradient_whole.abs().max())


def test_token_budget_passes_learn_what_two_by_four_learns(embedded_model_dir, tmp_path, two_by_four):
    """train.micro_batch_tokens: the lab's 2 x 4 step, run as passes of at most 120 tokens (the eight
    examples are ~40-60 tokens each: passes of two or three whole examples, their count set by the
    lengths), gives the 2 x 4 step's loss and gradients; and a budget over the whole step runs it in one pass."""
    loss_plain, update_plain, plain = two_by_four
    loss_budget, update_budget, budget = _one_step(embedded_model_dir, tmp_path, batch_size=2, grad_accum=4,
                                                   micro_batch_tokens=120)
    _, update_one, one_pass = _one_step(embedded_model_dir, tmp_path, batch_size=2, grad_accum=4,
                                        micro_batch_tokens=100_000)
    assert plain == {"micro_batch_tokens": None}
    assert budget["micro_batch_tokens"] == 120 and budget["budget_from"] == "params"
    assert 3 <= budget["forward_passes_per_step"] <= 6  # neither one pass nor one per example
    assert one_pass["forward_passes_per_step"] == 1
    assert loss_budget == pytest.approx(loss_plain, rel=1e-4)
    reference = _flat(update_plain)
    for update in (update_budget, update_one):
        assert torch.allclose(_flat(update), reference, rtol=1e-3, atol=1e-6 * reference.abs().max())
