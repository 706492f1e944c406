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


def load_tokenizer(model_dir: Path | str) -> Any:
    """The tokenizer saved in `model_dir`, with a pad token."""
    from transformers import AutoTokenizer

    return ensure_pad_token(AutoTokenizer.from_pretrained(model_dir))


def load_for_inference(base_dir: Path, adapter_dir: Path | None, device: str) -> tuple[Any, Any]:
    """Base model (plus the LoRA adapter, merged) in the same precision for both evaluations."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with no_library_progress_bars():
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype).to(device)
        if adapter_dir is not None:
            from peft import PeftModel

            # Merging removes the adapter's extra matmuls from every generated token.
            model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    model.eval()
    tokenizer = load_tokenizer(adapter_dir if adapter_dir is not None else base_dir)
    return model, tokenizer
