"""Unsloth's training path on the real embedded model: padding-free batches without cross-contamination.

Run on a CUDA machine with Unsloth installed; skipped without them. Unsloth patches transformers
when imported, so run this file in its own pytest process.
"""

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)
pytest.importorskip("unsloth")  # before transformers, so that its patches apply

from .conftest import make_config  # noqa: E402
from .test_gpu_generation import CONVERSATIONS  # noqa: E402


def _loss(trainer, model, batch) -> float:
    with torch.no_grad():
        return trainer.compute_loss(model, trainer._prepare_inputs(batch)).item()


def test_unsloth_padding_free_batches_give_the_padded_loss(embedded_model_dir, tmp_path):
    """Through the trainer's own collator and loss: a flattened batch must score each example as
    if alone. The control (the same flattened batch as one long sequence) shows how far apart
    cross-contamination would put the two."""
    from datasets import Dataset
    from trl import SFTTrainer

    from lab.backends import load_trainable_model
    from lab.masking import tokenize_conversation
    from lab.runtime import resolve_runtime
    from lab.training import sft_config

    losses = {}
    for padding_free in (False, True):
        config = make_config({"train": {"backend": "unsloth", "quantization": "4bit", "max_seq_length": 512,
                                        "padding_free": padding_free, "batch_size": len(CONVERSATIONS)}})
        runtime = resolve_runtime(config.train)
        model, tokenizer = load_trainable_model(embedded_model_dir, config, runtime)
        rows = [tokenize_conversation(tokenizer, messages) for messages in CONVERSATIONS]
        trainer = SFTTrainer(model=model, args=sft_config(config, runtime, tmp_path / str(padding_free)),
                             train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
        batch = trainer.data_collator(rows)
        losses[padding_free] = _loss(trainer, model, batch)
        if padding_free:
            assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch
            width = batch["input_ids"].shape[1]
            joined = {key: value for key, value in batch.items() if key in ("input_ids", "labels")}
            joined["position_ids"] = torch.arange(width)[None]  # one sequence: every example sees the earlier ones
            losses["contaminated"] = _loss(trainer, model, joined)
        del trainer, model
        torch.cuda.empty_cache()
    print(f"losses: padded {losses[False]:.5f}, padding-free {losses[True]:.5f}, "
          f"one sequence {losses['contaminated']:.5f}")
    gap = abs(losses["contaminated"] - losses[False])
    assert abs(losses[True] - losses[False]) < min(0.01 * losses[False], gap / 5), losses
