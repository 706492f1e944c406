"""QLoRA SFT throughput on the Llama-3.2-3B architecture: Unsloth vs transformers + bitsandbytes + peft.

usage: python benchmarks/train_throughput.py [--steps 40] [--out benchmarks/results/gpu_train_throughput.json]

Both backends go through the lab's own code (lab.training.load_trainable_model and sft_config,
then trl's SFTTrainer, padding-free), each in its own process: Unsloth patches transformers when
it is imported, so the baseline must never see it. The weights are random (speed and memory do
not depend on their values); the example lengths follow a seeded lognormal mix. Figures: real
(non-pad) tokens/s after warm-up, model FLOPs utilisation (6·N·tokens/s over the GPU's bf16 dense
peak) and peak GPU memory.
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
from machine import machine_info  # noqa: E402

# Llama-3.2-3B-Instruct's architecture (its config.json), the reference lab's base model.
LLAMA_3B: dict[str, Any] = {
    "vocab_size": 128256, "hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 28,
    "num_attention_heads": 24, "num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5, "tie_word_embeddings": True, "bos_token_id": 128000, "eos_token_id": 128009,
    "pad_token_id": 128004,
    "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "high_freq_factor": 4.0,
                        "low_freq_factor": 1.0, "original_max_position_embeddings": 8192},
}
# bf16 dense tensor-core peak from NVIDIA's datasheets (without sparsity), TFLOP/s.
# The H200 has the H100 SXM's compute; only its memory differs.
PEAK_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100 NVL": 835.0, "H100": 989.0, "H200": 989.0}
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


def peak_tflops(gpu_name: str) -> float | None:
    """The bf16 dense peak of the named GPU (longest matching key wins), or None if unknown."""
    matches = [key for key in PEAK_BF16_TFLOPS if key in gpu_name]
    return PEAK_BF16_TFLOPS[max(matches, key=len)] if matches else None


def mfu(parameters: int, tokens_per_s: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation with the 6·N FLOPs-per-token convention (attention FLOPs left out)."""
    return round(6 * parameters * tokens_per_s / (peak * 1e12), 4) if peak else None


def tokens_in_window(micro_batch_tokens: list[int], grad_accum: int, first_step: int, last_step: int) -> int:
    """Tokens of optimizer steps first_step+1 .. last_step, from the per-micro-batch counts in order."""
    return sum(micro_batch_tokens[first_step * grad_accum:last_step * grad_accum])


class CountingCollator:
    """Wraps the trainer's collator and records the real tokens of each micro-batch, in order."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.tokens, self.padding_free = inner, [], None

    def __call__(self, examples: list[dict]) -> dict:
        batch = self.inner(examples)
        mask = batch.get("attention_mask")
        self.tokens.append(int(mask.sum()) if mask is not None else int(batch["input_ids"].numel()))
        self.padding_free = "position_ids" in batch and mask is None and batch["input_ids"].shape[0] == 1
        return batch


def build_random_llama(arch: dict[str, Any], out_dir: Path | None = None, seed: int = 0) -> tuple[Any, int]:
    """A randomly initialised bf16 LlamaForCausalLM on the GPU (saved with a stub tokenizer if
    out_dir is given); returns the model and its parameter count (tied embeddings counted once)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    with torch.device("cuda"):
        model = LlamaForCausalLM(LlamaConfig(**arch, dtype="bfloat16")).to(torch.bfloat16)
    parameters = sum(p.numel() for p in model.parameters())
    if out_dir is not None:
        from tokenizers import Tokenizer, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast

        model.save_pretrained(out_dir)
        # Rows arrive pre-tokenized: the tokenizer only supplies the pad and EOS tokens.
        vocab = {f"w{i}": i for i in range(1000)} | {"<unk>": 1000, "<pad>": 1001, "<eos>": 1002}
        stub = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
        stub.pre_tokenizer = pre_tokenizers.Whitespace()
        PreTrainedTokenizerFast(tokenizer_object=stub, unk_token="<unk>", pad_token="<pad>",
                                eos_token="<eos>").save_pretrained(out_dir)
    return model, parameters


def run_worker(backend: str, model_dir: Path, steps: int, seed: int, batch: tuple[int, int] = (2, 4)) -> dict[str, Any]:
    """Train `steps` optimizer steps with one backend through the lab's code; return its figures."""
    from lab.config import LabConfig, TrainConfig
    from lab.modeling import resolve_runtime

    # The lab's hyperparameters (batch 2 x grad-accum 4, adamw_8bit, lr 2e-4, r=16 on all linear
    # layers) at the lab's max_seq_length; checkpointing on, as a 3B model on a GPU is run.
    config = LabConfig(seed=seed, train=TrainConfig(backend=backend, quantization="4bit", max_seq_length=MAX_LEN,
                                                    gradient_checkpointing=True, padding_free=True,
                                                    batch_size=batch[0], grad_accum=batch[1]))
    runtime = resolve_runtime(config.train)  # imports unsloth (before transformers) for that backend
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTTrainer

    from lab.training import load_trainable_model, sft_config

    started = time.perf_counter()
    model, tokenizer = load_trainable_model(model_dir, config, runtime)
    load_s = time.perf_counter() - started
    per_step = config.train.batch_size * config.train.grad_accum
    lengths = sample_lengths(steps * per_step, seed)
    rows = synthetic_rows(lengths, LLAMA_3B["vocab_size"], seed)
    marks: dict[str, float] = {}
    step_ends: list[float] = []  # per-step wall times show compiles or recompiles inside the window

    class Clock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            torch.cuda.synchronize()
            step_ends.append(time.perf_counter())
            if state.global_step == WARMUP_STEPS:
                marks["t0"] = step_ends[-1]

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            torch.cuda.synchronize()
            marks["t1"], marks["steps"] = time.perf_counter(), state.global_step

    with tempfile.TemporaryDirectory() as work_dir:
        trainer = SFTTrainer(model=model, args=sft_config(config, runtime, Path(work_dir)),
                             train_dataset=Dataset.from_list(rows), processing_class=tokenizer, callbacks=[Clock()])
        counter = CountingCollator(trainer.data_collator)
        trainer.data_collator = counter
        torch.cuda.reset_peak_memory_stats()
        trainer.train()
    seconds = marks["t1"] - marks["t0"]
    tokens = tokens_in_window(counter.tokens, config.train.grad_accum, WARMUP_STEPS, int(marks["steps"]))
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {
        "backend": backend, "steps": int(marks["steps"]), "timed_steps": int(marks["steps"]) - WARMUP_STEPS,
        "timed_tokens": tokens, "timed_s": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
        "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2),
        "load_s": round(load_s, 1), "padding_free_batches": counter.padding_free,
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
        "mean_example_tokens": round(sum(lengths) / len(lengths), 1),
        "step_s": [round(b - a, 3) for a, b in zip(step_ends, step_ends[1:], strict=False)],
        "step_tokens": [sum(counter.tokens[i:i + config.train.grad_accum])
                        for i in range(config.train.grad_accum, len(counter.tokens), config.train.grad_accum)],
    }


def run_backend(backend: str, model_dir: Path, steps: int, seed: int, timeout_s: int,
                batch: tuple[int, int]) -> dict[str, Any]:
    """One backend in a fresh process; its failure is recorded, not raised."""
    command = [sys.executable, __file__, "--worker", backend, "--model-dir", str(model_dir),
               "--steps", str(steps), "--seed", str(seed), "--batch-size", str(batch[0]), "--grad-accum", str(batch[1])]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as error:
        tail = error.stderr.decode(errors="replace") if isinstance(error.stderr, bytes) else error.stderr or ""
        return {"backend": backend, "error": f"timed out after {timeout_s} s", "stderr_tail": tail[-4000:]}
    sys.stderr.write(done.stderr[-6000:])
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        return {"backend": backend, "error": f"exit {done.returncode}", "stderr_tail": done.stderr[-4000:]}
    return {**json.loads(lines[-1].removeprefix("RESULT ")), "process_s": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu_train_throughput.json"))
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per backend (the first 5 untimed)")
    parser.add_argument("--seed", type=int, default=3407)
    parser.add_argument("--backends", nargs="+", default=["unsloth", "hf"])
    parser.add_argument("--model-dir", type=Path, default=Path("/tmp/rand-llama-3b"))
    parser.add_argument("--timeout", type=int, default=300, help="seconds per backend process")
    # The lab's 2 x 4. With padding-free batches, 8 x 1 trains on the same 8 examples per optimizer
    # step in one larger forward pass, which amortises the per-pass fixed costs.
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--grad-accum", type=int, default=4)
    parser.add_argument("--worker", choices=["unsloth", "hf"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = run_worker(args.worker, args.model_dir, args.steps, args.seed, (args.batch_size, args.grad_accum))
        print("RESULT " + json.dumps(result), flush=True)
        return

    import torch

    model, parameters = build_random_llama(LLAMA_3B, args.model_dir)
    del model
    torch.cuda.empty_cache()
    machine = machine_info()
    peak = peak_tflops(machine.get("gpu", ""))
    results = {}
    for backend in args.backends:
        result = run_backend(backend, args.model_dir, args.steps, args.seed, args.timeout,
                             (args.batch_size, args.grad_accum))
        if "tokens_per_s" in result:
            result["mfu"] = mfu(parameters, result["tokens_per_s"], peak)
        results[backend] = result
        print(json.dumps(result), flush=True)
    speedup = None
    if all("tokens_per_s" in results.get(b, {}) for b in ("unsloth", "hf")):
        speedup = round(results["unsloth"]["tokens_per_s"] / results["hf"]["tokens_per_s"], 2)
    payload = {
        "benchmark": "QLoRA SFT, Llama-3.2-3B architecture (random weights), lab hyperparameters, padding-free",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "gpu": machine.get("gpu"), "machine": machine,
        "model": {"architecture": "LlamaForCausalLM", **{k: v for k, v in LLAMA_3B.items() if k != "rope_parameters"},
                  "parameters": parameters, "weights": "random (seed 0), bf16 on disk, 4-bit nf4 when loaded"},
        "data": {"distribution": f"lognormal(median {LENGTH_MEDIAN}, sigma {LENGTH_SIGMA}) clipped to "
                                 f"[{MIN_LEN}, {MAX_LEN}], seed {args.seed}", "prompt_share_masked": PROMPT_SHARE},
        "training": {"batch_size": args.batch_size, "grad_accum": args.grad_accum, "optimizer": "adamw_8bit",
                     "dtype": "bfloat16",
                     "lora": "r=16 alpha=16 on q,k,v,o,gate,up,down", "gradient_checkpointing": True,
                     "steps": args.steps, "warmup_steps_untimed": WARMUP_STEPS},
        "mfu_convention": "6 * parameters * tokens_per_s / peak; attention FLOPs not counted",
        "peak_bf16_tflops_assumed": peak,
        "backends": results, "unsloth_speedup": speedup,
        "versions": _versions(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps({"gpu": payload["gpu"], "speedup": speedup,
                      **{b: {k: r.get(k) for k in ("tokens_per_s", "mfu", "peak_allocated_gib", "error")}
                         for b, r in results.items()}}))


def _versions() -> dict[str, str | None]:
    import importlib.metadata

    names = ("torch", "transformers", "trl", "peft", "bitsandbytes", "unsloth", "unsloth_zoo", "accelerate")
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
