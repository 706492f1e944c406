"""The loss mask and padding-free batching, on the real embedded model and tokenizer."""

import pytest
import torch

from lab.config import LabConfig, TrainConfig
from lab.modeling import RuntimeConfigError, resolve_runtime
from lab.training import tokenize_conversation, tokenize_for_training

CONVERSATION = [
    {"role": "user", "content": "What does `numpy.argsort` do?"},
    {"role": "assistant", "content": "Returns the indices that would sort an array."},
    {"role": "user", "content": "What parameters does it take?"},
    {"role": "assistant", "content": "`argsort` takes:\n- `a`: Array to sort."},
]


def test_loss_mask_covers_exactly_the_assistant_turns_of_a_multi_turn_conversation(tokenizer):
    row = tokenize_conversation(tokenizer, CONVERSATION)
    ids, mask = row["input_ids"], row["assistant_masks"]
    assert len(ids) == len(mask)
    # Contiguous runs of trained tokens, decoded: each is one assistant answer plus its end of turn.
    runs, current = [], []
    for token, bit in zip(ids, mask, strict=True):
        if bit:
            current.append(token)
        elif current:
            runs.append(tokenizer.decode(current))
            current = []
    if current:
        runs.append(tokenizer.decode(current))
    assert runs == [
        "Returns the indices that would sort an array.<|im_end|>\n",
        "`argsort` takes:\n- `a`: Array to sort.<|im_end|>\n",
    ]
    # Nothing of the system prompt, the user turns or the assistant headers is trained.
    masked_text = tokenizer.decode([t for t, bit in zip(ids, mask, strict=True) if not bit])
    assert "What does `numpy.argsort` do?" in masked_text and "What parameters" in masked_text
    assert masked_text.count("<|im_start|>assistant\n") == 2
    # The template's BOS/special tokens are not doubled by the tokenizer.
    assert ids == tokenizer.apply_chat_template(CONVERSATION, tokenize=True, return_dict=True)["input_ids"]


def test_truncation_keeps_the_start_and_drops_examples_left_without_a_loss_token(tokenizer):
    long_prompt = [{"role": "user", "content": "word " * 400}, {"role": "assistant", "content": "Short answer."}]
    rows, stats = tokenize_for_training(tokenizer, [{"messages": CONVERSATION}, {"messages": long_prompt}], 128)
    assert len(rows) == 1 and stats["dropped_no_loss_tokens"] == 1 and stats["truncated"] == 1
    assert stats["loss_tokens"] == sum(rows[0]["assistant_masks"])
    with pytest.raises(ValueError, match="no training example"):
        tokenize_for_training(tokenizer, [{"messages": long_prompt}], 128)


def test_padding_free_batch_gives_the_same_loss_as_a_padded_batch(base_model, tokenizer):
    """Flattening a batch into one sequence with restarting position ids must not let
    examples attend to each other (sdpa gets a block-diagonal mask from the position ids)."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    short = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"}]
    examples = []
    for messages in (CONVERSATION, short):
        row = tokenize_conversation(tokenizer, messages)
        labels = [t if m else -100 for t, m in zip(row["input_ids"], row["assistant_masks"], strict=True)]
        examples.append({"input_ids": row["input_ids"], "labels": labels})
    losses = {}
    for padding_free in (False, True):
        collate = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=padding_free)
        batch = collate(examples)
        with torch.no_grad():
            # SFTTrainer.compute_loss passes use_cache=False; with a cache, transformers skips the
            # packed-sequence detection and the examples would attend to each other.
            losses[padding_free] = base_model(**batch, use_cache=False).loss.item()
        if padding_free:
            assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)


def test_runtime_on_cpu_is_hf_without_quantization_in_float32():
    runtime = resolve_runtime(TrainConfig(), cuda_available=False)
    assert runtime.as_dict() == {"backend": "hf", "device": "cpu", "dtype": "float32", "quantization": "none"}


@pytest.mark.parametrize(
    ("train", "message"),
    [(TrainConfig(backend="unsloth"), "needs a CUDA GPU"), (TrainConfig(quantization="4bit"), "needs a CUDA GPU")],
)
def test_impossible_runtime_requests_fail_instead_of_silently_changing(train, message):
    with pytest.raises(RuntimeConfigError, match=message):
        resolve_runtime(train, cuda_available=False)


def test_runtime_on_gpu_defaults_to_unsloth_qlora_or_names_the_missing_package():
    try:
        import unsloth  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeConfigError, match="requirements-gpu.txt"):
            resolve_runtime(LabConfig().train, cuda_available=True)
    else:  # pragma: no cover - only where unsloth is installed
        assert resolve_runtime(LabConfig().train, cuda_available=True).quantization == "4bit"
