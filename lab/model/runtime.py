"""What actually runs on this machine: backend, device, dtype and quantization, resolved from the
params and the hardware; the peak memory a run used, and what to lower when the GPU runs out of it.

torch and unsloth are imported inside functions: with the unsloth backend, Unsloth must be
imported before transformers so that its patches apply, and resolve_runtime is where that happens.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from lab.core.config import TrainConfig
from lab.core.errors import RuntimeConfigError


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


def world_size() -> int:
    """How many processes this run has (1 unless started by a distributed launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    """This process's index on its machine: the GPU it loads the model on (a distributed launcher sets it)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def resolve_runtime(train: TrainConfig, cuda_available: bool | None = None, bf16_supported: bool = True) -> Runtime:
    """Resolve the auto params; refuse what cannot run here instead of silently running something else.

    cuda_available None asks torch (and then whether the GPU supports bf16); tests pass both."""
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
        bf16_supported = cuda_available and torch.cuda.is_bf16_supported()
    backend = train.backend if train.backend != "auto" else ("unsloth" if cuda_available else "hf")
    if backend == "unsloth" and not cuda_available:
        raise RuntimeConfigError("train.backend=unsloth needs a CUDA GPU; use auto or hf on CPU")
    quantization = resolve_quantization(train.quantization, cuda_available)
    if backend == "unsloth":
        try:
            import unsloth  # noqa: F401
        except ImportError as error:
            raise RuntimeConfigError(
                f"train.backend={backend} but unsloth does not import ({error}); "
                "pip install -r requirements-gpu.txt, or set train.backend=hf"
            ) from None
    dtype = _resolve_dtype(train.precision, backend, cuda_available, bf16_supported)
    return Runtime(backend=backend, device="cuda" if cuda_available else "cpu", dtype=dtype, quantization=quantization)


def resolve_quantization(quantization: str, cuda_available: bool) -> str:
    """train.quantization on this machine: auto is 4bit (QLoRA) on a CUDA GPU and none on CPU, where
    an explicit 4bit/8bit is refused (bitsandbytes' k-bit base layers need CUDA)."""
    resolved = quantization if quantization != "auto" else ("4bit" if cuda_available else "none")
    if resolved != "none" and not cuda_available:
        raise RuntimeConfigError(f"train.quantization={resolved} needs a CUDA GPU (bitsandbytes' k-bit base layers); "
                                 "use auto or none on CPU")
    return resolved


def _resolve_dtype(precision: str, backend: str, cuda_available: bool, bf16_supported: bool) -> str:
    """The training dtype for train.precision; auto is bf16 on a GPU that has it (else fp16) and
    fp32 on CPU, where bf16 autocast gains ~10% but changes the loss."""
    if precision == "auto":
        return ("bfloat16" if bf16_supported else "float16") if cuda_available else "float32"
    if precision == "bf16" and cuda_available and not bf16_supported:
        raise RuntimeConfigError("train.precision=bf16 but this GPU has no bf16; use fp16 or auto")
    if precision == "fp16" and not cuda_available:
        raise RuntimeConfigError("train.precision=fp16 needs a CUDA GPU (fp16 mixed precision); use bf16, fp32 or "
                                 "auto on CPU")
    if precision == "fp32" and backend == "unsloth":
        raise RuntimeConfigError("train.precision=fp32 with train.backend=unsloth: Unsloth trains in 16 bits; "
                                 "use auto, bf16 or fp16, or the hf backend")
    return {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[precision]


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


def cuda_memory_report() -> str:
    """The GPU's memory now, as torch sees it: allocated, reserved, peak allocated and the card's total."""
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device to report memory of"
    device = torch.cuda.current_device()
    figures = {"allocated": torch.cuda.memory_allocated(device), "reserved": torch.cuda.memory_reserved(device),
               "peak allocated": torch.cuda.max_memory_allocated(device)}
    total = torch.cuda.get_device_properties(device).total_memory
    return (", ".join(f"{value / 2**30:.2f} GiB {name}" for name, value in figures.items())
            + f" of {total / 2**30:.2f} GiB on {torch.cuda.get_device_name(device)}")


@contextlib.contextmanager
def out_of_memory_advice(what: str, shape: str, remedies: list[str]) -> Iterator[None]:
    """Re-raise a CUDA out-of-memory error inside as a RuntimeConfigError naming what ran out (`what`, at
    `shape`: the batch size and sequence length), the GPU memory at the time and the param changes that
    fit it (`remedies`)."""
    import torch

    try:
        yield
    except torch.OutOfMemoryError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RuntimeConfigError(f"{what} ran out of GPU memory at {shape} ({cuda_memory_report()}); to fit, "
                                 f"{'; or '.join(remedies)}. torch: {first_line}") from error
