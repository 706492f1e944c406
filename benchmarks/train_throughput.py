"""QLoRA SFT throughput on the Llama-3.2-3B architecture: Unsloth vs transformers + bitsandbytes + peft.

usage: python benchmarks/train_throughput.py [--steps 25] [--unsloth padding_free ...] [--hf padding_free padded ...]
                                             [--out benchmarks/results/gpu_train_throughput.json]

Both backends go through the lab's own code (lab.training.load_trainable_model and sft_config,
then trl's SFTTrainer), each in its own process, which runs that backend's variants (VARIANTS:
padding-free or padded batches, gradient checkpointing mode, length-grouped sampling) in turn:
Unsloth patches transformers when it is imported, so the baseline must never see it. The weights
are random (speed and memory do not depend on their values); the example lengths follow a seeded
lognormal mix. Figures: real (non-pad) tokens/s after warm-up, model FLOPs utilisation
(6·N·tokens/s over the GPU's bf16 dense peak) and peak GPU memory.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
from llama_arch import LLAMA_3B, build_random_llama, mfu, peak_tflops  # noqa: E402
from machine import machine_info, package_versions  # noqa: E402

# FineTome-100k conversations in Llama-3 tokens: mean ~500 with a long tail, cut at the lab's
# max_seq_length (2048). A lognormal with sigma 1 and this median gives a clipped mean of ~500.
LENGTH_MEDIAN, LENGTH_SIGMA, MIN_LEN, MAX_LEN = 330.0, 1.0, 32, 2048
# Share of each example that is the prompt (masked out of the loss), as in a chat turn.
PROMPT_SHARE = 0.4
WARMUP_STEPS = 5  # kernel autotuning, allocator growth and Unsloth's first-call compiles stay out


def sample_lengths(n: int, seed: int) -> list[int]:
    """Seeded lognormal example lengths clipped to [MIN_LEN, MAX_LEN]."""
    import numpy as np

    rng = np.random.default_rng(seed)
    raw = rng.lognormal(mean=math.log(LENGTH_MEDIAN), sigma=LENGTH_SIGMA, size=n)
    return [int(x) for x in np.clip(np.rint(raw), MIN_LEN, MAX_LEN)]


def synthetic_rows(lengths: list[int], vocab: int, seed: int) -> list[dict[str, list[int]]]:
    """Pre-tokenized rows in the lab's format (input_ids + assistant_masks), random token ids."""
    import numpy as np

    rng = np.random.default_rng(seed + 1)
    rows = []
    for length in lengths:
        prompt = int(length * PROMPT_SHARE)
        rows.append({"input_ids": rng.integers(0, vocab - 256, size=length).tolist(),
                     "assistant_masks": [0] * prompt + [1] * (length - prompt)})
    return rows


def tokens_in_window(micro_batch_tokens: list[int], grad_accum: int, first_step: int, last_step: int) -> int:
    """Tokens of optimizer steps first_step+1 .. last_step, from the per-micro-batch counts in order."""
    return sum(micro_batch_tokens[first_step * grad_accum:last_step * grad_accum])


class CountingCollator:
    """Wraps the trainer's collator and records the real tokens of each micro-batch, in order."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.tokens, self.padded, self.padding_free = inner, [], [], None

    def __call__(self, examples: list[dict]) -> dict:
        batch = self.inner(examples)
        mask = batch.get("attention_mask")
        self.tokens.append(int(mask.sum()) if mask is not None else int(batch["input_ids"].numel()))
        self.padded.append(int(batch["input_ids"].numel()))
        self.padding_free = "position_ids" in batch and mask is None and batch["input_ids"].shape[0] == 1
        return batch


# What each measured configuration changes from the lab's (padding-free, gradient checkpointing on).
# "padded" is what a user of transformers + bitsandbytes + peft gets by default: trl's collator
# padding each micro-batch to its longest example, examples in random order.
VARIANTS: dict[str, dict[str, Any]] = {
    "padding_free": {"padding_free": True, "checkpointing": True},
    "padding_free_no_ckpt": {"padding_free": True, "checkpointing": False},
    "padding_free_plain_ckpt": {"padding_free": True, "checkpointing": True, "checkpointing_mode": "plain"},
    "padded": {"padding_free": False, "checkpointing": True},
    "padded_grouped": {"padding_free": False, "checkpointing": True, "group_by_length": True},
    "padded_no_ckpt": {"padding_free": False, "checkpointing": False},
}
VARIANT_NOTES = {
    "padding_free": "the lab's setting: each micro-batch flattened into one sequence with position ids",
    "padded": "trl's default collator: pad to the micro-batch's longest example, random order "
              "(what transformers + bitsandbytes + peft gives by default)",
    "padded_grouped": "padded, with transformers' LengthGroupedSampler (train_sampling_strategy)",
    "checkpointing": "gradient checkpointing; for unsloth in mode 'unsloth' (activations offloaded to CPU) "
                     "unless checkpointing_mode is 'plain' (use_gradient_checkpointing=True)",
}


def variant_config(backend: str, variant: str, seed: int, batch: tuple[int, int]) -> Any:
    """The lab's hyperparameters (batch 2 x grad-accum 4, adamw_8bit, lr 2e-4, r=16 on all linear
    layers) at the lab's max_seq_length, with what `variant` changes."""
    from lab.config import LabConfig, TrainConfig

    spec = VARIANTS[variant]
    return LabConfig(seed=seed, train=TrainConfig(
        backend=backend, quantization="4bit", max_seq_length=MAX_LEN, gradient_checkpointing=spec["checkpointing"],
        padding_free=spec["padding_free"], checkpointing_mode=spec.get("checkpointing_mode", "unsloth"),
        group_by_length=spec.get("group_by_length", False), batch_size=batch[0], grad_accum=batch[1]))


def step_clock(marks: dict[str, float], step_ends: list[float]) -> Any:
    """A trainer callback that records synchronised wall times: train begin, each step's end (the
    timed window starts after WARMUP_STEPS), train end."""
    import torch
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            torch.cuda.synchronize()
            marks["begin"] = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            torch.cuda.synchronize()
            step_ends.append(time.perf_counter())
            if state.global_step == WARMUP_STEPS:
                marks["t0"] = step_ends[-1]

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            torch.cuda.synchronize()
            marks["t1"], marks["steps"] = time.perf_counter(), state.global_step

    return Clock()


def run_variant(backend: str, variant: str, model_dir: Path, steps: int, seed: int,
                batch: tuple[int, int] = (2, 4)) -> dict[str, Any]:
    """Train `steps` optimizer steps with one backend and variant through the lab's code."""
    import gc

    from lab.modeling import resolve_runtime

    config = variant_config(backend, variant, seed, batch)
    runtime = resolve_runtime(config.train)  # imports unsloth (before transformers) for that backend
    import torch
    from datasets import Dataset
    from trl import SFTTrainer

    from lab.training import load_trainable_model, sft_config

    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    model, tokenizer = load_trainable_model(model_dir, config, runtime)
    load_s = time.perf_counter() - started
    lengths = sample_lengths(steps * config.train.batch_size * config.train.grad_accum, seed)
    marks: dict[str, float] = {}
    step_ends: list[float] = [started]  # per-step wall times show compiles or recompiles inside the window
    with tempfile.TemporaryDirectory() as work_dir:
        trainer = SFTTrainer(model=model, args=sft_config(config, runtime, Path(work_dir)),
                             train_dataset=Dataset.from_list(synthetic_rows(lengths, LLAMA_3B["vocab_size"], seed)),
                             processing_class=tokenizer, callbacks=[step_clock(marks, step_ends)])
        counter = CountingCollator(trainer.data_collator)
        trainer.data_collator = counter
        trainer.train()
    seconds, timed_steps = marks["t1"] - marks["t0"], int(marks["steps"])
    tokens = tokens_in_window(counter.tokens, config.train.grad_accum, WARMUP_STEPS, timed_steps)
    padded = tokens_in_window(counter.padded, config.train.grad_accum, WARMUP_STEPS, timed_steps)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    result = {
        "backend": backend, "variant": variant, **VARIANTS[variant], "steps": timed_steps,
        "timed_steps": timed_steps - WARMUP_STEPS,
        "timed_tokens": tokens, "timed_tokens_with_padding": padded, "timed_s": round(seconds, 2),
        "tokens_per_s": round(tokens / seconds, 1),
        "warmup_s": round(marks["t0"] - marks["begin"], 1),
        "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2),
        "load_s": round(load_s, 1), "padding_free_batches": counter.padding_free,
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
        "mean_example_tokens": round(sum(lengths) / len(lengths), 1),
        "step_s": [round(b - a, 3) for a, b in zip(step_ends[1:], step_ends[2:], strict=False)],
    }
    del trainer, model
    gc.collect()
    torch.cuda.empty_cache()
    return result


def run_worker(backend: str, variants: list[str], model_dir: Path, steps: int, seed: int,
               batch: tuple[int, int], deadline: float) -> None:
    """Each variant in turn in this process (one import of the backend); a result line each."""
    for variant in variants:
        if time.time() > deadline:
            print("RESULT " + json.dumps({"backend": backend, "variant": variant, "error": "skipped: out of time"}))
            continue
        try:
            result = run_variant(backend, variant, model_dir, steps, seed, batch)
        except Exception as error:  # one variant's failure must not lose the others
            import traceback

            result = {"backend": backend, "variant": variant, "error": repr(error)[:500],
                      "traceback": traceback.format_exc()[-3000:]}
        print("RESULT " + json.dumps(result), flush=True)


def run_backend(backend: str, variants: list[str], model_dir: Path, steps: int, seed: int, timeout_s: int,
                batch: tuple[int, int]) -> list[dict[str, Any]]:
    """The variants of one backend in a fresh process (Unsloth patches transformers when it is
    imported, so the baseline must never share its process); failures are recorded, not raised."""
    command = [sys.executable, __file__, "--worker", backend, "--variants", *variants, "--model-dir", str(model_dir),
               "--steps", str(steps), "--seed", str(seed), "--batch-size", str(batch[0]), "--grad-accum", str(batch[1]),
               "--deadline", str(time.time() + timeout_s - 60)]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        stdout, stderr, code = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired as error:
        def text(value: Any) -> str:
            return value.decode(errors="replace") if isinstance(value, bytes) else value or ""
        stdout, stderr, code = text(error.stdout), text(error.stderr), f"timed out after {timeout_s} s"
    sys.stderr.write(stderr[-6000:])
    results = [json.loads(line.removeprefix("RESULT ")) for line in stdout.splitlines() if line.startswith("RESULT ")]
    for result in results:
        result["process_s"] = round(time.perf_counter() - started, 1)
    missing = [v for v in variants if v not in {r.get("variant") for r in results}]
    results += [{"backend": backend, "variant": v, "error": f"exit {code}", "stderr_tail": stderr[-3000:]}
                for v in missing]
    return results


def speedups(results: dict[str, dict[str, Any]], reference: str = "unsloth/padding_free") -> dict[str, float]:
    """tokens/s of `reference` over each hf variant's (real tokens only on both sides)."""
    if "tokens_per_s" not in results.get(reference, {}):
        return {}
    return {f"{reference}_vs_{name}": round(results[reference]["tokens_per_s"] / r["tokens_per_s"], 2)
            for name, r in results.items() if name.startswith("hf/") and "tokens_per_s" in r}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu_train_throughput.json"))
    parser.add_argument("--steps", type=int, default=25, help="optimizer steps per variant (the first 5 untimed)")
    parser.add_argument("--seed", type=int, default=3407)
    parser.add_argument("--unsloth", nargs="*", default=["padding_free"], choices=list(VARIANTS),
                        help="Unsloth variants, run in one process")
    parser.add_argument("--hf", nargs="*", default=["padding_free", "padded"], choices=list(VARIANTS),
                        help="transformers + bitsandbytes + peft variants, run in another process")
    parser.add_argument("--model-dir", type=Path, default=Path("/tmp/rand-llama-3b"))
    parser.add_argument("--timeout", type=int, default=400, help="seconds per backend process")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--grad-accum", type=int, default=4)
    parser.add_argument("--worker", choices=["unsloth", "hf"], help=argparse.SUPPRESS)
    parser.add_argument("--variants", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, default=float("inf"), help=argparse.SUPPRESS)
    return parser.parse_args()


def model_parameters(model_dir: Path) -> int:
    """Build the random Llama-3.2-3B checkpoint once (or reuse it); its parameter count."""
    import torch

    if not (model_dir / "config.json").exists():
        model, parameters = build_random_llama(LLAMA_3B, model_dir)
        del model
    else:
        from transformers import LlamaConfig, LlamaForCausalLM

        with torch.device("meta"):
            parameters = sum(p.numel() for p in LlamaForCausalLM(LlamaConfig(**LLAMA_3B)).parameters())
    torch.cuda.empty_cache()
    return parameters


def payload_for(args: argparse.Namespace, machine: dict[str, Any], peak: float | None, parameters: int,
                results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The results JSON: what was trained, on what, and every variant's figures."""
    return {
        "benchmark": "QLoRA SFT, Llama-3.2-3B architecture (random weights), lab hyperparameters; "
                     "tokens/s count real (non-pad) tokens only",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "gpu": machine.get("gpu"), "machine": machine,
        "model": {"architecture": "LlamaForCausalLM", **{k: v for k, v in LLAMA_3B.items() if k != "rope_parameters"},
                  "parameters": parameters, "weights": "random (seed 0), bf16 on disk, 4-bit nf4 when loaded"},
        "data": {"distribution": f"lognormal(median {LENGTH_MEDIAN}, sigma {LENGTH_SIGMA}) clipped to "
                                 f"[{MIN_LEN}, {MAX_LEN}], seed {args.seed}", "prompt_share_masked": PROMPT_SHARE},
        "training": {"batch_size": args.batch_size, "grad_accum": args.grad_accum, "optimizer": "adamw_8bit",
                     "dtype": "bfloat16", "lora": "r=16 alpha=16 on q,k,v,o,gate,up,down",
                     "steps": args.steps, "warmup_steps_untimed": WARMUP_STEPS},
        "variants": {name: dict(spec) for name, spec in VARIANTS.items()},
        "variant_notes": VARIANT_NOTES,
        "mfu_convention": "6 * parameters * tokens_per_s / peak; attention FLOPs and pad tokens not counted",
        "peak_bf16_tflops_assumed": peak,
        "results": results, "speedups": speedups(results),
        "versions": package_versions(("torch", "transformers", "trl", "peft", "bitsandbytes", "unsloth",
                                      "unsloth_zoo", "accelerate")),
    }


def main() -> None:
    args = parse_args()
    batch = (args.batch_size, args.grad_accum)
    if args.worker:
        run_worker(args.worker, args.variants, args.model_dir, args.steps, args.seed, batch, args.deadline)
        return
    parameters = model_parameters(args.model_dir)
    machine = machine_info()
    peak = peak_tflops(machine.get("gpu", ""))
    results: dict[str, dict[str, Any]] = {}
    for backend, variants in (("unsloth", args.unsloth), ("hf", args.hf)):
        if not variants:
            continue
        for result in run_backend(backend, variants, args.model_dir, args.steps, args.seed, args.timeout, batch):
            if "tokens_per_s" in result:
                result["mfu"] = mfu(parameters, result["tokens_per_s"], peak)
            results[f"{backend}/{result['variant']}"] = result
            print(json.dumps({k: v for k, v in result.items() if k not in ("step_s", "stderr_tail", "traceback")}),
                  flush=True)
    payload = payload_for(args, machine, peak, parameters, results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps({"gpu": payload["gpu"], "speedups": payload["speedups"],
                      **{name: {k: r.get(k) for k in ("tokens_per_s", "mfu", "peak_allocated_gib", "error")}
                         for name, r in results.items()}}))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
