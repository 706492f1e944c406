"""Even token loads across data-parallel processes within each optimizer step.

With train.processes N > 1, transformers' Trainer hands the seeded sampler's order to accelerate's
BatchSamplerShard: the order is cut into micro-batches of batch_size examples and process r takes
micro-batches r, r + N, r + 2N, ...; each process accumulates grad_accum of them, then all of them
all-reduce their gradients. One optimizer step is therefore a block of N x grad_accum x batch_size
consecutive examples of the order, and the step lasts as long as its most loaded process.
Example lengths vary by orders of magnitude, so `balanced_order` deals each block's examples out
again, longest first onto the least loaded process with room, and lays them out where the sharding
puts that process's micro-batches. Which examples make up each step is unchanged, and so is what
the step learns: the loss is normalised by the step's tokens summed over all processes
(transformers' average_tokens_across_devices), not per process.

The last block of an epoch may be partial. The Trainer keeps it (dataloader_drop_last false) and
accelerate (even_batches) completes its last short micro-batch, and gives micro-batches to the
processes still short of one, with examples from the start of the epoch's order. The partial block is
balanced over the same positions as it would occupy unbalanced, so every process keeps the number of
real examples it had there, and accelerate adds the same number of repeated examples as without
balancing (repeats of the first ones in the balanced order, which also come from the first step).

torch and accelerate are imported inside functions, as elsewhere in the lab: BalancedSampler is a
plain iterable of indices with a length, which torch's DataLoader takes as a sampler.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any


def process_positions(block_size: int, processes: int, micro_batch: int) -> list[list[int]]:
    """For a block of `block_size` examples starting at an optimizer step, the positions within it that
    accelerate gives each process: global micro-batch m (positions m x micro_batch onwards) goes to
    process m mod processes."""
    positions: list[list[int]] = [[] for _ in range(processes)]
    for start in range(0, block_size, micro_batch):
        positions[(start // micro_batch) % processes].extend(range(start, min(start + micro_batch, block_size)))
    return positions


def balance_block(block: Sequence[int], lengths: Sequence[int], processes: int, micro_batch: int) -> list[int]:
    """`block`'s examples reordered so that the processes' token totals are as even as a greedy
    longest-first assignment makes them; each process keeps as many positions as accelerate gives it,
    and its examples keep their relative order in `block`. Unchanged where that would not lower the
    most loaded process's total."""
    positions = process_positions(len(block), processes, micro_batch)
    room = [len(slots) for slots in positions]
    loads = [0] * processes
    members: list[list[int]] = [[] for _ in range(processes)]
    # Ties broken by position and process index: every process computes the same order.
    for index in sorted(range(len(block)), key=lambda i: (-lengths[block[i]], i)):
        process = min((r for r in range(processes) if room[r]), key=lambda r: (loads[r], r))
        members[process].append(index)
        loads[process] += lengths[block[index]]
        room[process] -= 1
    # A step the greedy deal would not shorten stays as the sampler ordered it.
    if max(loads) >= max(sum(lengths[block[slot]] for slot in slots) for slots in positions):
        return list(block)
    balanced = list(block)
    for slots, chosen in zip(positions, members, strict=True):
        for slot, index in zip(slots, sorted(chosen), strict=True):
            balanced[slot] = block[index]
    return balanced


def balanced_order(order: Sequence[int], lengths: Sequence[int], processes: int, micro_batch: int,
                   grad_accum: int, drop_last: bool = False) -> list[int]:
    """`order` (one epoch of example indices, as the sampler yields them) with each optimizer step's
    examples (blocks of processes x grad_accum x micro_batch) dealt out to the processes by token count
    (`lengths[i]` tokens for example i); the same order for one process. With `drop_last` (the
    Trainer's dataloader_drop_last) accelerate drops the last round of micro-batches that is short of
    one full micro-batch per process: those examples stay where they are, so the same ones are dropped."""
    for name, value in (("processes", processes), ("micro_batch", micro_batch), ("grad_accum", grad_accum)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if processes == 1:
        return list(order)
    step = processes * grad_accum * micro_batch
    kept = len(order) - len(order) % (processes * micro_batch) if drop_last else len(order)
    return [*(index for start in range(0, kept, step)
              for index in balance_block(order[start:min(start + step, kept)], lengths, processes, micro_batch)),
            *order[kept:]]


def step_loads(order: Sequence[int], lengths: Sequence[int], processes: int, micro_batch: int,
               grad_accum: int) -> list[list[int]]:
    """Each full optimizer step's token total per process under accelerate's sharding of `order`."""
    step = processes * grad_accum * micro_batch
    positions = process_positions(step, processes, micro_batch)
    loads = []
    for start in range(0, len(order) - step + 1, step):
        loads.append([sum(lengths[order[start + slot]] for slot in slots) for slots in positions])
    return loads


def _seedable(sampler: Any, data_seed: int | None) -> Any:
    """A plain RandomSampler as accelerate makes it when it is the loader's own sampler (the
    Trainer's default use_seedable_sampler): its SeedableRandomSampler, seeded with data_seed plus
    the epoch, the same order on every process and in a one-process run. Wrapped, the sampler is out
    of accelerate's sight, so the wrapper does it."""
    from accelerate.data_loader import SeedableRandomSampler
    from torch.utils.data import RandomSampler

    if type(sampler) is not RandomSampler:
        return sampler
    return SeedableRandomSampler(data_source=sampler.data_source, replacement=sampler.replacement,
                                 num_samples=sampler._num_samples, generator=sampler.generator, data_seed=data_seed)


class BalancedSampler:
    """The Trainer's train sampler with each optimizer step dealt out evenly to the processes: every
    epoch, `balanced_order` of the inner sampler's order. A sampler for torch's DataLoader (an iterable
    of indices with a length); `set_epoch` reaches the inner sampler, as accelerate's loader calls it."""

    def __init__(self, inner: Any, lengths: Sequence[int], processes: int, micro_batch: int, grad_accum: int,
                 data_seed: int | None = None, drop_last: bool = False) -> None:
        if len(lengths) != len(inner):
            raise ValueError(f"lengths has {len(lengths)} entries but the sampler draws {len(inner)} examples")
        self.inner = _seedable(inner, data_seed)
        self.lengths = list(lengths)
        self.processes, self.micro_batch, self.grad_accum = processes, micro_batch, grad_accum
        self.drop_last = drop_last

    def __iter__(self) -> Iterator[int]:
        return iter(balanced_order(list(self.inner), self.lengths, self.processes, self.micro_batch,
                                   self.grad_accum, self.drop_last))

    def __len__(self) -> int:
        return len(self.inner)

    def set_epoch(self, epoch: int) -> None:
        """The epoch, for an inner sampler whose order depends on it (a seeded random one)."""
        if hasattr(self.inner, "set_epoch"):
            self.inner.set_epoch(epoch)


def balanced_train_sampler(sampler: Any, dataset: Any, args: Any) -> Any:
    """What a Trainer subclass's `_get_train_sampler` returns: the Trainer's own `sampler` for
    `dataset` (rows with input_ids), balanced across processes when the run has several (`args`:
    its TrainingArguments), unchanged in a one-process run."""
    if sampler is None or args.world_size == 1:
        return sampler
    return BalancedSampler(sampler, [len(ids) for ids in dataset["input_ids"]], args.world_size,
                           args.per_device_train_batch_size, args.gradient_accumulation_steps,
                           data_seed=args.data_seed, drop_last=args.dataloader_drop_last)
