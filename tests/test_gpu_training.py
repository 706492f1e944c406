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
from .helpers import ANSWERS, CONVERSATIONS, QUESTIONS  # noqa: E402


def _loss(trainer, model, batch) -> float:
    with torch.no_grad():
        return trainer.compute_loss(model, trainer._prepare_inputs(batch)).item()


def test_unsloth_padding_free_batches_give_the_padded_loss(embedded_model_dir, tmp_path):
    """Through the trainer's own collator and loss: a flattened batch must score each example as
    if alone. The control (the same flattened batch as one long sequence) shows how far apart
    cross-contamination would put the two."""
    from datasets import Dataset
    from trl import SFTTrainer

    from lab.model.runtime import resolve_runtime
    from lab.train.arguments import sft_config
    from lab.train.backends import load_trainable_model
    from lab.train.masking import tokenize_conversation

    losses = {}
    for padding_free in (False, True):
        config = make_config({"train": {"backend": "unsloth", "quantization": "4bit", "max_seq_length": 512,
                                        "padding_free": padding_free, "batch_size": len(CONVERSATIONS)}})
        runtime = resolve_runtime(config.train)
        model, tokenizer = load_trainable_model(embedded_model_dir, config.training, runtime)
        rows = [tokenize_conversation(tokenizer, messages) for messages in CONVERSATIONS]
        trainer = SFTTrainer(model=model, args=sft_config(config.training, runtime, tmp_path / str(padding_free)),
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


def _sgd_step(embedded_model_dir, folder, micro_batch_tokens):
    """One Unsloth 4-bit optimizer step of plain SGD at lr 1 over the same 8 examples: the loss, and the
    LoRA weights' change (the step's gradient)."""
    from lab.model.runtime import resolve_runtime
    from lab.train.backends import load_trainable_model
    from lab.train.fine_tune import run_training
    from lab.train.masking import tokenize_conversation

    config = make_config({"seed": 7, "lr": 1.0, "train": {
        "backend": "unsloth", "quantization": "4bit", "batch_size": 2, "grad_accum": 4, "optimizer": "sgd",
        "weight_decay": 0.0, "max_grad_norm": 0.0, "warmup_steps": 0, "lr_scheduler": "constant",
        "max_seq_length": 128, "micro_batch_tokens": micro_batch_tokens}})
    runtime = resolve_runtime(config.train)
    model, tokenizer = load_trainable_model(embedded_model_dir, config.training, runtime)
    rows = [tokenize_conversation(tokenizer, [{"role": "user", "content": q}, {"role": "assistant", "content": a}])
            for q, a in zip(QUESTIONS, ANSWERS, strict=True)]
    before = {name: p.detach().float().clone() for name, p in model.named_parameters() if p.requires_grad}
    figures = run_training(model, tokenizer, rows, [], config.training, runtime, folder, callbacks=[], resume_from=None)
    update = torch.cat([(before[name] - p.detach().float()).flatten()
                        for name, p in model.named_parameters() if p.requires_grad])
    del model
    torch.cuda.empty_cache()
    return figures["train_loss"], update, figures["micro_batches"]


def test_planned_forward_passes_learn_what_two_by_four_learns_on_unsloth(embedded_model_dir, tmp_path):
    """train.micro_batch_tokens through Unsloth's trainer: the lab's 2 x 4 step, as token-budget passes
    and as one pass, gives the same loss and gradient within bf16 tolerance."""
    loss_plain, update_plain, _ = _sgd_step(embedded_model_dir, tmp_path / "plain", None)
    for budget in (120, 100_000):
        loss, update, passes = _sgd_step(embedded_model_dir, tmp_path / str(budget), budget)
        print(f"budget {budget}: {passes}, loss {loss:.5f} vs {loss_plain:.5f}")
        per_step = passes["forward_passes_per_step"]
        assert per_step == 1 if budget == 100_000 else per_step >= 3
        assert loss == pytest.approx(loss_plain, rel=1e-2)
        cosine = torch.nn.functional.cosine_similarity(update, update_plain, dim=0).item()
        assert cosine > 0.99 and update.norm().item() == pytest.approx(update_plain.norm().item(), rel=0.05), cosine


def test_unsloth_varlen_route_gives_the_per_segment_loss(embedded_model_dir, tmp_path):
    """train.packed_attention through Unsloth: per_example (one varlen flash call a layer, lab.train.attention's
    route where this PyTorch lacks Unsloth's own) and library (Unsloth as shipped) score a padding-free
    batch alike, in bf16 tolerance."""
    from datasets import Dataset
    from trl import SFTTrainer

    from lab.model.runtime import resolve_runtime
    from lab.train.arguments import sft_config
    from lab.train.attention import attention_path
    from lab.train.backends import load_trainable_model
    from lab.train.masking import tokenize_conversation

    losses, paths = {}, {}
    for setting in ("library", "per_example"):
        config = make_config({"train": {"backend": "unsloth", "quantization": "4bit", "max_seq_length": 512,
                                        "padding_free": True, "batch_size": len(CONVERSATIONS),
                                        "packed_attention": setting}})
        runtime = resolve_runtime(config.train)
        model, tokenizer = load_trainable_model(embedded_model_dir, config.training, runtime)
        paths[setting] = attention_path(model, "unsloth", "cuda")
        rows = [tokenize_conversation(tokenizer, messages) for messages in CONVERSATIONS]
        trainer = SFTTrainer(model=model, args=sft_config(config.training, runtime, tmp_path / setting),
                             train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
        losses[setting] = _loss(trainer, model, trainer.data_collator(rows))
        del trainer, model
        torch.cuda.empty_cache()
    print(paths, losses)
    assert paths["per_example"] == "unsloth varlen (flash)"
    assert losses["per_example"] == pytest.approx(losses["library"], rel=1e-2)
