"""What actually runs on this machine: backend, device, dtype and quantization, resolved from the
params and the hardware, and the peak memory a run used.

torch and unsloth are imported inside functions: with the unsloth backend, Unsloth must be
imported before transformers so that its patches apply, and resolve_runtime is where that happens.
"""

from __future__ import annotations

import resource
import sys
from dataclasses import asdict, dataclass

from lab.config import TrainConfig
from lab.errors import RuntimeConfigError


@dataclass(frozen=True)
class Runtime:
    """What actually runs, resolved from the params and the machine; recorded in the metrics."""

    backend: str
    device: str
    dtype: str
    quantization: str

    def as_dict(self) -> dict[str, str]:
        """Plain-dict view, for the metrics."""
        return asdict(self)


def resolve_runtime(train: TrainConfig, cuda_available: bool | None = None, bf16_supported: bool = True) -> Runtime:
    """Resolve the auto params; refuse what cannot run here instead of silently running something else.

    cuda_available None asks torch (and then whether the GPU supports bf16); tests pass both."""
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
    """"cuda" where torch sees a CUDA GPU, else "cpu" (the evaluate stage's device)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def peak_memory_gib(device: str) -> float:
    """Peak GPU memory allocated by torch, or the process's peak resident memory on CPU."""
    if device == "cuda":
        import torch

        return round(torch.cuda.max_memory_allocated() / 2**30, 3)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (2**30 if sys.platform == "darwin" else 2**20), 3)
