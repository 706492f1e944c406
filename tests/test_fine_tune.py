"""A real (tiny) fine-tuning run through lab.train.fine_tune on the embedded model: what it returns,
writes and shows, and the one trl warning it silences."""

import logging
from types import SimpleNamespace

import pytest

from lab.core.errors import ConfigError
from lab.core.reproducibility import full_determinism
from lab.model.runtime import resolve_runtime
from lab.train.arguments import sft_config
from lab.train.backends import check_lora_targets, load_trainable_model
from lab.train.fine_tune import (
    _TRL_SFT_LOGGER,
    PADDING_FREE_WARNING,
    _is_padding_free_warning,
    _silence_padding_free_warning,
    fine_tune,
)
from lab.train.masking import tokenize_conversation

from .conftest import make_config
from .helpers import CONVERSATION, SHORT

TINY = {"train": {"batch_size": 2, "grad_accum": 1, "epochs": 1, "max_seq_length": 128, "logging_steps": 1}}


def test_trl_padding_free_warning_is_the_one_silenced_and_only_for_sdpa(embedded_model_dir, tmp_path, caplog):
    """The silenced text is trl's real warning (not a guess), and the filter drops only that."""
    from datasets import Dataset
    from trl import SFTTrainer

    config = make_config(TINY)
    runtime = resolve_runtime(config.train)
    model, tokenizer = load_trainable_model(embedded_model_dir, config.training, runtime)
    rows = [tokenize_conversation(tokenizer, messages) for messages in (CONVERSATION, SHORT)]
    trl_logger = logging.getLogger(_TRL_SFT_LOGGER)
    trl_logger.removeFilter(_is_padding_free_warning)
    eager = SimpleNamespace(config=SimpleNamespace(_attn_implementation="eager"))
    _silence_padding_free_warning(eager, runtime)  # no test proves other attention implementations exact
    assert _is_padding_free_warning not in trl_logger.filters

    def build_trainer() -> None:
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            SFTTrainer(model=model, args=sft_config(config.training, runtime, tmp_path),
                       train_dataset=Dataset.from_list(rows), processing_class=tokenizer)

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
        model, tokenizer, metrics = fine_tune(make_config(TINY), embedded_model_dir, conversations, [],
                                              tmp_path / "live", tmp_path / "checkpoints")
    assert metrics["steps"] == 2 and metrics["data"]["examples"] == 4
    assert metrics["tokens_seen"] == metrics["data"]["tokens"] > metrics["data"]["loss_tokens"] > 0
    assert metrics["ran"]["backend"] == "hf" and metrics["ran"]["padding_free"] is True
    assert metrics["ran"]["long_sequences"] == "truncate" and metrics["validation_data"] is None
    assert metrics["data"]["truncated"] == metrics["data"]["dropped_too_long"] == 0
    assert metrics["train_loss"] > 0 and metrics["loss_first_quarter"] is not None
    assert (tmp_path / "live" / "plots" / "metrics" / "loss.tsv").is_file()
    assert hasattr(model, "peft_config") and tokenizer.pad_token is not None
    # One bar, with steps, loss and tokens/s; no per-step dict on stdout; no padding-free warning.
    shown = terminal.getvalue()
    assert "train: 100%" in shown and "2/2" in shown and "loss=" in shown and "tokens/s=" in shown
    assert "Loading weights" not in shown and "Building labels" not in shown
    assert "{'loss'" not in capsys.readouterr().out
    assert PADDING_FREE_WARNING not in caplog.text


def test_validation_picks_the_best_step_and_early_stopping_stops(embedded_model_dir, tmp_path):
    """Training on one repeated odd answer at a high rate first helps the validation conversations
    (the chat format) and then pulls the model away from them: their loss falls, then rises, so
    training stops `patience` validations after the best one, and the model returned holds the best
    step's adapter (its validation loss is the best one recorded)."""
    import torch

    odd_answer = {"role": "assistant", "content": "zq " * 30}
    train = [{"messages": [{"role": "user", "content": f"Question {i}?"}, odd_answer]} for i in range(24)]
    validation = [{"messages": CONVERSATION}, {"messages": SHORT}]
    config = make_config({**TINY, "lr": 2e-3, "data": {"validation_examples": 2},
                          "train": {**TINY["train"], "eval_steps": 1, "early_stopping_patience": 2,
                                    "warmup_steps": 0}})
    model, tokenizer, metrics = fine_tune(config, embedded_model_dir, train, validation, tmp_path / "live",
                                               tmp_path / "checkpoints")
    losses = [v["loss"] for v in metrics["validation_losses"]]
    best_step = metrics["validation_losses"][losses.index(min(losses))]["step"]
    assert metrics["best_validation_loss"] == min(losses) and metrics["best_step"] == best_step
    assert metrics["stop_reason"] == "early_stopping" and metrics["steps"] == best_step + 2 < 12
    assert (tmp_path / "live" / "plots" / "metrics" / "eval" / "loss.tsv").is_file()
    assert metrics["validation_data"]["examples"] == 2 and metrics["data"]["examples"] == 24
    # The returned model is the best step's: its validation loss is the recorded best.
    rows = [tokenize_conversation(tokenizer, c["messages"]) for c in validation]
    model.eval()
    with torch.no_grad():
        total, count = 0.0, 0
        for row in rows:
            ids = torch.tensor([row["input_ids"]])
            labels = torch.where(torch.tensor([row["assistant_masks"]]) == 1, ids, -100)
            logits = model(input_ids=ids).logits[:, :-1]
            targets = labels[:, 1:]
            total += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                                       ignore_index=-100, reduction="sum").item()
            count += int((targets != -100).sum())
    assert abs(total / count - metrics["best_validation_loss"]) < 2e-3


def test_training_params_reach_the_trainer(tmp_path):
    config = make_config({"train": {"lr_scheduler": "cosine_with_restarts", "scheduler_cycles": 3,
                                    "warmup_steps": 0.1, "max_grad_norm": 0.5, "precision": "bf16",
                                    "eval_steps": 4, "weight_decay": 0.05, "seed": 11}, "lr": 1e-4})
    runtime = resolve_runtime(config.train, cuda_available=False)
    args = sft_config(config.training, runtime, tmp_path, validate=True)
    assert (args.lr_scheduler_type.value, args.lr_scheduler_kwargs) == ("cosine_with_restarts", {"num_cycles": 3})
    assert (args.warmup_steps, args.max_grad_norm, args.learning_rate, args.weight_decay) == (0.1, 0.5, 1e-4, 0.05)
    assert args.bf16 and not args.fp16 and runtime.dtype == "bfloat16"
    assert (args.seed, args.data_seed) == (11, 11)  # train.seed, not the top-level seed of the split
    assert (args.eval_steps, args.save_steps, args.load_best_model_at_end) == (4, 4, True)
    assert args.metric_for_best_model == "eval_loss" and args.greater_is_better is False
    assert args.save_only_model and args.save_total_limit is None  # adapter weights only: nothing to resume
    # The train stage's checkpoints: full (a resume needs the optimizer and RNG states), even without validation.
    resumable = sft_config(config.training, runtime, tmp_path, resumable=True)
    assert (resumable.save_strategy.value, resumable.save_steps, resumable.save_only_model, resumable.save_total_limit,
            resumable.restore_callback_states_from_checkpoint) == ("steps", 4, False, 2, True)
    plain = sft_config(make_config().training, resolve_runtime(make_config().train, cuda_available=False), tmp_path)
    assert (plain.warmup_steps, plain.lr_scheduler_type.value, plain.max_grad_norm) == (5, "linear", 1.0)
    assert not plain.bf16 and plain.eval_strategy.value == "no"
    assert (plain.seed, plain.data_seed) == (make_config().seed,) * 2  # train.seed null: the top-level seed
    # On CPU, torch's deterministic algorithms (lab.core.reproducibility); a GPU run keeps its speed.
    assert plain.full_determinism and full_determinism("cpu") and not full_determinism("cuda")


def test_lora_presets_layers_and_rslora_reach_peft(embedded_model_dir):
    config = make_config({"train": {"lora": {"target_modules": ["attention"], "layers_to_transform": [0, 29],
                                             "use_rslora": True, "r": 8}}})
    runtime = resolve_runtime(config.train, cuda_available=False)
    model, _ = load_trainable_model(embedded_model_dir, config.training, runtime)
    peft_config = model.peft_config["default"]
    assert set(peft_config.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert (peft_config.layers_to_transform, peft_config.use_rslora, peft_config.r) == ([0, 29], True, 8)
    adapted = {name.split(".layers.")[1].split(".")[0] for name, _ in model.named_parameters() if "lora_A" in name}
    assert adapted == {"0", "29"}


@pytest.mark.parametrize(("lora", "message"), [
    ({"target_modules": ["attention", "w1"]}, "names ['w1'], which the base model does not have"),
    ({"layers_to_transform": [3, 30]}, "includes [30]; the base model has layers 0..29"),
])
def test_lora_targets_the_model_lacks_fail_before_any_weights_load(embedded_model_dir, lora, message):
    config = make_config({"train": {"lora": lora}})
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        check_lora_targets(embedded_model_dir, config.train.lora)
