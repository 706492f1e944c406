"""Per-example attention for padding-free batches (lab.train.attention): the same loss and gradients as
transformers' masked SDPA on the real model, with examples kept apart."""

from __future__ import annotations

import pytest
import torch

from lab.train.attention import ATTENTION_NAME, attention_path, example_bounds, use_packed_attention
from tests.conftest import make_config
from tests.helpers import loss_and_grads, packed_batch


def test_example_bounds_cut_a_padding_free_row_at_each_restart():
    assert example_bounds(torch.tensor([[0, 1, 2, 0, 1, 0]]), 6) == [(0, 3), (3, 5), (5, 6)]


@pytest.mark.parametrize("position_ids, length", [
    (torch.tensor([[0, 1, 2, 3]]), 4),  # one sequence: nothing to cut
    (torch.tensor([[0, 1, 0, 1], [0, 1, 2, 3]]), 4),  # padded rows, not a padding-free row
    (torch.tensor([[5, 6, 0, 1]]), 4),  # a row that does not start at 0 (decoding with a cache)
    (torch.tensor([[0, 1, 0, 1]]), 1),  # ids not matching the queries (one decode step)
    (None, 4),
])
def test_example_bounds_leave_everything_else_to_sdpa(position_ids, length):
    assert example_bounds(position_ids, length) is None


def test_packed_attention_matches_masked_sdpa_in_loss_and_lora_gradients(embedded_model_dir, tokenizer):
    """The trainable model of the hf backend, on a padding-free batch of two examples: per-example
    attention gives transformers' block-diagonal SDPA loss and LoRA gradients; the same tokens as ONE
    sequence (the control: the second example then sees the first) give a different loss."""
    from lab.model.runtime import resolve_runtime
    from lab.train.backends import load_trainable_model

    config = make_config({"train": {"packed_attention": "per_example"}})
    model, _ = load_trainable_model(embedded_model_dir, config.training, resolve_runtime(config.train))
    assert model.config._attn_implementation == ATTENTION_NAME  # the backend switched it on
    assert attention_path(model, "hf", "cpu") == "per-example sdpa"
    batch = packed_batch(tokenizer)
    packed_loss, packed_grads = loss_and_grads(model, batch)
    model.set_attn_implementation("sdpa")
    sdpa_loss, sdpa_grads = loss_and_grads(model, batch)
    one_sequence = {**batch, "position_ids": torch.arange(batch["input_ids"].shape[1])[None]}
    control_loss, _ = loss_and_grads(model, one_sequence)
    assert abs(packed_loss - sdpa_loss) < 1e-5 * sdpa_loss
    assert ((packed_grads - sdpa_grads).norm() / sdpa_grads.norm()).item() < 1e-4
    assert abs(control_loss - sdpa_loss) > 1e-2 * sdpa_loss


def test_a_model_not_on_sdpa_is_left_alone(embedded_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(embedded_model_dir, attn_implementation="eager")
    assert not use_packed_attention(model) and model.config._attn_implementation == "eager"


def test_library_attention_keeps_transformers_masked_sdpa(embedded_model_dir):
    """train.packed_attention: library reaches the backend: the model stays on transformers' SDPA, and
    what ran says so."""
    from lab.model.runtime import resolve_runtime
    from lab.train.backends import load_trainable_model

    config = make_config({"train": {"packed_attention": "library"}})
    model, _ = load_trainable_model(embedded_model_dir, config.training, resolve_runtime(config.train))
    assert model.config._attn_implementation == "sdpa"
    assert attention_path(model, "hf", "cpu") == "transformers sdpa (masked)"
