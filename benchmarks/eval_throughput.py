"""Generation throughput of the lab's evaluation workload on the Llama-3.2-3B architecture.

usage: python benchmarks/eval_throughput.py [--out benchmarks/results/gpu_eval_throughput.json] [--single 10]

100 prompts of ~300 tokens, 256 new tokens each, greedy as lab.generation runs it, with
min_new_tokens=256 so that every sequence runs full length (random weights rarely emit EOS, but
the figure must not depend on it). Variants: one prompt at a time; one batch of 100 with the
default dynamic KV cache; one batch of 100 with a static KV cache, for which transformers compiles
the decode step (torch.compile, CUDA graphs) on the first call, timed separately. Fresh processes
then show what an evaluate stage pays on its first batch (each stage is its own process).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402
from train_throughput import LLAMA_3B, build_random_llama  # noqa: E402

PROMPTS, NEW_TOKENS = 100, 256  # the reference lab: data.eval_examples 100, evaluate.max_new_tokens 256
PROMPT_MIN, PROMPT_MAX = 240, 360  # "~300 tokens": uniform around 300, so the batch needs left padding
STATIC_REPEATS = 2  # timed calls after the compiling one; their median is the steady figure


def prompt_lengths(n: int, seed: int) -> list[int]:
    import numpy as np

    return np.random.default_rng(seed).integers(PROMPT_MIN, PROMPT_MAX + 1, size=n).tolist()


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[list[list[int]], list[list[int]]]:
    """Left-padded ids and attention masks, as lab.generation batches prompts for decoding."""
    width = max(len(p) for p in prompts)
    ids = [[pad_id] * (width - len(p)) + p for p in prompts]
    masks = [[0] * (width - len(p)) + [1] * len(p) for p in prompts]
    return ids, masks


def matching_prefix(a: list[int], b: list[int]) -> int:
    """Length of the common prefix of two token sequences."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def timed_generate(model: Any, prompts: list[list[int]], new_tokens: int = NEW_TOKENS,
                   **extra: Any) -> tuple[float, list[list[int]]]:
    """Greedy generation of one batch with the lab's settings; (seconds, new token ids)."""
    import torch

    pad = LLAMA_3B["pad_token_id"]
    ids, masks = left_pad(prompts, pad)
    inputs = {"input_ids": torch.tensor(ids, device=model.device),
              "attention_mask": torch.tensor(masks, device=model.device)}
    torch.cuda.synchronize()
    started = time.perf_counter()
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                num_beams=1, temperature=None, top_p=None, top_k=None,
                                eos_token_id=[LLAMA_3B["eos_token_id"]], pad_token_id=pad, **extra)
    torch.cuda.synchronize()
    return time.perf_counter() - started, output[:, len(ids[0]):].tolist()


def figures(seconds: float, sequences: int) -> dict[str, Any]:
    return {"seconds": round(seconds, 2), "sequences": sequences, "new_tokens": sequences * NEW_TOKENS,
            "tokens_per_s": round(sequences * NEW_TOKENS / seconds, 1)}


def fresh_process(cache: str, seed: int, cudnn_sdp: bool = True) -> dict[str, Any]:
    """What an evaluate stage pays: a new process's first batch of 100 (allocator growth, kernel
    selection and, for the static cache, the compile), then a second identical batch."""
    import torch

    # cuDNN's attention builds an execution plan for every new shape; the dynamic cache makes a
    # new key length at every step, so the first pass over a batch can pay that 256 times.
    torch.backends.cuda.enable_cudnn_sdp(cudnn_sdp)
    model, _ = build_random_llama(LLAMA_3B, seed=0)
    prompts = make_prompts(seed)
    extra = {"cache_implementation": "static"} if cache == "static" else {}
    first, _ = timed_generate(model, prompts, **extra)
    second, _ = timed_generate(model, prompts, **extra)
    return {"first_call_s": round(first, 2), "second_call_s": round(second, 2),
            "first_call_overhead_s": round(first - second, 2)}


def run_fresh(cache: str, seed: int, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--fresh", cache, "--seed", str(seed)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, **env})
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    return {**json.loads(lines[-1].removeprefix("RESULT ")), **env} if lines else {"error": done.stderr[-3000:]}


def pipeline_estimates(results: dict[str, Any]) -> dict[str, float]:
    """Two evaluate stages, each a fresh process: sums of measured first calls (compile included)."""
    fresh = results.get("fresh_process", {})
    out = {}
    for name in ("dynamic", "dynamic_expandable_segments"):
        if "first_call_s" in fresh.get(name, {}):
            out[f"two_processes_{name}"] = round(2 * fresh[name]["first_call_s"], 1)
    if "first_call_s" in fresh.get("static_warm_compile_cache", {}):
        cold = results["batched_static"]["first_call_s"]  # the compile with an empty cache
        out["two_processes_static_cold_then_warm_cache"] = round(cold + fresh["static_warm_compile_cache"]
                                                                 ["first_call_s"], 1)
    return out


def make_prompts(seed: int) -> list[list[int]]:
    import numpy as np

    rng = np.random.default_rng(seed + 1)
    return [rng.integers(0, 128000, size=n).tolist() for n in prompt_lengths(PROMPTS, seed)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu_eval_throughput.json"))
    parser.add_argument("--single", type=int, default=10,
                        help="prompts run one at a time (100 would take ~10 minutes of device time)")
    parser.add_argument("--seed", type=int, default=3407)
    parser.add_argument("--fresh", choices=["dynamic", "static"], help=argparse.SUPPRESS)
    parser.add_argument("--no-fresh-processes", action="store_true")
    parser.add_argument("--no-cudnn-sdp", action="store_true", help="with --fresh: SDPA without cuDNN's backend")
    args = parser.parse_args()
    if args.fresh:
        print("RESULT " + json.dumps(fresh_process(args.fresh, args.seed, not args.no_cudnn_sdp)), flush=True)
        return

    import torch

    model, parameters = build_random_llama(LLAMA_3B, seed=0)
    model.eval()
    prompts = make_prompts(args.seed)
    results: dict[str, Any] = {}

    # Warm-up: CUDA context, cuBLAS handles and kernel selection stay out of every variant.
    timed_generate(model, [prompts[0][:32]], new_tokens=8)

    single_s, single_out = 0.0, []
    for prompt in prompts[:args.single]:
        seconds, out = timed_generate(model, [prompt])
        single_s += seconds
        single_out += out
    results["one_at_a_time"] = {**figures(single_s, args.single),
                                "note": f"first {args.single} of the {PROMPTS} prompts, one generate call each"}

    torch.cuda.reset_peak_memory_stats()
    batched = [timed_generate(model, prompts) for _ in range(2)]
    results["batched"] = {**figures(batched[1][0], PROMPTS), "first_call_s": round(batched[0][0], 2),
                          "batch_size": PROMPTS, "cache": "dynamic",
                          "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}

    torch.cuda.reset_peak_memory_stats()
    static = [timed_generate(model, prompts, cache_implementation="static") for _ in range(1 + STATIC_REPEATS)]
    steady = statistics.median(s for s, _ in static[1:])
    results["batched_static"] = {**figures(steady, PROMPTS), "batch_size": PROMPTS, "cache": "static",
                                 "first_call_s": round(static[0][0], 2), "compile_s": round(static[0][0] - steady, 2),
                                 "repeat_s": [round(s, 2) for s, _ in static[1:]],
                                 "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}

    # Greedy agreement: bf16 kernels differ between variants, so near-tied logits may flip.
    ref = batched[1][1]
    results["agreement"] = {
        "static_vs_dynamic_identical": sum(a == b for a, b in zip(ref, static[1][1], strict=True)) / PROMPTS,
        "static_vs_dynamic_mean_prefix": statistics.mean(matching_prefix(a, b) for a, b in zip(ref, static[1][1],
                                                                                                 strict=True)),
        "single_vs_batched_identical": sum(a == b for a, b in zip(single_out, ref, strict=False)) / args.single,
    }
    if not args.no_fresh_processes:
        # Each evaluate stage is its own process; the static one finds the on-disk compile cache
        # that the compile above filled. expandable_segments lets the caching allocator grow one
        # mapping instead of calling cudaMalloc for every larger KV-cache tensor the dynamic cache makes.
        expandable = {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
        results["fresh_process"] = {
            "dynamic": run_fresh("dynamic", args.seed, {}),
            "dynamic_expandable_segments": run_fresh("dynamic", args.seed, expandable),
            "static_warm_compile_cache": run_fresh("static", args.seed, {}),
        }

    per_100 = {name: PROMPTS * NEW_TOKENS / results[name]["tokens_per_s"] for name in
               ("one_at_a_time", "batched", "batched_static")}
    machine = machine_info()
    payload = {
        "benchmark": "greedy generation, Llama-3.2-3B architecture (random weights, bf16), "
                     f"{PROMPTS} prompts of {PROMPT_MIN}-{PROMPT_MAX} tokens, {NEW_TOKENS} new tokens each",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "gpu": machine.get("gpu"), "machine": machine, "parameters": parameters,
        "variants": results,
        # A base-vs-fine-tuned evaluation generates twice for the same prompts with the same architecture
        # (the adapter is merged): steady figures x 2, then what two evaluate processes pay (fresh_process).
        "seconds_200_generations": {
            "one_at_a_time_projected": round(2 * per_100["one_at_a_time"], 1),
            "batched_steady": round(2 * per_100["batched"], 1),
            "batched_static_steady": round(2 * per_100["batched_static"], 1),
            **pipeline_estimates(results),
        },
        "fastest": min(per_100, key=per_100.get),
        "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps({k: payload[k] for k in ("gpu", "seconds_200_generations", "fastest")}))
    print(json.dumps({k: {f: v.get(f) for f in ("tokens_per_s", "seconds", "first_call_s", "compile_s")}
                      for k, v in results.items() if k not in ("agreement", "fresh_process")}))
    print(json.dumps(results.get("fresh_process")))


if __name__ == "__main__":
    main()
