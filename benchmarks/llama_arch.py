"""The Llama-3.2-3B architecture with random weights, and the FLOPs figures the GPU benchmarks share.

Speed and memory do not depend on the weights' values, so the GPU benchmarks (which have no Hub
access) build the reference lab's base model from its config with random weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def peak_tflops(gpu_name: str) -> float | None:
    """The bf16 dense peak of the named GPU (longest matching key wins), or None if unknown."""
    matches = [key for key in PEAK_BF16_TFLOPS if key in gpu_name]
    return PEAK_BF16_TFLOPS[max(matches, key=len)] if matches else None


# Training FLOPs per token per parameter of the base model. LoRA on a frozen base runs the forward
# pass (2·N) and, backward, only the gradients with respect to activations (2·N): the frozen
# weights get no weight gradients, the other 2·N of full fine-tuning's usual 6·N. The adapters'
# own FLOPs (<1% of N at r=16) and attention's are left out.
LORA_FLOPS_PER_PARAMETER = 4
FULL_FINETUNING_FLOPS_PER_PARAMETER = 6


def mfu(parameters: int, tokens_per_s: float, peak: float | None,
        flops_per_parameter: int = LORA_FLOPS_PER_PARAMETER) -> float | None:
    """Model FLOPs utilisation: flops_per_parameter·N·tokens/s over the GPU's bf16 dense peak."""
    return round(flops_per_parameter * parameters * tokens_per_s / (peak * 1e12), 4) if peak else None


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
