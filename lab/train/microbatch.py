"""Micro-batch planning: an optimizer step's examples, split into forward passes by a token budget.

The lab's batch is what one optimizer step learns from: train.batch_size x train.grad_accum examples
per process. How those examples are split into forward passes changes no result (the loss is
normalised over every assistant token of the step, transformers' num_items_in_batch; a test pins it)
but sets the speed: on a GPU, small forward passes leave it idle while the host launches kernels.
With train.micro_batch_tokens set, the trainer collates the whole step as one padding-free batch,
and each training step packs consecutive whole examples into forward passes of at most that many
tokens (an example longer than the budget gets a pass of its own: one is never split).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lab.core.errors import ConfigError

# The padding-free batch's per-token tensors; a key beyond these (and the per-example lengths Unsloth's
# collator adds) could not be split at example bounds.
_PER_TOKEN_KEYS = ("input_ids", "labels", "position_ids")
_LENGTHS_KEY = "packed_seq_lengths"
# Activations the backward pass keeps per token and decoder layer, in hidden-size and intermediate-size
# units: the norms', attention's and LoRA's inputs and outputs, the MLP's gate, up and product (memory-
# efficient SDPA keeps no attention matrix). It matched the transformers + peft 4-bit baseline's measured
# peak on Llama-3.2-3B (benchmarks/results/train_throughput.json) within 10%; Unsloth's fused kernels keep less.
_HIDDEN_UNITS, _INTERMEDIATE_UNITS = 12, 5
# The share of free memory that activations may fill: the rest absorbs the allocator's fragmentation, the
# optimizer's first-step states and the loss's chunked logits.
_FREE_MEMORY_SHARE = 0.7


@dataclass(frozen=True)
class Budget:
    """The resolved token budget per forward pass and how it was chosen, for the metrics."""

    tokens: int
    source: str  # "params" or what auto measured

    def as_dict(self) -> dict[str, Any]:
        """Plain-dict view, for the metrics."""
        return {"micro_batch_tokens": self.tokens, "budget_from": self.source}


def activation_bytes_per_token(model_config: Any, dtype_bytes: int, checkpointing: bool) -> int:
    """What one token's activations cost the backward pass: every layer's, or with gradient
    checkpointing each layer's input plus one layer's recomputed activations."""
    hidden, layers = model_config.hidden_size, model_config.num_hidden_layers
    intermediate = getattr(model_config, "intermediate_size", 4 * hidden)
    one_layer = (_HIDDEN_UNITS * hidden + _INTERMEDIATE_UNITS * intermediate) * dtype_bytes
    return hidden * dtype_bytes * layers + one_layer if checkpointing else one_layer * layers


def free_memory_bytes(device: str) -> int:
    """Memory free for activations now (after the model loaded): the GPU's, or the host's on CPU."""
    if device == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info()
        return int(free)
    import psutil

    return int(psutil.virtual_memory().available)


def resolve_budget(setting: int | str, model_config: Any, device: str, dtype_bytes: int,
                   checkpointing: bool) -> Budget:
    """train.micro_batch_tokens on this machine: a number as given; auto from the free memory."""
    if setting != "auto":
        return Budget(int(setting), "params")
    per_token = activation_bytes_per_token(model_config, dtype_bytes, checkpointing)
    free = free_memory_bytes(device)
    tokens = int(free * _FREE_MEMORY_SHARE // per_token)
    return Budget(max(tokens, 1), f"auto: {free / 2**30:.1f} GiB free on {device}, "
                                  f"~{per_token / 2**20:.2f} MiB of activations per token")


def planned(train: Any) -> bool:
    """Whether the trainer collates whole optimizer steps and splits them by a token budget: a number
    (lab.core.checks requires padding-free batches for it), or auto on padding-free batches (auto is
    off on padded ones, which cannot be cut between examples)."""
    return train.micro_batch_tokens is not None and train.padding_free


def plan_budget(train: Any, model: Any, runtime: Any) -> Budget | None:
    """train.micro_batch_tokens resolved for this model and machine (None: off); call it once the
    model has loaded, so that auto sees the memory that is left."""
    if not planned(train):
        return None
    dtype_bytes = 4 if runtime.dtype == "float32" else 2
    return resolve_budget(train.micro_batch_tokens, model.config, runtime.device, dtype_bytes,
                          train.gradient_checkpointing)


def example_bounds(position_ids: Any) -> list[int]:
    """Where each example of a padding-free row starts (its position id restarts at 0), and the row's end."""
    flat = position_ids.reshape(-1)
    starts = (flat == 0).nonzero().reshape(-1).tolist()
    return [*starts, flat.numel()]


def pack_spans(bounds: list[int], budget: int) -> list[tuple[int, int]]:
    """Consecutive whole examples packed into spans of at most `budget` tokens (one longer example
    gets a span of its own), in order."""
    spans: list[tuple[int, int]] = []
    start = bounds[0]
    for end, next_end in zip(bounds[1:], [*bounds[2:], None], strict=True):
        if next_end is None or next_end - start > budget:
            spans.append((start, end))
            start = end
    return spans


def split_batch(inputs: dict[str, Any], budget: int) -> list[dict[str, Any]]:
    """A padding-free batch (one row of flattened examples) as forward passes of at most `budget` tokens."""
    unknown = sorted(set(inputs) - {*_PER_TOKEN_KEYS, _LENGTHS_KEY})
    if "position_ids" not in inputs or inputs["input_ids"].shape[0] != 1 or unknown:
        raise ConfigError("train.micro_batch_tokens: needs padding-free batches (train.padding_free: true) of "
                          f"input_ids, labels and position_ids only; got keys {sorted(inputs)}")
    bounds = example_bounds(inputs["position_ids"])
    passes = []
    for start, end in pack_spans(bounds, budget):
        part = {key: inputs[key][:, start:end] for key in _PER_TOKEN_KEYS if key in inputs}
        if _LENGTHS_KEY in inputs:
            part[_LENGTHS_KEY] = _span_lengths(inputs[_LENGTHS_KEY], bounds, start, end)
        passes.append(part)
    return passes


def _span_lengths(lengths: Any, bounds: list[int], start: int, end: int) -> Any:
    """The per-example lengths of the examples in [start, end), shaped and typed as the batch's own."""
    import torch

    if lengths.reshape(-1).tolist() != [b - a for a, b in zip(bounds, bounds[1:], strict=False)]:
        raise ConfigError(f"train.micro_batch_tokens: the batch's {_LENGTHS_KEY} disagree with its position ids")
    inside = [b - a for a, b in zip(bounds, bounds[1:], strict=False) if start <= a < end]
    return torch.tensor(inside, dtype=lengths.dtype, device=lengths.device).reshape(*lengths.shape[:-1], -1)
