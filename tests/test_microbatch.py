"""Token-budget packing of a padding-free batch (lab.train.microbatch): whole examples, in order, and the
param's checks. The learning semantics are pinned in tests/test_microbatch_semantics.py."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from lab.core.errors import ConfigError
from lab.train.microbatch import activation_bytes_per_token, pack_spans, resolve_budget, split_batch

from .conftest import make_config


def _packed(lengths: list[int]) -> dict[str, torch.Tensor]:
    """A padding-free batch of examples of these lengths, as trl's collator flattens it."""
    positions = torch.cat([torch.arange(n) for n in lengths])[None]
    ids = torch.arange(positions.shape[1])[None] + 100
    labels = ids.clone()
    labels[positions == 0] = -100
    return {"input_ids": ids, "labels": labels, "position_ids": positions}


def test_whole_examples_are_packed_in_order_up_to_the_budget():
    bounds = [0, 30, 80, 100, 400, 420]  # examples of 30, 50, 20, 300 and 20 tokens
    assert pack_spans(bounds, 100) == [(0, 100), (100, 400), (400, 420)]  # 300 > budget: a pass of its own
    assert pack_spans(bounds, 1000) == [(0, 420)]
    assert pack_spans(bounds, 1) == [(0, 30), (30, 80), (80, 100), (100, 400), (400, 420)]


def test_split_batch_cuts_only_between_examples_and_keeps_every_token():
    batch = _packed([30, 50, 20, 300, 20])
    parts = split_batch(batch, 100)
    assert [p["input_ids"].shape[1] for p in parts] == [100, 300, 20]
    for key in batch:
        assert torch.equal(torch.cat([p[key] for p in parts], dim=1), batch[key])
    assert all(p["position_ids"][0, 0] == 0 for p in parts)  # each pass starts an example


def test_split_batch_carries_per_example_lengths_into_each_pass():
    """Unsloth's collator adds the examples' lengths (packed_seq_lengths): each pass gets its own."""
    batch = _packed([30, 50, 20, 300, 20]) | {"packed_seq_lengths": torch.tensor([30, 50, 20, 300, 20],
                                                                                 dtype=torch.int32)}
    parts = split_batch(batch, 100)
    assert [p["packed_seq_lengths"].tolist() for p in parts] == [[30, 50, 20], [300], [20]]
    assert all(p["packed_seq_lengths"].dtype == torch.int32 for p in parts)
    wrong = batch | {"packed_seq_lengths": torch.tensor([80, 20, 300, 20])}
    with pytest.raises(ConfigError, match="disagree with its position ids"):
        split_batch(wrong, 100)


def test_split_batch_refuses_a_padded_batch():
    padded = {"input_ids": torch.ones(2, 5, dtype=torch.long), "labels": torch.ones(2, 5, dtype=torch.long),
              "attention_mask": torch.ones(2, 5, dtype=torch.long)}
    with pytest.raises(ConfigError, match="train.micro_batch_tokens: needs padding-free"):
        split_batch(padded, 100)


def test_auto_budget_follows_free_memory_and_checkpointing():
    llama_3b = SimpleNamespace(hidden_size=3072, intermediate_size=8192, num_hidden_layers=28)
    full = activation_bytes_per_token(llama_3b, 2, checkpointing=False)
    assert 4.0 < full / 2**20 < 4.4  # MiB per token: the measured 4-bit baseline's peak at 4,096 tokens
    assert activation_bytes_per_token(llama_3b, 2, checkpointing=True) < full / 10
    assert resolve_budget(4096, llama_3b, "cpu", 4, False).tokens == 4096
    auto = resolve_budget("auto", llama_3b, "cpu", 2, False)
    assert auto.tokens >= 1 and auto.source.startswith("auto:")


@pytest.mark.parametrize(("train", "message"), [
    ({"micro_batch_tokens": 0}, "train.micro_batch_tokens"),
    ({"micro_batch_tokens": "max"}, "train.micro_batch_tokens: 'max' is not allowed"),
    ({"micro_batch_tokens": 2048, "padding_free": False}, "null or auto \\(off\\) unless train.padding_free is true"),
])
def test_bad_micro_batch_tokens_are_refused(train, message):
    with pytest.raises(ConfigError, match=message):
        make_config({"train": train})


def test_auto_is_off_on_padded_batches():
    """A padded run (train.padding_free: false) keeps batch_size x grad_accum micro-batches under the default auto."""
    from lab.train.arguments import sft_config
    from lab.train.microbatch import planned

    padded = make_config({"train": {"padding_free": False, "micro_batch_tokens": "auto"}})
    assert not planned(padded.train) and planned(make_config({"train": {"micro_batch_tokens": "auto"}}).train)
    args = sft_config(padded.training, SimpleNamespace(device="cpu", dtype="float32", backend="hf"), Path("unused"))
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (2, 4)


def test_micro_batch_tokens_takes_a_number_auto_or_null():
    assert make_config({"train": {"micro_batch_tokens": 4096}}).train.micro_batch_tokens == 4096
    assert make_config({"train": {"micro_batch_tokens": "auto"}}).train.micro_batch_tokens == "auto"
    assert make_config({"train": {"micro_batch_tokens": None}}).train.micro_batch_tokens is None
