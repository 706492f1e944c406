"""CPU checks of the GPU benchmarks' helpers: what they count and how they derive their figures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import eval_throughput as ev  # noqa: E402
import llama_arch  # noqa: E402
import train_throughput as tt  # noqa: E402


def test_lengths_are_seeded_clipped_and_average_about_500() -> None:
    lengths = tt.sample_lengths(20000, 3407)
    assert lengths == tt.sample_lengths(20000, 3407)
    assert min(lengths) >= tt.MIN_LEN and max(lengths) == tt.MAX_LEN  # the long tail reaches the cap
    assert 450 < sum(lengths) / len(lengths) < 550


def test_synthetic_rows_mask_the_prompt_share() -> None:
    rows = tt.synthetic_rows([100, 33], vocab=1000, seed=0)
    assert [len(r["input_ids"]) for r in rows] == [100, 33]
    assert rows[0]["assistant_masks"] == [0] * 40 + [1] * 60
    assert all(0 <= t < 1000 for r in rows for t in r["input_ids"])


def test_peak_and_mfu() -> None:
    assert llama_arch.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert llama_arch.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert llama_arch.peak_tflops("NVIDIA H200") == 989.0
    assert llama_arch.peak_tflops("NVIDIA A10G") is None
    # LoRA: 4 * 1e9 params * 1e4 tokens/s = 4e13 FLOP/s = 40 TFLOP/s of 989; full fine-tuning's 6·N: 60.
    assert llama_arch.mfu(10**9, 1e4, 989.0) == pytest.approx(40 / 989, abs=1e-4)
    assert llama_arch.mfu(10**9, 1e4, 989.0, flops_per_parameter=6) == pytest.approx(60 / 989, abs=1e-4)
    assert llama_arch.mfu(10**9, 1e4, None) is None


def test_tokens_in_window_skips_the_warmup_steps() -> None:
    micro = [10, 20, 30, 40, 50, 60]  # 3 optimizer steps of 2 micro-batches
    assert tt.tokens_in_window(micro, grad_accum=2, first_step=1, last_step=3) == 30 + 40 + 50 + 60
    assert tt.tokens_in_window(micro, grad_accum=2, first_step=0, last_step=1) == 30


def test_counting_collator_counts_real_tokens_padding_free_and_padded() -> None:
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    examples = [{"input_ids": [1, 2, 3], "assistant_masks": [0, 1, 1]},
                {"input_ids": [4, 5], "assistant_masks": [0, 1]}]
    free = tt.CountingCollator(DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True))
    free(examples)
    assert free.tokens == [5] and free.padding_free is True
    padded = tt.CountingCollator(DataCollatorForLanguageModeling(pad_token_id=0, padding_free=False))
    padded(examples)
    assert padded.tokens == [5] and padded.padding_free is False  # the pad token is not counted
    assert padded.padded == [6] and free.padded == [5]  # what the GPU computed, pad included


def test_llama_3b_has_3_2b_parameters() -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**llama_arch.LLAMA_3B))
    assert sum(p.numel() for p in model.parameters()) == 3_212_749_824  # Llama-3.2-3B, tied embeddings


def test_left_pad_and_prefix() -> None:
    ids, masks = ev.left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids == [[5, 6, 7], [0, 0, 8]] and masks == [[1, 1, 1], [0, 0, 1]]
    assert ev.matching_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert ev.matching_prefix([1, 2], [1, 2]) == 2
    lengths = ev.prompt_lengths(100, 3407)
    assert all(ev.PROMPT_MIN <= n <= ev.PROMPT_MAX for n in lengths) and 280 < sum(lengths) / 100 < 320


def test_pipeline_estimates_sum_two_fresh_processes() -> None:
    fresh = {"static_graph_b100": [{"first_call_s": 3.5}, {"first_call_s": 3.7}],
             "static_graph_b50": [{"first_call_s": 4.9}],
             "hf_dynamic_b100": [{"error": "boom"}]}
    assert ev.pipeline_estimates(fresh) == {"two_processes_static_graph_b100": 7.2,
                                            "two_processes_static_graph_b50_projected": 9.8}
    assert ev.pipeline_estimates({}) == {}


def test_agreement_counts_identical_rows_and_common_prefixes() -> None:
    assert ev.agreement([[1, 2, 3], [4, 5, 6]], [[1, 2, 3], [4, 0, 6]]) == {"identical": 0.5, "mean_prefix": 2.0}


def test_speedups_are_against_each_hf_variant() -> None:
    results = {"unsloth/padding_free": {"tokens_per_s": 3000.0}, "hf/padding_free": {"tokens_per_s": 1500.0},
               "hf/padded": {"tokens_per_s": 2000.0}, "hf/padded_grouped": {"error": "boom"},
               "unsloth/padding_free_no_ckpt": {"tokens_per_s": 4000.0}}
    assert tt.speedups(results) == {"unsloth/padding_free_vs_hf/padding_free": 2.0,
                                    "unsloth/padding_free_vs_hf/padded": 1.5}
    assert tt.speedups({"hf/padded": {"tokens_per_s": 1.0}}) == {}
    # Every variant names the two settings the worker reads.
    assert all({"padding_free", "checkpointing"} <= set(spec) for spec in tt.VARIANTS.values())
