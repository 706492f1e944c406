"""Loading the model for inference: the base model, or the base with the LoRA adapter merged.

transformers is imported inside functions, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def ensure_pad_token(tokenizer: Any) -> Any:
    """Batched generation and padded training need a pad token; reuse EOS where the model has none."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@contextlib.contextmanager
def no_library_progress_bars() -> Iterator[None]:
    """Hide transformers' and datasets' own progress bars (weight loading, dataset mapping) for the
    duration: a stage shows one bar for its real work, and these would flash by around it."""
    import datasets
    from transformers.utils import logging as transformers_logging

    restore_transformers = transformers_logging.is_progress_bar_enabled()
    restore_datasets = not datasets.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if restore_transformers:
            transformers_logging.enable_progress_bar()
        if restore_datasets:
            datasets.enable_progress_bars()


def load_tokenizer(model_dir: Path | str, trust_remote_code: bool = False) -> Any:
    """The tokenizer saved in `model_dir`, with a pad token (its own Python code runs only with
    `trust_remote_code`: model.trust_remote_code)."""
    from transformers import AutoTokenizer

    return ensure_pad_token(AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code))


def kbit_config(quantization: str, compute_dtype: Any) -> Any:
    """bitsandbytes' config for a 4-/8-bit base (None for "none"): one definition for training (hf
    backend) and evaluation, so a fine-tuned model can be evaluated on the base it was trained on.
    NF4 with double quantization is QLoRA's recipe, and what Unsloth's 4-bit loading uses."""
    if quantization == "none":
        return None
    from transformers import BitsAndBytesConfig

    if quantization == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=compute_dtype)
    return BitsAndBytesConfig(load_in_8bit=True)


def load_for_inference(base_dir: Path, adapter_dir: Path | None, device: str, quantization: str = "none",
                       trust_remote_code: bool = False) -> tuple[Any, Any]:
    """Base model (plus the LoRA adapter) in the same precision for both evaluations: bf16 on a GPU,
    fp32 on CPU, the adapter merged. With quantization "4bit"/"8bit" (a CUDA GPU only) the base is
    loaded quantized as in training and the adapter stays unmerged: merging into k-bit weights
    would round the update away. Safetensors weights only; the model's own Python code runs only
    with `trust_remote_code` (model.trust_remote_code)."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    kbit = kbit_config(quantization, dtype)
    safe = {"use_safetensors": True, "trust_remote_code": trust_remote_code}
    with no_library_progress_bars():
        if kbit is None:
            model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype, **safe).to(device)
        else:
            model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype, quantization_config=kbit,
                                                         device_map={"": 0}, **safe)
        if adapter_dir is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter_dir)
            if kbit is None:
                # Merging removes the adapter's extra matmuls from every generated token.
                model = model.merge_and_unload()
    model.eval()
    tokenizer = load_tokenizer(adapter_dir if adapter_dir is not None else base_dir, trust_remote_code)
    return model, tokenizer
