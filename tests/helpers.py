"""Conversations and helpers that several test files share: a test file imports them from here, never
from another test file (whose import would run that file's module-level code: its skips, its imports)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# A multi-turn conversation and a one-turn one: the loss mask, padding-free batches, small train and
# validation sets (tests/test_training.py, test_fine_tune.py, test_checkpoints.py, test_attention.py).
CONVERSATION = [
    {"role": "user", "content": "What does `numpy.argsort` do?"},
    {"role": "assistant", "content": "Returns the indices that would sort an array."},
    {"role": "user", "content": "What parameters does it take?"},
    {"role": "assistant", "content": "`argsort` takes:\n- `a`: Array to sort."},
]
SHORT = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"}]

# Three conversations of different lengths, for batched decoding and padding-free batches on a GPU
# (tests/test_gpu_generation.py, test_gpu_training.py).
CONVERSATIONS = [
    [{"role": "user", "content": "What does `numpy.argsort` do?"},
     {"role": "assistant", "content": "Returns the indices that would sort an array."},
     {"role": "user", "content": "What parameters does it take?"},
     {"role": "assistant", "content": "`argsort` takes:\n- `a`: Array to sort.\n- `axis`: Axis along which to sort."}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"}],
    [{"role": "user", "content": "Summarise: pandas.DataFrame.merge joins two frames on columns or indexes, "
                                 "like a database join, keeping the keys of both sides."},
     {"role": "assistant", "content": "It merges two DataFrames with a database-style join on columns or indexes."}],
]

# Eight conversations of different lengths (so that a per-micro-batch mean would weigh them differently):
# one optimizer step split into micro-batches (tests/test_microbatch_semantics.py, test_gpu_training.py).
QUESTIONS = ["Hi", "What does json.dumps do?", "Name a sorting algorithm.", "What is 2 + 2?",
             "Explain list comprehensions in one sentence.", "Say yes.", "What is a tuple?", "Count to three."]
ANSWERS = ["Hello!", "It serialises a Python object to a JSON string.", "Merge sort.", "4.",
           "They build a list from an iterable in one expression, optionally filtered.", "Yes.",
           "An immutable sequence.", "One, two, three."]

# The shorter of the two examples of `packed_batch`.
NAME_A_PRIME = [{"role": "user", "content": "Name a prime."}, {"role": "assistant", "content": "Seven."}]


def packed_batch(tokenizer: Any) -> dict[str, torch.Tensor]:
    """A padding-free batch (trl's collator) of two examples, NAME_A_PRIME then CONVERSATION, with their
    assistant-only labels (tests/test_attention.py, test_gpu_attention.py)."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from lab.train.masking import tokenize_conversation

    examples = []
    for messages in (NAME_A_PRIME, CONVERSATION):
        row = tokenize_conversation(tokenizer, messages)
        labels = [t if m else -100 for t, m in zip(row["input_ids"], row["assistant_masks"], strict=True)]
        examples.append({"input_ids": row["input_ids"], "labels": labels})
    return DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)(examples)


def loss_and_grads(model: Any, batch: dict[str, torch.Tensor]) -> tuple[float, torch.Tensor]:
    """The model's loss on `batch` and its trainable parameters' gradients, flattened into one tensor."""
    import torch

    model.zero_grad()
    loss = model(**batch, use_cache=False).loss
    loss.backward()
    return loss.item(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def lab_module_files(path: Path, repo: Path) -> set[str]:
    """Repository-relative paths of the lab modules (files, not packages) that `path` imports anywhere in its code:
    imports inside functions count, since the lab imports heavy libraries lazily (tests/test_dvc_deps.py,
    tests/test_layers.py)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {f"{name.replace('.', '/')}.py" for name in names if name.split(".")[0] == "lab"}
    return {name for name in found if (repo / name).is_file()}
