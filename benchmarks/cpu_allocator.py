"""What glibc's default handling of freed memory costs CPU training, against lab/core/host_memory.py's policy.

usage: python benchmarks/cpu_allocator.py [--steps 8] [--rounds 2] [--out benchmarks/results/cpu_allocator.json]

Each run is a fresh process training the embedded default through the train stage's own trainer
(lab.train.fine_tune.run_training; params.yaml, the pipeline's models/base and data/train.jsonl: run `dvc
repro` first) for --steps optimizer steps, with glibc's default allocator policy ("default") or with
freed memory kept mapped ("keep_freed"). The two alternate, --rounds times each, so that a machine
whose speed drifts during the benchmark weighs on both alike. The same seed and data make every run
do the same work. Per run: the seconds of the steps after the first (whose one-off costs both pay),
minor page faults, system and user CPU seconds, and the peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lab.core.io import write_json
from lab.core.provenance import result_header

POLICIES = ("default", "keep_freed")


def train_steps(policy: str, steps: int) -> dict[str, Any]:
    """Train `steps` optimizer steps in this process under `policy`; the timed steps and the process's usage."""
    import resource

    from lab.core.host_memory import keep_freed_memory

    applied = keep_freed_memory() if policy == "keep_freed" else False
    from transformers import TrainerCallback

    from lab.core.io import read_jsonl
    from lab.core.params import load_config
    from lab.core.pipeline_files import stage_flag_path
    from lab.model.runtime import resolve_runtime
    from lab.train.backends import load_trainable_model
    from lab.train.fine_tune import run_training, tokenize_splits

    config = load_config()
    runtime = resolve_runtime(config.train)
    model, tokenizer = load_trainable_model(stage_flag_path("train", "--base"), config.training, runtime)
    rows, _, _ = tokenize_splits(tokenizer, read_jsonl(stage_flag_path("train", "--train-file")), [], config.train)
    ends: list[float] = []

    class StopAfter(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            ends.append(time.perf_counter())
            control.should_training_stop = state.global_step >= steps

    with tempfile.TemporaryDirectory() as checkpoints:  # the train stage's trainer, checkpoints and all
        run_training(model, tokenizer, rows, [], config.training, runtime, Path(checkpoints), callbacks=[StopAfter()],
                     resume_from=None)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    step_s = [round(b - a, 2) for a, b in zip(ends, ends[1:], strict=False)]
    return {"policy": policy, "applied": applied, "step_s": step_s,
            "timed_s": round(ends[-1] - ends[0], 2), "minor_page_faults": usage.ru_minflt,
            "system_cpu_s": round(usage.ru_stime, 1), "user_cpu_s": round(usage.ru_utime, 1),
            "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2)}


def run(policy: str, steps: int) -> dict[str, Any]:
    """train_steps in a fresh process (glibc's policy must be set before the heap grows)."""
    done = subprocess.run([sys.executable, __file__, "--worker", policy, "--steps", str(steps)],
                          capture_output=True, text=True, check=False)
    results = [line.removeprefix("RESULT ") for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not results:
        raise SystemExit(f"{policy} run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(results[-1])
    print(f"{policy}: {result['timed_s']} s, {result['minor_page_faults']:,} page faults", flush=True)
    return result


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each policy's median timed seconds and page faults, and the default's time over keep_freed's."""
    medians = {policy: {key: statistics.median(r[key] for r in runs if r["policy"] == policy)
                        for key in ("timed_s", "minor_page_faults", "system_cpu_s", "peak_rss_gib")}
               for policy in POLICIES}
    return {"median": medians,
            "speedup_keep_freed": round(medians["default"]["timed_s"] / medians["keep_freed"]["timed_s"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per run (the first untimed)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each policy, alternating")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cpu_allocator.json"))
    parser.add_argument("--worker", choices=POLICIES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(train_steps(args.worker, args.steps)))
        return
    header = result_header(__file__, "CPU training steps under glibc's default allocator policy and with "
                                     "freed memory kept mapped (lab/core/host_memory.py), alternating fresh processes")
    runs = [run(policy, args.steps) for _ in range(args.rounds) for policy in POLICIES]
    write_json(args.out, {**header, "steps": args.steps, "timed_steps": args.steps - 1, "runs": runs,
                          "summary": summary(runs)})
    print(json.dumps(summary(runs)))


if __name__ == "__main__":
    main()
