"""The Troubleshooting table (docs/troubleshooting.md) quotes the lab's real messages: each params message it
shows is what loading that value produces, word for word."""

from __future__ import annotations

import pytest

from lab.core.errors import ConfigError

from .conftest import REPO, make_config

# (the bad value, the message as docs/troubleshooting.md quotes it; "..." ends a quote cut short)
QUOTED = [
    ({"lr": -1}, "lr: -1.0 is not allowed; it must be a finite positive number"),
    ({"train": {"optimizer": "adamw"}},
     "train.optimizer: 'adamw' is not allowed; allowed: adamw_torch|adamw_torch_fused|adamw_8bit|..."),
    ({"data": {"source": "FineTome-100k"}},
     "data.source: 'FineTome-100k' is not allowed; it must be 'builtin', an existing local .json/.jsonl/.parquet "
     "file, or a Hub dataset id owner/name"),
    ({"model": {"base": "/no/such/model"}},
     "model.base: '/no/such/model' is not allowed; it must be 'embedded', an existing local model directory"),
    ({"model": {"chat_template": "llama-3.1"}, "train": {"backend": "hf"}},
     "model.chat_template: 'llama-3.1' is not allowed; it must be null with train.backend hf, which keeps the "
     "tokenizer's own template"),
]


def troubleshooting_section() -> str:
    """The table of docs/troubleshooting.md, its escaped pipes unescaped."""
    text = (REPO / "docs" / "troubleshooting.md").read_text()
    return text.split("| The stage says |", 1)[1].split("\n\n", 1)[0].replace("\\|", "|")


@pytest.mark.parametrize("overrides, quoted", QUOTED)
def test_the_docs_quote_the_message_the_lab_prints(overrides, quoted):
    assert f"`{quoted}`" in troubleshooting_section()
    with pytest.raises(ConfigError) as error:
        make_config(overrides)
    assert str(error.value).startswith(quoted.removesuffix("..."))
