"""What runs where: the runtime resolved from the params and the machine, and the backends' modes."""

import pytest

from lab.core.choices import CheckpointingMode, allowed
from lab.core.errors import RuntimeConfigError
from lab.model.runtime import peak_memory_gib, resolve_runtime
from lab.train.backends import CHECKPOINTING_MODES

from .conftest import make_config


def test_runtime_on_cpu_is_hf_without_quantization_in_float32():
    runtime = resolve_runtime(make_config().train, cuda_available=False)
    assert runtime.as_dict() == {"backend": "hf", "device": "cpu", "dtype": "float32", "quantization": "none"}


@pytest.mark.parametrize("train", [{"backend": "unsloth"}, {"quantization": "4bit"}, {"quantization": "8bit"}])
def test_impossible_runtime_requests_fail_instead_of_silently_changing(train):
    with pytest.raises(RuntimeConfigError, match="needs a CUDA GPU"):
        resolve_runtime(make_config({"train": train}).train, cuda_available=False)


def test_runtime_on_gpu_is_unsloth_qlora_or_names_the_missing_package():
    train = make_config().train
    try:
        import unsloth  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeConfigError, match="requirements-gpu.txt"):
            resolve_runtime(train, cuda_available=True)
    else:  # pragma: no cover - only where unsloth is installed
        assert resolve_runtime(train, cuda_available=True).quantization == "4bit"


def test_gpu_without_bf16_trains_in_float16_with_the_hf_backend():
    train = make_config({"train": {"backend": "hf", "quantization": "none"}}).train
    runtime = resolve_runtime(train, cuda_available=True, bf16_supported=False)
    assert (runtime.backend, runtime.device, runtime.dtype) == ("hf", "cuda", "float16")


def test_every_checkpointing_mode_maps_to_an_unsloth_value():
    assert sorted(CHECKPOINTING_MODES) == sorted(allowed(CheckpointingMode))


def test_peak_memory_on_cpu_is_the_resident_set_in_gib():
    assert 0.01 < peak_memory_gib("cpu") < 1024
