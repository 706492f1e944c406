"""How long the slowest process keeps the others waiting at each optimizer step of a data-parallel
run, with the sampler's order as accelerate shards it and with lab.train.rank_balance's balanced order, on
the training benchmark's FineTome-shaped lengths (train_workload.sample_lengths).

usage: python benchmarks/rank_balance.py [--examples 96000] [--seed 3407] [--out benchmarks/results/rank_balance.json]

The straggler factor is E[tokens of the most loaded process] / E[tokens of the mean process] over
the optimizer steps: a step lasts as long as its most loaded process, so at a cost proportional to
tokens it is the time lost to waiting, and before / after is the most that balancing can speed a step
up (per-micro-batch overheads that do not grow with tokens make the real gain smaller). Needs no GPU.
"""

from __future__ import annotations

import argparse
import random
import statistics
from pathlib import Path

from train_workload import sample_lengths

from lab.core.io import write_json
from lab.core.provenance import result_header
from lab.train.rank_balance import balanced_order, step_loads

MICRO_BATCH = 2
# (batch scaling, processes, micro-batches each process accumulates per step): the lab's batch 2 x
# grad-accum 4 per process (per_device), and its 8 examples per step split over the processes (fixed_global).
SETUPS = [("per_device", 2, 4), ("per_device", 4, 4), ("fixed_global", 2, 2), ("fixed_global", 4, 1)]


def straggler_factor(order: list[int], lengths: list[int], processes: int, grad_accum: int) -> float:
    """E[most loaded process's step tokens] / E[mean process's step tokens] over the full steps."""
    loads = step_loads(order, lengths, processes, MICRO_BATCH, grad_accum)
    return statistics.fmean(max(step) for step in loads) / statistics.fmean(sum(step) / processes for step in loads)


def measure(examples: int, seed: int) -> list[dict]:
    """The straggler factor of each setup, before and after balancing, on one seeded epoch."""
    lengths = sample_lengths(examples, seed)
    order = random.Random(seed).sample(range(examples), examples)
    rows = []
    for scaling, processes, grad_accum in SETUPS:
        before = straggler_factor(order, lengths, processes, grad_accum)
        after = straggler_factor(balanced_order(order, lengths, processes, MICRO_BATCH, grad_accum), lengths,
                                 processes, grad_accum)
        rows.append({"batch_scaling": scaling, "processes": processes, "micro_batch": MICRO_BATCH,
                     "grad_accum_per_process": grad_accum, "straggler_before": round(before, 4),
                     "straggler_after": round(after, 4), "max_step_speedup": round(before / after, 4)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=96_000)
    parser.add_argument("--seed", type=int, default=3407)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "rank_balance.json")
    args = parser.parse_args()
    rows = measure(args.examples, args.seed)
    for row in rows:
        print(f"{row['batch_scaling']:>12} x{row['processes']}: {row['straggler_before']:.3f} -> "
              f"{row['straggler_after']:.3f} (at most {row['max_step_speedup']:.3f}x faster steps)")
    write_json(args.out, {**result_header(__file__, "straggler factor of data-parallel steps, before and after "
                                          "lab.train.rank_balance (token counts, no GPU)"),
                          "workload": {"lengths": "benchmarks/train_workload.py sample_lengths",
                                       "examples": args.examples, "seed": args.seed}, "setups": rows})


if __name__ == "__main__":
    main()
