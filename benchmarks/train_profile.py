"""Where a QLoRA training step's time goes on a GPU: torch.profiler over optimizer steps of the lab's own
training path (lab.train.trainer's SFTTrainer, lab.train.fine_tune's sft_config), random-weight Llama-3.2-3B.

usage: python benchmarks/train_profile.py [--unsloth padding_free_no_ckpt planned_no_ckpt] [--hf ...]
                                          [--out benchmarks/results/train_profile.json]

Each backend runs in its own process (Unsloth patches transformers on import), its variants
(benchmarks/train_throughput.py's VARIANTS, at the lab's 8 examples per optimizer step) in turn: a few
warm-up steps, then PROFILED_STEPS steps under the profiler. Per variant: wall seconds and GPU-busy
seconds per step (the sum of kernel times: busy below ~100% means the GPU waits on the host), kernel
launches per step, tokens/s and peak memory; and beside the JSON, the kernel tables sorted by GPU time
and by host time (benchmarks/results/profiles/).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from train_throughput import LLAMA_3B, VARIANTS, model_parameters, variant_config
from train_workload import sample_lengths, synthetic_rows

from lab.core.io import write_json, write_text
from lab.core.provenance import result_header

WARMUP_STEPS, PROFILED_STEPS = 6, 3  # past Unsloth's first-call compiles and the allocator's growth
TABLE_ROWS = 40


def profile_variant(backend: str, variant: str, model_dir: Path, seed: int, tables: Path) -> dict[str, Any]:
    """Train WARMUP_STEPS + PROFILED_STEPS steps; the profiled steps' figures, the tables written to `tables`."""
    from lab.model.runtime import resolve_runtime

    config = variant_config(backend, variant, seed, (2, 4))
    runtime = resolve_runtime(config.train)  # imports unsloth first for that backend
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback

    from lab.train.arguments import sft_config
    from lab.train.attention import attention_path
    from lab.train.backends import load_trainable_model
    from lab.train.microbatch import plan_budget
    from lab.train.trainer import lab_trainer

    model, tokenizer = load_trainable_model(model_dir, config.training, runtime)
    steps = WARMUP_STEPS + PROFILED_STEPS
    rows = synthetic_rows(sample_lengths(steps * 8, seed), LLAMA_3B["vocab_size"], seed)
    profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                  torch.profiler.ProfilerActivity.CUDA])
    marks: dict[str, float] = {}

    class Window(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            torch.cuda.synchronize()
            if state.global_step == WARMUP_STEPS:
                torch.cuda.reset_peak_memory_stats()
                marks["t0"] = time.perf_counter()
                profiler.start()
            elif state.global_step == steps:
                profiler.stop()
                marks["t1"] = time.perf_counter()

    with tempfile.TemporaryDirectory() as work_dir:
        args = sft_config(config.training, runtime, Path(work_dir))
        args.max_steps = steps
        trainer = lab_trainer(plan_budget(config.train, model, runtime), model=model, args=args,
                              train_dataset=Dataset.from_list(rows), processing_class=tokenizer, callbacks=[Window()])
        trainer.train()
    return _figures(profiler, marks, rows, backend, variant, tables) | trainer.micro_batches() | {
        "attention": attention_path(model, backend, "cuda"),
        "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}


def _figures(profiler: Any, marks: dict[str, float], rows: list[dict], backend: str, variant: str,
             tables: Path) -> dict[str, Any]:
    """Per-step wall, GPU-busy time and kernel launches of the profiled window; the two kernel tables."""
    events = profiler.key_averages()
    busy = sum(event.self_device_time_total for event in events) / 1e6
    kernels = sum(event.count for event in events if event.self_device_time_total > 0)
    wall = marks["t1"] - marks["t0"]
    tokens = sum(len(row["input_ids"]) for row in rows[WARMUP_STEPS * 8:])
    name = f"{backend}_{variant}"
    write_text(tables / f"{name}_gpu.txt", events.table(sort_by="self_cuda_time_total", row_limit=TABLE_ROWS))
    write_text(tables / f"{name}_cpu.txt", events.table(sort_by="self_cpu_time_total", row_limit=TABLE_ROWS))
    return {"backend": backend, "variant": variant, "profiled_steps": PROFILED_STEPS,
            "wall_s_per_step": round(wall / PROFILED_STEPS, 3), "gpu_busy_s_per_step": round(busy / PROFILED_STEPS, 3),
            "gpu_busy_fraction": round(busy / wall, 3), "kernels_per_step": round(kernels / PROFILED_STEPS),
            "tokens_per_s": round(tokens / wall, 1), "tables": [f"{name}_gpu.txt", f"{name}_cpu.txt"]}


def run_backend(backend: str, variants: list[str], model_dir: Path, seed: int, tables: Path) -> list[dict[str, Any]]:
    """The variants of one backend in a fresh process; a failed variant is recorded, not raised."""
    command = [sys.executable, __file__, "--worker", backend, "--variants", *variants, "--model-dir", str(model_dir),
               "--seed", str(seed), "--tables", str(tables)]
    done = subprocess.run(command, capture_output=True, text=True)
    sys.stderr.write(done.stderr[-4000:])
    results = [json.loads(line[len("RESULT "):]) for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    seen = {result["variant"] for result in results}
    return results + [{"backend": backend, "variant": v, "error": f"exit {done.returncode}",
                       "stderr_tail": done.stderr[-2000:]} for v in variants if v not in seen]


def worker(backend: str, variants: list[str], model_dir: Path, seed: int, tables: Path) -> None:
    """Each variant in turn in this process; a RESULT line each."""
    for variant in variants:
        try:
            result = profile_variant(backend, variant, model_dir, seed, tables)
        except Exception as error:  # one variant's failure must not lose the others
            result = {"backend": backend, "variant": variant, "error": repr(error)[:500]}
        print("RESULT " + json.dumps(result), flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/train_profile.json"))
    parser.add_argument("--unsloth", nargs="*", default=["padding_free_no_ckpt", "planned_no_ckpt"],
                        choices=list(VARIANTS))
    parser.add_argument("--hf", nargs="*", default=["padding_free_no_ckpt", "planned_no_ckpt"], choices=list(VARIANTS))
    parser.add_argument("--model-dir", type=Path, default=Path("/tmp/rand-llama-3b"))
    parser.add_argument("--seed", type=int, default=3407)
    parser.add_argument("--tables", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=["unsloth", "hf"], help=argparse.SUPPRESS)
    parser.add_argument("--variants", nargs="*", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args.worker, args.variants, args.model_dir, args.seed, args.tables)
        return
    model_parameters(args.model_dir)  # builds the random checkpoint once
    tables = args.out.parent / "profiles"
    results = [result for backend, variants in (("unsloth", args.unsloth), ("hf", args.hf)) if variants
               for result in run_backend(backend, variants, args.model_dir, args.seed, tables)]
    payload = {**result_header(__file__, "torch.profiler over QLoRA SFT steps, Llama-3.2-3B architecture (random "
                                         "weights), 8 examples per optimizer step, lognormal lengths"),
               "warmup_steps": WARMUP_STEPS, "profiled_steps": PROFILED_STEPS,
               "tables_dir": str(tables.relative_to(args.out.parent)),
               "results": {f"{r['backend']}/{r['variant']}": r for r in results}}
    write_json(args.out, payload)
    print(json.dumps(payload["results"], indent=1))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
