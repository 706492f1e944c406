"""Generation throughput of the lab's evaluation workload on the Llama-3.2-3B architecture.

usage: python benchmarks/eval_throughput.py [--out benchmarks/results/eval_throughput.json] [--single 5]

100 prompts of ~300 tokens, 256 new tokens each, greedy, with every sequence running the full 256
tokens (random weights rarely emit EOS, but the figure must not depend on it: the static decoder
gets no stop token, transformers' generate gets min_new_tokens=256). SDPA runs without cuDNN's
backend, as lab.eval.generation sets it on CUDA. Variants, in one process:

- `hf_dynamic`: transformers' `generate` with its dynamic KV cache (the previous evaluate path);
- `static_graph`: lab.eval.generation's static-cache decoder with its decode step replayed as a CUDA
  graph (what `decode: auto` runs on CUDA), at batch 100 and 50, and one prompt at a time;
- `static_eager`: the same decoder launching every kernel from Python (the graph's share);
- prefill alone (max_new_tokens=1), so that a decode step's GPU time can be read off.

Then fresh processes, each building the model and timing its first batch of 100 as an evaluate
stage does (each stage is its own process): two in a row for the static decoder, which is what
the 200 generations of a base-vs-fine-tuned evaluation cost, and one for transformers' generate.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from llama_arch import LLAMA_3B, build_random_llama

from lab.core.io import write_json
from lab.core.provenance import result_header
from lab.eval.generation import left_pad  # the padding the evaluate stage uses

PROMPTS, NEW_TOKENS = 100, 256  # the reference lab: data.eval_examples 100, evaluate.max_new_tokens 256
PROMPT_MIN, PROMPT_MAX = 240, 360  # "~300 tokens": uniform around 300, so the batch needs left padding


def prompt_lengths(n: int, seed: int) -> list[int]:
    import numpy as np

    return np.random.default_rng(seed).integers(PROMPT_MIN, PROMPT_MAX + 1, size=n).tolist()


def make_prompts(seed: int) -> list[list[int]]:
    import numpy as np

    rng = np.random.default_rng(seed + 1)
    return [rng.integers(0, 128000, size=n).tolist() for n in prompt_lengths(PROMPTS, seed)]


def matching_prefix(a: list[int], b: list[int]) -> int:
    """Length of the common prefix of two token sequences."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def agreement(a: list[list[int]], b: list[list[int]]) -> dict[str, float]:
    """Share of identical continuations and their mean common prefix (tokens)."""
    pairs = list(zip(a, b, strict=False))
    return {"identical": round(sum(x == y for x, y in pairs) / len(pairs), 3),
            "mean_prefix": round(statistics.mean(matching_prefix(x, y) for x, y in pairs), 1)}


def hf_generate(model: Any, prompts: list[list[int]], new_tokens: int = NEW_TOKENS) -> tuple[float, list[list[int]]]:
    """transformers' generate, one batch, dynamic cache, every row to full length; (seconds, new ids)."""
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
                                eos_token_id=[LLAMA_3B["eos_token_id"]], pad_token_id=pad)
    torch.cuda.synchronize()
    return time.perf_counter() - started, output[:, len(ids[0]):].tolist()


def lab_generate(model: Any, prompts: list[list[int]], batch_size: int, cuda_graph: bool = True,
                 new_tokens: int = NEW_TOKENS) -> tuple[float, list[list[int]], dict]:
    """lab.eval.generation's static decoder with no stop token (full length); (seconds, new ids, what ran)."""
    import torch

    from lab.eval.generation import generate_ids

    torch.cuda.synchronize()
    started = time.perf_counter()
    out, ran = generate_ids(model, prompts, new_tokens, [], LLAMA_3B["pad_token_id"], batch_size, decode="static",
                            cuda_graph=cuda_graph)
    torch.cuda.synchronize()
    return time.perf_counter() - started, out, ran


def figures(seconds: float, sequences: int, new_tokens: int = NEW_TOKENS) -> dict[str, Any]:
    return {"seconds": round(seconds, 2), "sequences": sequences, "new_tokens": sequences * new_tokens,
            "tokens_per_s": round(sequences * new_tokens / seconds, 1)}


def fresh_process(decoder: str, seed: int, batch_size: int) -> dict[str, Any]:
    """What an evaluate stage pays: a new process's first batch of 100 (allocator growth, library
    handles, kernel selection, the graph capture), then a second identical call."""
    import torch

    torch.backends.cuda.enable_cudnn_sdp(False)  # what lab.eval.generation does on CUDA
    started = time.perf_counter()
    model, _ = build_random_llama(LLAMA_3B, seed=0)
    model.eval()
    build_s = time.perf_counter() - started
    prompts = make_prompts(seed)
    if decoder == "static_graph":
        first, second = (lab_generate(model, prompts, batch_size)[0] for _ in range(2))
    else:
        first, second = (hf_generate(model, prompts)[0] for _ in range(2))
    return {"first_call_s": round(first, 2), "second_call_s": round(second, 2),
            "first_call_overhead_s": round(first - second, 2), "model_build_s": round(build_s, 1),
            "batch_size": batch_size}


def run_fresh(decoder: str, seed: int, batch_size: int = PROMPTS) -> dict[str, Any]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--fresh", decoder, "--seed", str(seed),
                           "--batch-size", str(batch_size)], capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        return {"error": done.stderr[-3000:]}
    return {**json.loads(lines[-1].removeprefix("RESULT ")), "process_s": round(time.perf_counter() - started, 1)}


def pipeline_estimates(fresh: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
    """Two evaluate stages, each a fresh process: the sum of two measured first calls (capture or
    compile included), or twice the one measured where only one process ran."""
    out = {}
    for name, runs in fresh.items():
        firsts = [r["first_call_s"] for r in runs if "first_call_s" in r]
        if len(firsts) >= 2:
            out[f"two_processes_{name}"] = round(firsts[0] + firsts[1], 1)
        elif firsts:
            out[f"two_processes_{name}_projected"] = round(2 * firsts[0], 1)
    return out


def profile_step(seed: int, out: Path | None) -> None:
    """Where a decode step's GPU time goes: three eager steps of the static decoder at batch 100
    under torch.profiler, kernels ranked by their CUDA time (a graph replay runs the same kernels)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    import lab.eval.generation as generation

    torch.backends.cuda.enable_cudnn_sdp(False)
    model, _ = build_random_llama(LLAMA_3B, seed=0)
    model.eval()
    prompts = make_prompts(seed)
    lab_generate(model, prompts, PROMPTS, cuda_graph=False, new_tokens=4)  # warm
    calls = []
    original = generation.static_batch

    def traced(*args: Any, **kwargs: Any) -> Any:
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            result = original(*args, **kwargs)
        calls.append(prof)
        return result

    generation.static_batch = traced
    try:
        for new_tokens in (1, 41):  # the prefill alone, then with 40 decode steps
            lab_generate(model, prompts, PROMPTS, cuda_graph=False, new_tokens=new_tokens)
    finally:
        generation.static_batch = original
    tables = [f"new_tokens={n}\n" + prof.key_averages().table(sort_by="cuda_time_total", row_limit=30)
              for n, prof in zip((1, 41), calls, strict=True)]
    print("\n".join(tables))
    if out is not None:
        write_json(out, {**result_header(__file__, "CUDA kernels of the static decoder at batch 100, eager: "
                                                   "the prefill alone, then with 40 decode steps"),
                         "kernel_tables": tables})


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/eval_throughput.json"))
    parser.add_argument("--single", type=int, default=5, help="prompts run one at a time with the static decoder")
    parser.add_argument("--single-hf", type=int, default=1, help="prompts run one at a time with generate")
    parser.add_argument("--seed", type=int, default=3407)
    parser.add_argument("--batch-size", type=int, default=PROMPTS)
    parser.add_argument("--fresh", choices=["static_graph", "hf_dynamic"], help=argparse.SUPPRESS)
    parser.add_argument("--no-fresh-processes", action="store_true")
    parser.add_argument("--no-hf", action="store_true", help="skip transformers' generate (saves ~30 s)")
    parser.add_argument("--fresh-hf", action="store_true", help="also a fresh process with transformers' generate")
    parser.add_argument("--profile", type=Path, help="only profile decode steps; write the kernel tables (JSON) here")
    return parser.parse_args()


def fresh_processes(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """First-call times of fresh processes, as the two evaluate stages of a pipeline run see them."""
    fresh: dict[str, list[dict[str, Any]]] = {}
    if not args.no_fresh_processes:
        fresh["static_graph_b100"] = [run_fresh("static_graph", args.seed) for _ in range(2)]
        fresh["static_graph_b50"] = [run_fresh("static_graph", args.seed, 50)]
        if args.fresh_hf:
            fresh["hf_dynamic_b100"] = [run_fresh("hf_dynamic", args.seed)]
        print(json.dumps(fresh), flush=True)
    return fresh


def measure(results: dict[str, Any], name: str, run: Any, calls: int = 2) -> list:
    """Call `run` `calls` times; record the last call's figures and the first call's time."""
    import torch

    torch.cuda.reset_peak_memory_stats()
    runs = [run() for _ in range(calls)]
    results[name] = {**figures(runs[-1][0], PROMPTS), "first_call_s": round(runs[0][0], 2),
                     "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
    if len(runs[-1]) > 2:
        results[name]["ran"] = runs[-1][2]
    print(name, json.dumps(results[name]), flush=True)
    return runs


def measure_static(model: Any, prompts: list[list[int]], args: argparse.Namespace,
                   results: dict[str, Any]) -> tuple[list, dict[str, Any]]:
    """The static decoder: graph and eager, batched and one at a time, and the decode step's cost."""
    graph = measure(results, "static_graph_b100", lambda: lab_generate(model, prompts, PROMPTS))
    measure(results, "static_graph_b50", lambda: lab_generate(model, prompts, 50))
    eager = measure(results, "static_eager_b100", lambda: lab_generate(model, prompts, PROMPTS, cuda_graph=False),
                    calls=1)
    prefill = [lab_generate(model, prompts, PROMPTS, new_tokens=1)[0] for _ in range(3)]
    results["prefill_only_b100"] = {"seconds": round(statistics.median(prefill), 3)}
    results["decode_step_ms"] = {
        name: round(1000 * (results[name]["seconds"] - results["prefill_only_b100"]["seconds"]) / (NEW_TOKENS - 1), 2)
        for name in ("static_graph_b100", "static_eager_b100")}
    single_s, single_out = 0.0, []
    for prompt in prompts[:args.single]:
        seconds, out, _ = lab_generate(model, [prompt], 1)
        single_s += seconds
        single_out += out
    results["one_at_a_time_static_graph"] = {**figures(single_s, args.single),
                                             "note": f"first {args.single} of the {PROMPTS} prompts, batch 1"}
    checks = {"graph_vs_eager_b100": agreement(graph[-1][1], eager[-1][1]),
              "single_vs_batched_static_graph": agreement(single_out, graph[-1][1][:args.single])}
    return graph, checks


def measure_hf(model: Any, prompts: list[list[int]], args: argparse.Namespace, results: dict[str, Any],
               graph: list) -> dict[str, Any]:
    """transformers' generate, batched and one at a time; its agreement with the static decoder."""
    hf = measure(results, "hf_dynamic_b100", lambda: hf_generate(model, prompts))
    if args.single_hf:
        hf_single = [hf_generate(model, [p]) for p in prompts[:args.single_hf]]
        results["one_at_a_time_hf_dynamic"] = {**figures(sum(s for s, _ in hf_single), args.single_hf),
                                               "note": f"first {args.single_hf} of the {PROMPTS} prompts"}
    return {"static_graph_vs_hf_dynamic_b100": agreement(graph[-1][1], hf[-1][1])}


def payload_for(results: dict[str, Any], fresh: dict[str, Any], parameters: int) -> dict[str, Any]:
    """The results JSON: every variant, the 200-generation totals, and the machine."""
    per_100 = {name: PROMPTS * NEW_TOKENS / results[name]["tokens_per_s"] for name in results
               if isinstance(results[name], dict) and "tokens_per_s" in results[name]}
    return {
        **result_header(__file__, "greedy generation, Llama-3.2-3B architecture (random weights, bf16), "
                                  f"{PROMPTS} prompts of {PROMPT_MIN}-{PROMPT_MAX} tokens, {NEW_TOKENS} new tokens "
                                  "each, every sequence full length; SDPA without cuDNN's backend"),
        "parameters": parameters,
        "variants": results, "fresh_process": fresh,
        # A base-vs-fine-tuned evaluation generates twice for the same prompts with the same
        # architecture (the adapter is merged), in two evaluate processes.
        "seconds_200_generations": {
            **{f"{name}_steady_x2": round(2 * seconds, 1) for name, seconds in per_100.items()},
            **pipeline_estimates(fresh),
        },
        "fastest_steady": min(per_100, key=per_100.get),
    }


def main() -> None:
    args = parse_args()
    if args.fresh:
        print("RESULT " + json.dumps(fresh_process(args.fresh, args.seed, args.batch_size)), flush=True)
        return
    if args.profile:
        profile_step(args.seed, args.profile)
        return
    import torch

    fresh = fresh_processes(args)  # first, on a GPU nothing else has touched in this run
    torch.backends.cuda.enable_cudnn_sdp(False)
    model, parameters = build_random_llama(LLAMA_3B, seed=0)
    model.eval()
    prompts = make_prompts(args.seed)
    results: dict[str, Any] = {}
    lab_generate(model, [prompts[0][:32]], 1, new_tokens=8)  # CUDA context and library handles
    graph, checks = measure_static(model, prompts, args, results)
    if not args.no_hf:
        checks |= measure_hf(model, prompts, args, results, graph)
    # Greedy agreement: random weights give near-tied logits everywhere, so bf16 rounding
    # differences between kernels flip choices; graph vs eager runs the same kernels.
    results["agreement"] = checks
    payload = payload_for(results, fresh, parameters)
    write_json(args.out, payload)
    print(json.dumps({"gpu": payload["machine"].get("gpu"),
                      **{k: payload[k] for k in ("seconds_200_generations", "fastest_steady")}}))
    print(json.dumps({"decode_step_ms": results["decode_step_ms"], "agreement": results["agreement"]}))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
