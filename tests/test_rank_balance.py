"""Balancing each optimizer step's tokens across data-parallel processes (lab.train.rank_balance): the
same examples per step, even loads on a FineTome-shaped length mix, and the same shards through
accelerate's own sharding (BatchSamplerShard, prepare_data_loader) that the Trainer uses."""

from __future__ import annotations

import inspect
import random
import statistics
import sys
from pathlib import Path

import pytest
from accelerate.data_loader import BatchSamplerShard, prepare_data_loader
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

from lab.train.rank_balance import (
    BalancedSampler,
    balanced_order,
    balanced_train_sampler,
    process_positions,
    step_loads,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from train_workload import sample_lengths  # noqa: E402

# FineTome-shaped lengths (lognormal, 32 to 2048 tokens), and one epoch's shuffled order of them.
LENGTHS = sample_lengths(8000, 3407)
ORDER = random.Random(11).sample(range(len(LENGTHS)), len(LENGTHS))


def _steps(order: list[int], size: int) -> list[list[int]]:
    return [order[start:start + size] for start in range(0, len(order), size)]


@pytest.mark.parametrize(("processes", "micro_batch", "grad_accum", "examples"),
                         [(2, 2, 4, 8000), (4, 2, 1, 8000), (4, 2, 4, 7997), (3, 3, 2, 100), (2, 2, 4, 5)])
def test_every_step_keeps_its_examples(processes, micro_batch, grad_accum, examples):
    order = ORDER[:examples]
    balanced = balanced_order(order, LENGTHS, processes, micro_batch, grad_accum)
    step = processes * micro_batch * grad_accum
    assert len(balanced) == len(order)
    for before, after in zip(_steps(order, step), _steps(balanced, step), strict=True):
        assert sorted(before) == sorted(after)


def _mean_max_over_mean(order: list[int], processes: int, grad_accum: int) -> float:
    return statistics.fmean(max(loads) / statistics.fmean(loads)
                            for loads in step_loads(order, LENGTHS, processes, 2, grad_accum))


@pytest.mark.parametrize(("processes", "grad_accum", "unbalanced", "balanced"),
                         [(2, 4, 1.18, 1.01), (4, 4, 1.37, 1.01), (2, 1, 1.35, 1.20), (4, 1, 1.76, 1.46)])
def test_the_most_loaded_process_carries_close_to_the_mean(processes, grad_accum, unbalanced, balanced):
    """Mean over steps of (most loaded process's tokens / mean process's tokens), at batch 2; the
    figures are this length mix's (8000 examples), to two decimals."""
    before = _mean_max_over_mean(ORDER, processes, grad_accum)
    after = _mean_max_over_mean(balanced_order(ORDER, LENGTHS, processes, 2, grad_accum), processes, grad_accum)
    assert before == pytest.approx(unbalanced, abs=0.01)
    assert after == pytest.approx(balanced, abs=0.01)
    spread = [max(loads) - min(loads) for loads in step_loads(ORDER, LENGTHS, processes, 2, grad_accum)]
    balanced_spread = [max(loads) - min(loads) for loads in
                       step_loads(balanced_order(ORDER, LENGTHS, processes, 2, grad_accum), LENGTHS, processes, 2,
                                  grad_accum)]
    assert statistics.fmean(balanced_spread) < 0.6 * statistics.fmean(spread)


def test_with_two_examples_per_process_the_longest_pairs_with_the_shortest():
    lengths = [5, 900, 40, 2048, 300, 32, 77, 1200]
    balanced = balanced_order(list(range(8)), lengths, processes=4, micro_batch=2, grad_accum=1)
    pairs = [sorted(lengths[i] for i in balanced[m * 2:m * 2 + 2]) for m in range(4)]
    assert sorted(pairs) == [[5, 2048], [32, 1200], [40, 900], [77, 300]]


def test_the_order_is_deterministic_and_keeps_each_process_s_examples_in_their_order():
    first = balanced_order(ORDER, LENGTHS, 4, 2, 4)
    assert first == balanced_order(list(ORDER), list(LENGTHS), 4, 2, 4)
    step = 32
    for block, balanced in zip(_steps(ORDER, step), _steps(first, step), strict=True):
        for slots in process_positions(step, 4, 2):
            mine = [balanced[slot] for slot in slots]
            assert mine == sorted(mine, key=block.index)


def test_one_process_and_an_already_even_step_change_nothing():
    assert balanced_order(ORDER, LENGTHS, 1, 2, 4) == ORDER
    assert balanced_order([3, 1, 2, 0], [10, 10, 10, 10], 2, 1, 2) == [3, 1, 2, 0]


def test_impossible_counts_are_refused():
    with pytest.raises(ValueError, match="grad_accum must be at least 1, got 0"):
        balanced_order(ORDER, LENGTHS, 2, 2, 0)
    with pytest.raises(ValueError, match="lengths has 3 entries but the sampler draws 8000 examples"):
        BalancedSampler(SequentialSampler(range(8000)), [1, 2, 3], 2, 2, 4)


def test_a_partial_last_step_keeps_each_process_s_share_of_real_examples():
    """13 examples at 2 processes x 2 x 2: one full step, then 5 examples; accelerate gives process 0
    micro-batches 0 and 2 of the tail (2 + 1 real examples), process 1 micro-batch 1 (2), and tops the
    short ones up from the start of the epoch, as many as without balancing."""
    lengths = [100, 7, 2000, 50, 60, 900, 30, 40, 1500, 1400, 20, 10, 1300]
    balanced = balanced_order(list(range(13)), lengths, 2, 2, 2)
    assert sorted(balanced[8:]) == [8, 9, 10, 11, 12]
    shards = [_shard_batches(balanced, 2, r, 2) for r in range(2)]
    unbalanced = [_shard_batches(list(range(13)), 2, r, 2) for r in range(2)]
    assert [len(batches) for batches in shards] == [len(batches) for batches in unbalanced] == [4, 4]
    tail = [sum(shards[r][2:], []) for r in range(2)]
    assert sorted(tail[0] + tail[1]) == sorted([8, 9, 10, 11, 12, *balanced[:3]])  # three repeats, as unbalanced
    real = [[i for i in part if i >= 8] for part in tail]
    assert [len(part) for part in real] == [3, 2]
    # Unbalanced, process 0 held the three longest (1500, 1400, 1300); two of them must share a process.
    assert sorted(sorted(lengths[i] for i in part) for part in real) == [[10, 20, 1500], [1300, 1400]]


def _shard_batches(order: list[int], micro_batch: int, process: int, processes: int) -> list[list[int]]:
    """The micro-batches accelerate's BatchSamplerShard gives `process` (even_batches, as the Trainer)."""
    return list(BatchSamplerShard(BatchSampler(order, micro_batch, drop_last=False), num_processes=processes,
                                  process_index=process, split_batches=False, even_batches=True))


@pytest.mark.parametrize(("processes", "grad_accum"), [(2, 4), (4, 1), (4, 2)])
def test_accelerate_s_shards_hold_what_balanced_order_assigned(processes, grad_accum):
    """A BatchSampler over the BalancedSampler, sharded by accelerate for each process: at every
    optimizer step, each process's micro-batches are the examples balanced_order put in its
    positions, and their token totals are the balanced loads."""
    data = range(800)
    sampler = BalancedSampler(SequentialSampler(data), LENGTHS[:800], processes, 2, grad_accum)
    expected = balanced_order(list(range(800)), LENGTHS, processes, 2, grad_accum)
    step = processes * 2 * grad_accum
    positions = process_positions(step, processes, 2)
    loads = step_loads(expected, LENGTHS, processes, 2, grad_accum)
    for process in range(processes):
        batches = list(BatchSamplerShard(BatchSampler(sampler, 2, drop_last=False), num_processes=processes,
                                         process_index=process, even_batches=True))
        per_step = [sum(batches[s * grad_accum:(s + 1) * grad_accum], []) for s in range(800 // step)]
        for s, examples in enumerate(per_step):
            assert examples == [expected[s * step + slot] for slot in positions[process]]
            assert sum(LENGTHS[i] for i in examples) == loads[s][process]


def _trainer_loader_steps(sampler, processes: int, micro_batch: int, grad_accum: int, epoch: int) -> list[list[int]]:
    """Each optimizer step's examples over all processes, through accelerate's prepare_data_loader as the
    Trainer calls it (seedable sampler, data seed 42, even batches)."""
    steps: list[list[int]] = []
    for process in range(processes):
        loader = prepare_data_loader(DataLoader(range(len(sampler)), batch_size=micro_batch, sampler=sampler),
                                     num_processes=processes, process_index=process, put_on_device=False,
                                     use_seedable_sampler=True, data_seed=42, even_batches=True)
        loader.set_epoch(epoch)
        batches = [batch.tolist() for batch in loader]
        for s in range(0, len(batches), grad_accum):
            if process == 0:
                steps.append([])
            steps[s // grad_accum] += sum(batches[s:s + grad_accum], [])
    return [sorted(examples) for examples in steps]


@pytest.mark.parametrize("epoch", [0, 1])
def test_fixed_global_processes_train_the_one_process_run_s_steps(epoch):
    """The Trainer's seeded RandomSampler, wrapped: 4 processes x 1 micro-batch of 2 see, step by step,
    the examples one process sees in 4 micro-batches of 2 (as accelerate seeds it unwrapped), every epoch."""
    data, lengths = range(400), LENGTHS[:400]
    one = _trainer_loader_steps(RandomSampler(data), 1, 2, 4, epoch)
    four = _trainer_loader_steps(BalancedSampler(RandomSampler(data), lengths, 4, 2, 1, data_seed=42), 4, 2, 1, epoch)
    assert four == one and len(one) == 50
    assert one != _trainer_loader_steps(RandomSampler(data), 1, 2, 4, 1 - epoch)  # the epoch reshuffles


@pytest.mark.parametrize("examples", [29, 31, 40])
def test_with_drop_last_accelerate_drops_the_same_examples(examples):
    """dataloader_drop_last: accelerate yields only whole rounds of one full micro-batch per process;
    what it drops is what it dropped unbalanced, and every step keeps its examples."""
    order = ORDER[:examples]
    balanced = balanced_order(order, LENGTHS, 2, 2, 2, drop_last=True)
    for source in (order, balanced):
        assert sorted(sum((_shards(source, process) for process in range(2)), [])) == sorted(order[:examples // 4 * 4])
    assert balanced[examples // 4 * 4:] == order[examples // 4 * 4:]
    for before, after in zip(_steps(order[:examples // 4 * 4], 8), _steps(balanced[:examples // 4 * 4], 8),
                             strict=True):
        assert sorted(before) == sorted(after)


def _shards(order: list[int], process: int) -> list[int]:
    return sum(BatchSamplerShard(BatchSampler(order, 2, drop_last=True), num_processes=2, process_index=process), [])


def test_the_trainer_hook_wraps_the_sampler_only_with_several_processes(monkeypatch, tmp_path):
    """The Trainer method a subclass overrides: _get_train_sampler(train_dataset=None); its sampler is
    wrapped with the lengths of the dataset's input_ids and the Trainer's batch settings."""
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    assert list(inspect.signature(Trainer._get_train_sampler).parameters) == ["self", "train_dataset"]
    dataset = Dataset.from_list([{"input_ids": [1] * LENGTHS[i]} for i in range(40)])
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=2, gradient_accumulation_steps=2,
                             data_seed=5, use_cpu=True, report_to="none")
    inner = RandomSampler(dataset)
    assert balanced_train_sampler(inner, dataset, args) is inner
    monkeypatch.setattr(TrainingArguments, "world_size", property(lambda self: 2))
    sampler = balanced_train_sampler(inner, dataset, args)
    assert isinstance(sampler, BalancedSampler) and len(sampler) == 40
    assert (sampler.lengths, sampler.processes, sampler.micro_batch, sampler.grad_accum, sampler.drop_last) == \
        (LENGTHS[:40], 2, 2, 2, False)
    sampler.set_epoch(3)
    assert sampler.inner.epoch == 3 and sampler.inner.initial_seed == 5  # accelerate's seedable sampler
    assert sorted(sampler) == list(range(40))
