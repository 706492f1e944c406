"""QLoRA SFT throughput on the Llama-3.2-3B architecture: Unsloth vs transformers + bitsandbytes + peft.

usage: python benchmarks/train_throughput.py [--steps 20] [--unsloth padding_free_no_ckpt ...]
                                             [--hf padding_free_no_ckpt padded ...]
                                             [--out benchmarks/results/train_throughput.json]

Both backends go through the lab's own code (lab.train.backends.load_trainable_model, lab.train.fine_tune's
sft_config, then trl's SFTTrainer), each in its own process, which runs that backend's variants (VARIANTS:
padding-free or padded batches, gradient checkpointing mode, length-grouped sampling) in turn:
Unsloth patches transformers when it is imported, so the baseline must never see it. The weights
are random (speed and memory do not depend on their values); the example lengths follow a seeded
lognormal mix. Figures: real (non-pad) tokens/s after warm-up, model FLOPs utilisation
(4·N·tokens/s over the GPU's bf16 dense peak, LoRA on a frozen base; 6·N as a second figure) and
peak GPU memory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from llama_arch import FULL_FINETUNING_FLOPS_PER_PARAMETER, LLAMA_3B, build_random_llama, mfu, peak_tflops
from train_workload import (
    LENGTH_MEDIAN,
    LENGTH_SIGMA,
    MAX_LEN,
    MIN_LEN,
    PROMPT_SHARE,
    CountingCollator,
    sample_lengths,
    synthetic_rows,
    tokens_in_window,
)

from lab.core.io import write_json
from lab.core.provenance import result_header

PARAMS_FILE = Path(__file__).resolve().parents[1] / "params.yaml"
WARMUP_STEPS = 5  # kernel autotuning, allocator growth and Unsloth's first-call compiles stay out


# What each measured configuration sets: batching and gradient checkpointing (params.yaml's
# default is padding-free without checkpointing, `padding_free_no_ckpt`). "padded" is what a user
# of transformers + bitsandbytes + peft gets by default: trl's collator padding each micro-batch
# to its longest example, examples in random order.
VARIANTS: dict[str, dict[str, Any]] = {
    "padding_free": {"padding_free": True, "checkpointing": True},
    "padding_free_no_ckpt": {"padding_free": True, "checkpointing": False},
    "padding_free_plain_ckpt": {"padding_free": True, "checkpointing": True, "checkpointing_mode": "plain"},
    "padded": {"padding_free": False, "checkpointing": True},
    "padded_grouped": {"padding_free": False, "checkpointing": True, "group_by_length": True},
    "padded_no_ckpt": {"padding_free": False, "checkpointing": False},
    "planned_no_ckpt": {"padding_free": True, "checkpointing": False, "micro_batch_tokens": "auto"},
    "planned": {"padding_free": True, "checkpointing": True, "checkpointing_mode": "plain",
                "micro_batch_tokens": "auto"},
    "varlen_no_ckpt": {"padding_free": True, "checkpointing": False, "packed_attention": "per_example"},
    "planned_varlen_no_ckpt": {"padding_free": True, "checkpointing": False, "micro_batch_tokens": "auto",
                               "packed_attention": "per_example"},
}
VARIANT_NOTES = {
    "padding_free": "the lab's setting: each micro-batch flattened into one sequence with position ids",
    "padded": "trl's default collator: pad to the micro-batch's longest example, random order "
              "(what transformers + bitsandbytes + peft gives by default)",
    "padded_grouped": "padded, with transformers' LengthGroupedSampler (train_sampling_strategy)",
    "planned_no_ckpt": "padding-free, each optimizer step's examples (the same ones as 2 x 4) packed into forward "
                       "passes up to the token budget the free GPU memory holds (train.micro_batch_tokens: auto)",
    "varlen_no_ckpt": "padding-free 2 x 4, each example's attention alone: one varlen flash call per layer "
                      "(train.packed_attention: per_example; every other variant runs the library's own)",
    "planned_varlen_no_ckpt": "planned_no_ckpt with varlen attention (train.packed_attention: per_example)",
    "checkpointing": "gradient checkpointing; for unsloth in mode 'unsloth' (activations offloaded to CPU) "
                     "unless checkpointing_mode is 'plain' (use_gradient_checkpointing=True)",
}


def variant_overrides(backend: str, variant: str, seed: int, batch: tuple[int, int]) -> dict[str, Any]:
    """What the benchmark changes in params.yaml: the backend, 4-bit QLoRA, the reference lab's
    max_seq_length, the batch shape and what `variant` sets; the rest (adamw_8bit, lr, LoRA r=16
    on all linear layers) is params.yaml's."""
    spec = VARIANTS[variant]
    train = {"backend": backend, "quantization": "4bit", "max_seq_length": MAX_LEN, "batch_size": batch[0],
             "grad_accum": batch[1], "gradient_checkpointing": spec["checkpointing"],
             "padding_free": spec["padding_free"], "micro_batch_tokens": None,  # a variant may set a budget
             "packed_attention": "library"}  # or per-example attention
    train |= {key: spec[key] for key in ("checkpointing_mode", "group_by_length", "micro_batch_tokens",
                                         "packed_attention") if key in spec}
    return {"seed": seed, "train": train}


def variant_config(backend: str, variant: str, seed: int, batch: tuple[int, int]) -> Any:
    """params.yaml with the variant's overrides, validated as the pipeline's own config is."""
    from lab.core.params import load_config

    return load_config(PARAMS_FILE, overrides=variant_overrides(backend, variant, seed, batch))


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


def window_figures(marks: dict[str, float], step_ends: list[float], counter: CountingCollator,
                   grad_accum: int) -> dict[str, Any]:
    """Tokens and seconds of the timed window (the optimizer steps after WARMUP_STEPS)."""
    seconds, steps = marks["t1"] - marks["t0"], int(marks["steps"])
    tokens = tokens_in_window(counter.tokens, grad_accum, WARMUP_STEPS, steps)
    return {"steps": steps, "timed_steps": steps - WARMUP_STEPS, "timed_tokens": tokens,
            "timed_tokens_with_padding": tokens_in_window(counter.padded, grad_accum, WARMUP_STEPS, steps),
            "timed_s": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
            "warmup_s": round(marks["t0"] - marks["begin"], 1), "padding_free_batches": counter.padding_free,
            "step_s": [round(b - a, 3) for a, b in zip(step_ends[1:], step_ends[2:], strict=False)]}


def run_variant(backend: str, variant: str, model_dir: Path, steps: int, seed: int,
                batch: tuple[int, int] = (2, 4)) -> dict[str, Any]:
    """Train `steps` optimizer steps with one backend and variant through the lab's code."""
    import gc

    from lab.model.runtime import resolve_runtime

    config = variant_config(backend, variant, seed, batch)
    runtime = resolve_runtime(config.train)  # imports unsloth (before transformers) for that backend
    import torch
    from datasets import Dataset

    from lab.train.arguments import sft_config
    from lab.train.attention import attention_path
    from lab.train.backends import load_trainable_model
    from lab.train.microbatch import plan_budget
    from lab.train.trainer import lab_trainer

    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    model, tokenizer = load_trainable_model(model_dir, config.training, runtime)
    load_s = time.perf_counter() - started
    lengths = sample_lengths(steps * config.train.batch_size * config.train.grad_accum, seed)
    marks: dict[str, float] = {}
    step_ends: list[float] = [started]  # per-step wall times show compiles or recompiles inside the window
    with tempfile.TemporaryDirectory() as work_dir:
        trainer = lab_trainer(plan_budget(config.train, model, runtime), model=model,
                              args=sft_config(config.training, runtime, Path(work_dir)),
                              train_dataset=Dataset.from_list(synthetic_rows(lengths, LLAMA_3B["vocab_size"], seed)),
                              processing_class=tokenizer, callbacks=[step_clock(marks, step_ends)])
        counter = CountingCollator(trainer.data_collator)
        trainer.data_collator = counter
        trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    result = {
        "backend": backend, "variant": variant, **VARIANTS[variant],
        # Unsloth's checkpointing mode as it ran (params.yaml's unless the variant sets it).
        "checkpointing_mode": config.train.checkpointing_mode if backend == "unsloth" else None,
        # With a token budget the collator sees each optimizer step's examples at once.
        **window_figures(marks, step_ends, counter, 1 if trainer.budget else config.train.grad_accum),
        **trainer.micro_batches(),
        "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2),
        "load_s": round(load_s, 1), "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "attention": attention_path(model, backend, "cuda"),
        "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
        "mean_example_tokens": round(sum(lengths) / len(lengths), 1),
    }
    del trainer, model
    gc.collect()
    torch.cuda.empty_cache()
    return result


def run_worker(backend: str, variants: list[str], model_dir: Path, steps: int, seed: int,
               batch: tuple[int, int], deadline: float) -> None:
    """Each variant in turn in this process (one import of the backend); a result line each. First, a few
    untimed steps of the first variant: the process's one-off costs (CUDA context, kernel autotuning,
    Unsloth's compiles) would otherwise fall on whichever variant runs first."""
    with contextlib.suppress(Exception):  # a failure here recurs, and is recorded, in the variant's own run
        run_variant(backend, variants[0], model_dir, WARMUP_STEPS + 1, seed, batch)
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
    """tokens/s of `reference` over each hf variant's with the same checkpointing setting (real
    tokens only on both sides): checkpointing alone moves tokens/s more than the backend does."""
    measured = results.get(reference, {})
    if "tokens_per_s" not in measured:
        return {}
    return {f"{reference}_vs_{name}": round(measured["tokens_per_s"] / r["tokens_per_s"], 2)
            for name, r in results.items() if name.startswith("hf/") and "tokens_per_s" in r
            and r.get("checkpointing") == measured.get("checkpointing")}


def all_speedups(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """speedups() of every Unsloth variant."""
    return {key: ratio for name in results if name.startswith("unsloth/")
            for key, ratio in speedups(results, name).items()}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/train_throughput.json"))
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per variant (the first 5 untimed)")
    parser.add_argument("--seed", type=int, default=3407)
    parser.add_argument("--unsloth", nargs="*", default=["padding_free_no_ckpt", "padding_free"],
                        choices=list(VARIANTS), help="Unsloth variants, run in one process")
    parser.add_argument("--hf", nargs="*", default=["padding_free_no_ckpt", "padding_free", "padded"],
                        choices=list(VARIANTS),
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


def payload_for(args: argparse.Namespace, peak: float | None, parameters: int,
                results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The results JSON: what was trained, on what, and every variant's figures."""
    return {
        **result_header(__file__, "QLoRA SFT, Llama-3.2-3B architecture (random weights), lab hyperparameters; "
                                  "tokens/s count real (non-pad) tokens only"),
        "model": {"architecture": "LlamaForCausalLM", **{k: v for k, v in LLAMA_3B.items() if k != "rope_parameters"},
                  "parameters": parameters, "weights": "random (seed 0), bf16 on disk, 4-bit nf4 when loaded"},
        "data": {"distribution": f"lognormal(median {LENGTH_MEDIAN}, sigma {LENGTH_SIGMA}) clipped to "
                                 f"[{MIN_LEN}, {MAX_LEN}], seed {args.seed}", "prompt_share_masked": PROMPT_SHARE},
        "training": {"batch_size": args.batch_size, "grad_accum": args.grad_accum, "optimizer": "adamw_8bit",
                     "dtype": "bfloat16", "lora": "r=16 alpha=16 on q,k,v,o,gate,up,down",
                     "steps": args.steps, "warmup_steps_untimed": WARMUP_STEPS},
        "variants": {name: dict(spec) for name, spec in VARIANTS.items()},
        "variant_notes": VARIANT_NOTES,
        "mfu_convention": "mfu_4n: 4 * parameters * tokens_per_s / peak (LoRA on a frozen base: forward plus "
                          "the backward pass's input gradients); mfu_6n: the same with 6 * parameters (full "
                          "fine-tuning's convention); attention FLOPs and pad tokens not counted",
        "peak_bf16_tflops_assumed": peak,
        "results": results, "speedups": all_speedups(results),
    }


def main() -> None:
    args = parse_args()
    batch = (args.batch_size, args.grad_accum)
    if args.worker:
        run_worker(args.worker, args.variants, args.model_dir, args.steps, args.seed, batch, args.deadline)
        return
    parameters = model_parameters(args.model_dir)
    import torch

    peak = peak_tflops(torch.cuda.get_device_name(0))
    results: dict[str, dict[str, Any]] = {}
    for backend, variants in (("unsloth", args.unsloth), ("hf", args.hf)):
        if not variants:
            continue
        for result in run_backend(backend, variants, args.model_dir, args.steps, args.seed, args.timeout, batch):
            if "tokens_per_s" in result:
                result["mfu_4n"] = mfu(parameters, result["tokens_per_s"], peak)
                result["mfu_6n"] = mfu(parameters, result["tokens_per_s"], peak, FULL_FINETUNING_FLOPS_PER_PARAMETER)
            # A failed variant's line names only the variant: add its settings, as a measured one has.
            results[f"{backend}/{result['variant']}"] = {**VARIANTS.get(result["variant"], {}), **result}
            print(json.dumps({k: v for k, v in result.items() if k not in ("step_s", "stderr_tail", "traceback")}),
                  flush=True)
    payload = payload_for(args, peak, parameters, results)
    write_json(args.out, payload)
    print(json.dumps({"gpu": payload["machine"].get("gpu"), "speedups": payload["speedups"],
                      **{name: {k: r.get(k) for k in ("tokens_per_s", "mfu_4n", "peak_allocated_gib", "error")}
                         for name, r in results.items()}}))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
