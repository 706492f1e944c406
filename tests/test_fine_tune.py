"""A real (tiny) fine-tuning run through lab.training on the embedded model: what it returns,
writes and shows, and the one trl warning it silences."""

import logging
from types import SimpleNamespace

from lab.backends import load_trainable_model
from lab.masking import tokenize_conversation
from lab.runtime import resolve_runtime
from lab.training import (
    _TRL_SFT_LOGGER,
    PADDING_FREE_WARNING,
    _is_padding_free_warning,
    _silence_padding_free_warning,
    fine_tune,
    sft_config,
)

from .conftest import make_config
from .test_training import CONVERSATION, SHORT

TINY = {"train": {"batch_size": 2, "grad_accum": 1, "epochs": 1, "max_seq_length": 128, "logging_steps": 1}}


def test_trl_padding_free_warning_is_the_one_silenced_and_only_for_sdpa(embedded_model_dir, tmp_path, caplog):
    """The silenced text is trl's real warning (not a guess), and the filter drops only that."""
    from datasets import Dataset
    from trl import SFTTrainer

    config = make_config(TINY)
    runtime = resolve_runtime(config.train)
    model, tokenizer = load_trainable_model(embedded_model_dir, config, runtime)
    rows = [tokenize_conversation(tokenizer, messages) for messages in (CONVERSATION, SHORT)]
    trl_logger = logging.getLogger(_TRL_SFT_LOGGER)
    trl_logger.removeFilter(_is_padding_free_warning)
    eager = SimpleNamespace(config=SimpleNamespace(_attn_implementation="eager"))
    _silence_padding_free_warning(eager, runtime)  # no test proves other attention implementations exact
    assert _is_padding_free_warning not in trl_logger.filters

    def build_trainer() -> None:
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            SFTTrainer(model=model, args=sft_config(config, runtime, tmp_path), train_dataset=Dataset.from_list(rows),
                       processing_class=tokenizer)

    build_trainer()
    assert PADDING_FREE_WARNING in caplog.text
    _silence_padding_free_warning(model, runtime)
    build_trainer()
    assert PADDING_FREE_WARNING not in caplog.text
    other = logging.LogRecord(_TRL_SFT_LOGGER, logging.WARNING, __file__, 0, "batch size of 1", None, None)
    assert _is_padding_free_warning(other)


def test_fine_tune_trains_logs_the_loss_curve_and_shows_one_progress_bar(
        embedded_model_dir, tmp_path, terminal_stderr, capsys, caplog):
    terminal = terminal_stderr()
    conversations = [{"messages": CONVERSATION}, {"messages": SHORT}] * 2
    with caplog.at_level(logging.WARNING):
        model, tokenizer, metrics = fine_tune(make_config(TINY), embedded_model_dir, conversations, tmp_path / "live")
    assert metrics["steps"] == 2 and metrics["data"]["examples"] == 4
    assert metrics["tokens_seen"] == metrics["data"]["tokens"] > metrics["data"]["loss_tokens"] > 0
    assert metrics["ran"]["backend"] == "hf" and metrics["ran"]["padding_free"] is True
    assert metrics["train_loss"] > 0 and metrics["loss_first_quarter"] is not None
    assert (tmp_path / "live" / "plots" / "metrics" / "loss.tsv").is_file()
    assert hasattr(model, "peft_config") and tokenizer.pad_token is not None
    # One bar, with steps, loss and tokens/s; no per-step dict on stdout; no padding-free warning.
    shown = terminal.getvalue()
    assert "train: 100%" in shown and "2/2" in shown and "loss=" in shown and "tokens/s=" in shown
    assert "Loading weights" not in shown and "Building labels" not in shown
    assert "{'loss'" not in capsys.readouterr().out
    assert PADDING_FREE_WARNING not in caplog.text
