"""The trainable model for each backend: the base model with LoRA adapters on the configured
projections, through Unsloth (train.backend: unsloth) or transformers + peft (hf).

Both are imported inside functions: Unsloth must come before transformers (lab.runtime's
resolve_runtime imports it first), and the hf backend must not import Unsloth at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.config import LabConfig
from lab.modeling import ensure_pad_token
from lab.runtime import Runtime

# Unsloth's use_gradient_checkpointing value for each train.checkpointing_mode: "unsloth" (its own,
# which offloads the saved activations to CPU memory) or "plain" (recompute only; more GPU memory,
# and faster at the lab's micro-batches on an H100/H200).
CHECKPOINTING_MODES: dict[str, str | bool] = {"unsloth": "unsloth", "plain": True}


def load_trainable_model(base_dir: Path, config: LabConfig, runtime: Runtime) -> tuple[Any, Any]:
    """The base model with LoRA adapters and its tokenizer (with a pad token), for runtime.backend."""
    if runtime.backend == "unsloth":
        return _load_unsloth(base_dir, config, runtime)
    return _load_hf(base_dir, config, runtime)


def _load_unsloth(base_dir: Path, config: LabConfig, runtime: Runtime) -> tuple[Any, Any]:
    """Unsloth's FastLanguageModel with its LoRA, k-bit loading and gradient checkpointing."""
    from unsloth import FastLanguageModel

    train, lora = config.train, config.train.lora
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=str(base_dir), max_seq_length=train.max_seq_length, dtype=None,
        load_in_4bit=runtime.quantization == "4bit", load_in_8bit=runtime.quantization == "8bit",
    )
    checkpointing = CHECKPOINTING_MODES[train.checkpointing_mode] if train.gradient_checkpointing else False
    model = FastLanguageModel.get_peft_model(
        model, r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, bias="none",
        target_modules=lora.target_modules, random_state=config.seed, use_gradient_checkpointing=checkpointing,
    )
    if config.model.chat_template:
        from unsloth.chat_templates import get_chat_template

        tokenizer = get_chat_template(tokenizer, chat_template=config.model.chat_template)
    return model, ensure_pad_token(tokenizer)


def _load_hf(base_dir: Path, config: LabConfig, runtime: Runtime) -> tuple[Any, Any]:
    """transformers + peft: bitsandbytes for k-bit bases, LoRA seeded by `seed`."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    dtype = getattr(torch, runtime.dtype)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if runtime.quantization == "4bit":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype
        )
    elif runtime.quantization == "8bit":
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    if runtime.device == "cuda":
        kwargs["device_map"] = {"": 0}
    torch.manual_seed(config.seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir, **kwargs)
    if runtime.quantization != "none":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.train.gradient_checkpointing)
    lora = config.train.lora
    peft_config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                             target_modules=lora.target_modules, bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, peft_config)
    tokenizer = ensure_pad_token(AutoTokenizer.from_pretrained(base_dir))
    return model, tokenizer
