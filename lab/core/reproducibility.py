"""Bit-identical reruns: a rerun of the train stage with the same params, data and base model, on the
same machine, writes the same adapter byte for byte (tests/test_reproducibility.py).

Within one machine the arithmetic of a CPU run was already repeatable: two processes trained the same
adapter weights, and the seeds (LoRA init, data order, dropout) are set by `seed`. What differed
between two runs was adapter_config.json: peft keeps `target_modules` as a set and writes it in set
order, which Python's per-process string hashing (PYTHONHASHSEED) reshuffles, so DVC saw a new adapter
hash on every rerun. `save_adapter` writes every set sorted.

On CPU the trainer also runs with transformers' `full_determinism` (torch's deterministic algorithms,
which on CPU swap in sort-based accumulation for indexing backward passes and fill uninitialized
memory): an indexing-based loss gets torch's deterministic implementation, and an operation that has
none raises instead of varying silently. `cpu_threads` is recorded with the run: torch sums a tensor of more
than 32,768 elements (at::internal::GRAIN_SIZE) in one partial sum per thread, so another thread
count changes the last bits of such sums (none in the embedded default's training; a larger model's
gradient norm, which clipping uses, is one).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any


def full_determinism(device: str) -> bool:
    """Whether the trainer runs with transformers' full_determinism: on CPU, where it cost 1-2% of the
    trainer's step speed (the embedded default's, measured with the mode toggled); on a GPU it would serialize
    every kernel launch (CUDA_LAUNCH_BLOCKING), and the 4-bit and fused-attention kernels there are not
    deterministic anyway (docs/pipeline.md)."""
    return device == "cpu"


def cpu_threads() -> int:
    """torch's intra-op thread count (one partial sum per thread in whole-tensor reductions)."""
    import torch

    return torch.get_num_threads()


def save_adapter(model: Any, tokenizer: Any, directory: Path) -> None:
    """Save the LoRA adapter and the tokenizer into `directory`, the same bytes for the same weights.

    peft's configs hold sets (target_modules, and others where given) and write them in set order,
    which changes with each process's string hashing: they are made sorted lists first."""
    for config in getattr(model, "peft_config", {}).values():
        for field in dataclasses.fields(config):
            value = getattr(config, field.name)
            if isinstance(value, set):
                setattr(config, field.name, sorted(value))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
