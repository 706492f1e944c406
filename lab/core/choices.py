"""The allowed values of params.yaml's word-valued keys, each listed once as a `Literal` type (lab.core.config
types the params with them; the modules that act on a value read its list from here), and the LoRA target presets."""

from __future__ import annotations

from typing import Any, Literal, get_args

# Allowed values, each listed once; the modules that act on them read them from here.
Backend = Literal["auto", "unsloth", "hf"]
Quantization = Literal["auto", "4bit", "8bit", "none"]
CheckpointingMode = Literal["unsloth", "plain"]
PackedAttention = Literal["per_example", "library"]
OnInvalid = Literal["error", "drop"]
SameRoleTurns = Literal["merge", "reject"]
LongSequences = Literal["truncate", "drop"]
RougeType = Literal["rouge1", "rouge2", "rouge3", "rouge4", "rougeL", "rougeLsum"]
RougeTokenizer = Literal["default", "whitespace"]
Decode = Literal["auto", "generate", "static"]
DataFormat = Literal["auto", "sharegpt", "messages", "alpaca", "question_answer", "query_response", "inputs_targets",
                     "oasst", "chat_log"]
LrScheduler = Literal["linear", "cosine", "cosine_with_restarts", "constant", "constant_with_warmup"]
# transformers' OptimizerNames the lab runs (8-bit and paged ones via bitsandbytes: on CPU too, paged as plain).
Optimizer = Literal["adamw_torch", "adamw_torch_fused", "adamw_8bit", "adamw_bnb_8bit", "paged_adamw_8bit",
                    "paged_adamw_32bit", "lion_8bit", "paged_lion_8bit", "adafactor", "sgd", "adagrad", "rmsprop"]
Precision = Literal["auto", "bf16", "fp16", "fp32"]
DataOrder = Literal["shuffle", "curriculum"]
CurriculumKey = Literal["length", "score", "domain"]
AnswerFormat = Literal["keep", "steps", "json"]
FinetunedBase = Literal["full", "as_trained"]
Auto = Literal["auto"]
BatchScaling = Literal["fixed_global", "per_device"]
LrScaling = Literal["none", "linear", "sqrt"]
ExportDtype = Literal["bf16", "fp16", "fp32"]
# The torch dtype each export.dtype names (getattr(torch, name) where torch is loaded).
TORCH_DTYPES: dict[str, str] = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
# Unsloth's GGUF quantizations (its save_pretrained_gguf's quantization_method), less the importance-matrix
# (iq*) ones: not_quantized, fast_quantized and quantized are its aliases of f16, q8_0 and q4_k_m.
GgufQuantization = Literal["not_quantized", "fast_quantized", "quantized", "f32", "bf16", "f16", "q8_0", "q4_k_m",
                           "q5_k_m", "q2_k", "q2_k_l", "q3_k_l", "q3_k_m", "q3_k_s", "q3_k_xs", "q4_0", "q4_1",
                           "q4_k_s", "q4_k", "q5_k", "q5_0", "q5_1", "q5_k_s", "q6_k"]
# The chat CLI's ratings (tools/chat.py /rate N): whole numbers in this range, highest best; and what prepare does
# with an answer that has none (feedback.unrated).
MIN_RATING, MAX_RATING = 1, 5
Unrated = Literal["keep", "drop"]
# LoRA target presets, usable in train.lora.target_modules beside module names (Llama-style names,
# which Llama, Qwen, Mistral and SmolLM share).
LORA_PRESETS: dict[str, tuple[str, ...]] = {
    "attention": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "mlp": ("gate_proj", "up_proj", "down_proj"),
    "all": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
}


def allowed(literal: Any) -> tuple[str, ...]:
    """The allowed values of one of the Literal types above."""
    return get_args(literal)
