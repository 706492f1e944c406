"""The loss mask and padding-free batching, on the real embedded model and tokenizer."""

import pytest
import torch

from lab.core.choices import Optimizer, allowed
from lab.core.errors import ConfigError
from lab.train.fine_tune import tokenize_splits
from lab.train.masking import tokenize_conversation, tokenize_for_training

from .conftest import make_config
from .helpers import CONVERSATION, SHORT


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


LONG_PROMPT = [{"role": "user", "content": "word " * 400}, {"role": "assistant", "content": "Short answer."}]
LONG_ANSWER = [{"role": "user", "content": "Count."}, {"role": "assistant", "content": "one two three " * 100}]


def test_truncation_keeps_the_start_and_drops_examples_left_without_a_loss_token(tokenizer):
    conversations = [{"messages": m} for m in (CONVERSATION, LONG_PROMPT, LONG_ANSWER)]
    rows, stats = tokenize_for_training(tokenizer, conversations, 128, "truncate")
    # The long prompt's answer lies wholly past the cut: dropped, never trained with an empty loss.
    assert stats == {**stats, "examples": 2, "truncated": 2, "dropped_too_long": 0, "dropped_no_loss_tokens": 1}
    assert rows[0] == tokenize_conversation(tokenizer, CONVERSATION)
    assert len(rows[1]["input_ids"]) == 128 and rows[1]["input_ids"] == tokenize_conversation(
        tokenizer, LONG_ANSWER)["input_ids"][:128]
    assert all(any(row["assistant_masks"]) for row in rows)
    assert stats["loss_tokens"] == sum(sum(row["assistant_masks"]) for row in rows)
    with pytest.raises(ConfigError, match="no training example has an assistant token within "
                                          "train.max_seq_length=128 .*1 with no assistant token left after the cut"):
        tokenize_for_training(tokenizer, [{"messages": LONG_PROMPT}], 128, "truncate")


def test_drop_leaves_every_long_example_out_and_counts_it(tokenizer):
    conversations = [{"messages": m} for m in (CONVERSATION, LONG_PROMPT, LONG_ANSWER)]
    rows, stats = tokenize_for_training(tokenizer, conversations, 128, "drop")
    assert rows == [tokenize_conversation(tokenizer, CONVERSATION)]
    assert stats == {**stats, "examples": 1, "truncated": 0, "dropped_too_long": 2, "dropped_no_loss_tokens": 0}
    with pytest.raises(ConfigError, match=r"no validation example .*train.long_sequences=drop; 1 dropped as too long"):
        tokenize_for_training(tokenizer, [{"messages": LONG_ANSWER}], 128, "drop", "validation")


@pytest.mark.parametrize(("policy", "kept"), [("truncate", 2), ("drop", 1)])
def test_train_long_sequences_reaches_the_tokenization_of_both_splits(tokenizer, policy, kept):
    train = make_config({"train": {"long_sequences": policy, "max_seq_length": 128}}).train
    conversations = [{"messages": m} for m in (CONVERSATION, LONG_ANSWER)]
    rows, validation_rows, stats = tokenize_splits(tokenizer, conversations, conversations, train)
    assert len(rows) == len(validation_rows) == kept
    assert stats["train"] == stats["validation"]
    assert stats["train"]["dropped_too_long" if policy == "drop" else "truncated"] == 1
    assert tokenize_splits(tokenizer, conversations, [], train)[2]["validation"] is None


def _loss(model, batch) -> float:
    with torch.no_grad():
        # SFTTrainer.compute_loss passes use_cache=False; with a cache, transformers skips the
        # packed-sequence detection and the examples would attend to each other.
        return model(**batch, use_cache=False).loss.item()


def test_padding_free_batch_gives_the_same_loss_as_a_padded_batch(base_model, tokenizer):
    """Flattening a batch into one sequence with restarting position ids must not let examples
    attend to each other: with SDPA, transformers builds a block-diagonal mask from the position
    ids. The control is the same flattened tokens and labels as ONE sequence (position ids that do
    not restart): there the second example sees the first, and the loss moves far outside the
    tolerance. This is what makes silencing trl's padding-free warning safe (lab.train.fine_tune)."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    assert base_model.config._attn_implementation == "sdpa"
    examples = []
    # The short example first: cross-contamination would reach the longer one's many loss tokens.
    for messages in (SHORT, CONVERSATION):
        row = tokenize_conversation(tokenizer, messages)
        labels = [t if m else -100 for t, m in zip(row["input_ids"], row["assistant_masks"], strict=True)]
        examples.append({"input_ids": row["input_ids"], "labels": labels})
    padded, flat = (DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=padding_free)(
        examples) for padding_free in (False, True))
    assert flat["input_ids"].shape[0] == 1 and "attention_mask" not in flat
    assert flat["position_ids"][0].tolist().count(0) == 2  # the position ids restart at the second example
    one_sequence = {**flat, "position_ids": torch.arange(flat["input_ids"].shape[1])[None]}
    losses = {"padded": _loss(base_model, padded), "padding_free": _loss(base_model, flat),
              "one_sequence": _loss(base_model, one_sequence)}
    tolerance = 1e-4 * losses["padded"]
    assert abs(losses["padding_free"] - losses["padded"]) < tolerance, losses
    assert abs(losses["one_sequence"] - losses["padded"]) > 100 * tolerance, losses


@pytest.mark.parametrize("optimizer", allowed(Optimizer))
def test_every_allowed_optimizer_is_one_transformers_builds_and_steps_on_cpu(optimizer, tmp_path):
    """train.optimizer reaches transformers as `optim` (lab.train.fine_tune.sft_config): each allowed name
    must be one of its OptimizerNames and build an optimizer that steps here, on CPU (the 8-bit and
    paged ones through bitsandbytes, paged falling back to plain on CPU)."""
    from transformers import Trainer, TrainingArguments
    from transformers.training_args import OptimizerNames

    assert optimizer in {name.value for name in OptimizerNames}
    layer = torch.nn.Linear(64, 64)
    args = TrainingArguments(output_dir=str(tmp_path), optim=optimizer, learning_rate=1e-3, use_cpu=True,
                             report_to="none")
    optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, layer)
    step = optimizer_cls(layer.parameters(), **kwargs)
    before = layer.weight.detach().clone()
    layer(torch.randn(4, 64)).pow(2).mean().backward()
    step.step()
    assert not torch.equal(before, layer.weight)
