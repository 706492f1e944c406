"""A CUDA out-of-memory error in training or generation ends the stage with one RuntimeConfigError
that names the batch shape, the GPU memory at the time and the params to lower. On CPU the error is
raised by a stand-in for the inner call; the CUDA memory queries are stubbed or skipped."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from lab.core.errors import RuntimeConfigError
from lab.model import runtime as lab_runtime
from lab.model.runtime import cuda_memory_report, out_of_memory_advice

from .conftest import make_config

TORCH_MESSAGE = "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB"
GIB = 2**30


def out_of_memory(*args: Any, **kwargs: Any) -> Any:
    raise torch.OutOfMemoryError(TORCH_MESSAGE)


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.cuda's memory queries as an H100 70 GiB into a run would answer them."""
    answers = {"is_available": True, "current_device": 0, "memory_allocated": 70 * GIB,
               "memory_reserved": 75 * GIB, "max_memory_allocated": 76.5 * GIB,
               "get_device_properties": SimpleNamespace(total_memory=80 * GIB),
               "get_device_name": "NVIDIA H100 80GB HBM3"}
    for name, answer in answers.items():
        monkeypatch.setattr(torch.cuda, name, lambda *args, _answer=answer: _answer)


def test_the_memory_report_reads_torch_cuda_and_says_so_where_there_is_no_gpu(fake_cuda):
    assert cuda_memory_report() == ("70.00 GiB allocated, 75.00 GiB reserved, 76.50 GiB peak allocated of 80.00 GiB "
                                    "on NVIDIA H100 80GB HBM3")


def test_without_cuda_the_report_queries_nothing(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "memory_allocated", out_of_memory)  # would raise if queried
    assert cuda_memory_report() == "no CUDA device to report memory of"


def test_only_out_of_memory_errors_are_rewritten():
    with pytest.raises(ValueError, match="other"), out_of_memory_advice("x", "y", ["z"]):
        raise ValueError("other")
    with pytest.raises(RuntimeConfigError) as error, out_of_memory_advice("x", "shape s", ["lower a", "lower b"]):
        out_of_memory()
    assert isinstance(error.value.__cause__, torch.OutOfMemoryError)


def fake_model() -> Any:
    return SimpleNamespace(device=torch.device("cpu"), config=SimpleNamespace(_attn_implementation="sdpa"))


@pytest.mark.parametrize(("decoder", "inner"), [("generate", "_generate_batch"), ("static", "static_batch")])
def test_generation_out_of_memory_names_the_batch_the_memory_and_the_evaluate_params(monkeypatch, fake_cuda,
                                                                                      decoder, inner):
    from lab.eval import generation

    monkeypatch.setattr(generation, "resolve_decoder", lambda model, decode: (decoder, None))
    monkeypatch.setattr(generation, inner, out_of_memory)
    with pytest.raises(RuntimeConfigError) as error:
        generation.generate_ids(fake_model(), [[5, 6, 7], [5, 6], [5]], max_new_tokens=96, stops=[0], pad_token_id=0,
                                batch_size=2, decode="auto", cuda_graph=True)
    assert str(error.value) == (
        f"generation ({decoder}) ran out of GPU memory at a batch of 2 prompts (evaluate.batch_size 2) of 3 tokens "
        "plus up to 96 new ones (70.00 GiB allocated, 75.00 GiB reserved, 76.50 GiB peak allocated of 80.00 GiB on "
        "NVIDIA H100 80GB HBM3); to fit, lower evaluate.batch_size; or lower evaluate.max_input_tokens (prompts are "
        f"left-truncated to it); or lower evaluate.max_new_tokens. torch: {TORCH_MESSAGE}")


def test_graph_capture_does_not_swallow_out_of_memory(monkeypatch):
    """A capture that fails on some op falls back to eager decoding; one that runs out of memory
    must not (eager would run out too), so the error reaches the generation's report."""
    from lab.eval import decoder as static_decoder

    steps: list[int] = []

    def failing_capture(error: Exception) -> Any:
        def step(model: Any, state: Any) -> None:
            steps.append(1)
            if len(steps) % 2 == 0:  # the captured step (the first one is the eager warm-up)
                raise error

        return step

    stream = SimpleNamespace(wait_stream=lambda other: None)
    for name, value in {"Stream": lambda: stream, "current_stream": lambda: stream,
                        "stream": lambda s: contextlib.nullcontext(), "CUDAGraph": lambda: object(),
                        "graph": lambda g: contextlib.nullcontext()}.items():
        monkeypatch.setattr(torch.cuda, name, value)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    refused = RuntimeError("operation not permitted when stream is capturing")
    monkeypatch.setattr(static_decoder, "_step", failing_capture(refused))
    assert static_decoder._capture(fake_model(), state=None) is None  # the eager fallback
    monkeypatch.setattr(static_decoder, "_step", failing_capture(torch.OutOfMemoryError(TORCH_MESSAGE)))
    with pytest.raises(torch.OutOfMemoryError):
        static_decoder._capture(fake_model(), state=None)


class FakeTrainer:
    """trl's SFTTrainer as far as run_training uses it, running out of memory on the first step."""

    def __init__(self, **kwargs: Any) -> None:
        self.args = kwargs["args"]

    def remove_callback(self, callback: Any) -> None:
        pass

    def train(self, resume_from_checkpoint: str | None = None) -> Any:
        out_of_memory()


@pytest.mark.parametrize("checkpointing", [False, True])
def test_training_out_of_memory_names_the_batch_the_memory_and_the_train_params(monkeypatch, tmp_path, checkpointing):
    import trl

    from lab.train.fine_tune import run_training

    monkeypatch.setattr(trl, "SFTTrainer", FakeTrainer)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = make_config({"train": {"backend": "hf", "quantization": "none", "gradient_checkpointing": checkpointing,
                                    "micro_batch_tokens": None}})
    runtime = lab_runtime.resolve_runtime(config.train, cuda_available=False)
    rows = [{"input_ids": [1, 2, 3, 4], "assistant_masks": [0, 0, 1, 1]},
            {"input_ids": [1, 2], "assistant_masks": [0, 1]}]
    with pytest.raises(RuntimeConfigError) as error:
        run_training(fake_model(), None, rows, [], config.training, runtime, tmp_path, callbacks=[], resume_from=None)
    message = str(error.value)
    assert message.startswith(
        "training ran out of GPU memory at batch size 2 (train.batch_size) with examples of up to 4 tokens "
        "(train.max_seq_length 512) (no CUDA device to report memory of); to fit, lower train.batch_size (raising "
        "train.grad_accum from 4 keeps the effective batch); or lower train.max_seq_length (longer examples are "
        "truncated)")
    assert ("set train.gradient_checkpointing: true" in message) is not checkpointing
    assert message.endswith(f"torch: {TORCH_MESSAGE}")


def test_training_out_of_memory_with_a_token_budget_names_it_first(monkeypatch, tmp_path):
    """With train.micro_batch_tokens, a forward pass holds up to that many tokens: the first remedy."""
    import trl

    from lab.train.fine_tune import run_training

    monkeypatch.setattr(trl, "SFTTrainer", FakeTrainer)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = make_config({"train": {"backend": "hf", "quantization": "none", "micro_batch_tokens": 4096}})
    runtime = lab_runtime.resolve_runtime(config.train, cuda_available=False)
    rows = [{"input_ids": [1, 2, 3, 4], "assistant_masks": [0, 0, 1, 1]}]
    with pytest.raises(RuntimeConfigError) as error:
        run_training(fake_model(), None, rows, [], config.training, runtime, tmp_path, callbacks=[], resume_from=None)
    assert "to fit, lower train.micro_batch_tokens (now 4096; the tokens of one forward pass); or lower " \
           "train.batch_size" in str(error.value)
