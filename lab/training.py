"""LoRA supervised fine-tuning with trl.SFTTrainer: tokenization with an assistant-only loss
mask, the trainable model for each backend, and the trainer itself."""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import Any

from lab.config import LabConfig
from lab.modeling import Runtime, ensure_pad_token

# Unsloth's use_gradient_checkpointing value for each train.checkpointing_mode.
CHECKPOINTING_MODES: dict[str, str | bool] = {"unsloth": "unsloth", "plain": True}


def assistant_spans(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The chat-template text of a conversation and the character spans of its assistant turns.

    Each span runs from the end of the generation prompt to the end of the turn as the template
    renders it, so the end-of-turn token is learned too (that is what teaches the model to stop).
    """
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = tokenizer.apply_chat_template(messages[:index], tokenize=False, add_generation_prompt=True)
        through_turn = tokenizer.apply_chat_template(messages[: index + 1], tokenize=False)
        if not (text.startswith(through_turn) and through_turn.startswith(prompt)):
            raise ValueError(
                "the chat template does not render conversations prefix-consistently, "
                "so assistant turns cannot be located for the loss mask"
            )
        spans.append((len(prompt), len(through_turn)))
    return text, spans


def tokenize_conversation(tokenizer: Any, messages: list[dict[str, str]]) -> dict[str, list[int]]:
    """input_ids and assistant_masks (1 on tokens of assistant turns, the only ones with a loss)."""
    text, spans = assistant_spans(tokenizer, messages)
    # The template text already holds BOS/special tokens: adding them again would double them.
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    mask = [int(any(start <= begin < end for start, end in spans)) for begin, _ in encoded["offset_mapping"]]
    return {"input_ids": list(encoded["input_ids"]), "assistant_masks": mask}


def tokenize_for_training(
    tokenizer: Any, conversations: list[dict[str, Any]], max_seq_length: int
) -> tuple[list[dict[str, list[int]]], dict[str, int]]:
    """Tokenize and truncate to max_seq_length up front (padding-free batching needs it);
    an example left with no assistant token is dropped and counted."""
    rows, stats = [], {"examples": 0, "truncated": 0, "dropped_no_loss_tokens": 0, "tokens": 0, "loss_tokens": 0}
    for conversation in conversations:
        row = tokenize_conversation(tokenizer, conversation["messages"])
        if len(row["input_ids"]) > max_seq_length:
            stats["truncated"] += 1
            row = {key: values[:max_seq_length] for key, values in row.items()}
        if not any(row["assistant_masks"]):
            stats["dropped_no_loss_tokens"] += 1
            continue
        rows.append(row)
        stats["examples"] += 1
        stats["tokens"] += len(row["input_ids"])
        stats["loss_tokens"] += sum(row["assistant_masks"])
    if not rows:
        raise ValueError(f"no training example has an assistant token within max_seq_length={max_seq_length}")
    return rows, stats


def load_trainable_model(base_dir: Path, config: LabConfig, runtime: Runtime) -> tuple[Any, Any]:
    """The base model with LoRA adapters on the configured projections, for the chosen backend.

    With train.gradient_checkpointing on, train.checkpointing_mode picks Unsloth's mode: "unsloth"
    (its own, which offloads the saved activations to CPU memory) or "plain" (recompute only; more
    GPU memory, and faster at the lab's micro-batches on an H100/H200)."""
    lora, train = config.train.lora, config.train
    mode = train.checkpointing_mode
    if runtime.backend == "unsloth":
        from unsloth import FastLanguageModel

        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=str(base_dir), max_seq_length=train.max_seq_length, dtype=None,
            load_in_4bit=runtime.quantization == "4bit", load_in_8bit=runtime.quantization == "8bit",
        )
        model = FastLanguageModel.get_peft_model(
            model, r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, bias="none",
            target_modules=lora.target_modules, random_state=config.seed,
            use_gradient_checkpointing=CHECKPOINTING_MODES[mode] if train.gradient_checkpointing else False,
        )
        if config.model.chat_template:
            from unsloth.chat_templates import get_chat_template

            tokenizer = get_chat_template(tokenizer, chat_template=config.model.chat_template)
        return model, ensure_pad_token(tokenizer)
    return _load_hf_trainable(base_dir, config, runtime)


def _load_hf_trainable(base_dir: Path, config: LabConfig, runtime: Runtime) -> tuple[Any, Any]:
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    dtype = getattr(torch, runtime.dtype)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if runtime.quantization == "4bit":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype
        )
    elif runtime.quantization == "8bit":
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    if runtime.device == "cuda":
        kwargs["device_map"] = {"": 0}
    torch.manual_seed(config.seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir, **kwargs)
    if runtime.quantization != "none":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.train.gradient_checkpointing)
    lora = config.train.lora
    peft_config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                             target_modules=lora.target_modules, bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, peft_config)
    tokenizer = ensure_pad_token(AutoTokenizer.from_pretrained(base_dir))
    return model, tokenizer


def sft_config(config: LabConfig, runtime: Runtime, output_dir: Path) -> Any:
    """trl's SFTConfig from the lab's params; every default that matters is set explicitly.

    train.group_by_length draws each optimizer step's examples from a pool of similar lengths
    (transformers' LengthGroupedSampler), which cuts the pad tokens of padded batches; it changes
    the data order, so it is off unless asked for."""
    from trl import SFTConfig

    train = config.train
    return SFTConfig(
        output_dir=str(output_dir),
        per_device_train_batch_size=train.batch_size,
        gradient_accumulation_steps=train.grad_accum,
        num_train_epochs=train.epochs,
        learning_rate=config.lr,
        warmup_steps=train.warmup_steps,
        weight_decay=train.weight_decay,
        lr_scheduler_type=train.lr_scheduler,
        optim=train.optimizer,
        seed=config.seed,
        data_seed=config.seed,
        logging_steps=train.logging_steps,
        save_strategy="no",
        report_to="none",
        # Inputs are truncated before training, which padding-free batching requires.
        max_length=None,
        padding_free=train.padding_free,
        # The unsloth backend brings its own (cheaper) checkpointing through get_peft_model.
        gradient_checkpointing=train.gradient_checkpointing and runtime.backend == "hf",
        bf16=runtime.dtype == "bfloat16",
        fp16=runtime.dtype == "float16",
        use_cpu=runtime.device == "cpu",
        dataloader_num_workers=0,
        disable_tqdm=True,
        train_sampling_strategy="group_by_length" if train.group_by_length else "random",
    )


def peak_memory_gib(device: str) -> float:
    """Peak GPU memory allocated by torch, or the process's peak resident memory on CPU."""
    if device == "cuda":
        import torch

        return round(torch.cuda.max_memory_allocated() / 2**30, 3)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (2**30 if sys.platform == "darwin" else 2**20), 3)


def run_training(model: Any, tokenizer: Any, rows: list[dict], config: LabConfig, runtime: Runtime,
                 work_dir: Path, callbacks: list[Any]) -> dict[str, Any]:
    """Train and return the trainer's figures; the caller saves the adapter."""
    from datasets import Dataset
    from trl import SFTTrainer

    trainer = SFTTrainer(
        model=model, args=sft_config(config, runtime, work_dir),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer, callbacks=callbacks,
    )
    started = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - started
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    # Single-step losses are noisy at batch 8: compare the means of the first and last quarters.
    quarter = max(1, len(losses) // 4)
    return {
        "train_loss": round(output.training_loss, 4),
        "loss_first_quarter": round(sum(losses[:quarter]) / quarter, 4) if losses else None,
        "loss_last_quarter": round(sum(losses[-quarter:]) / quarter, 4) if losses else None,
        "steps": trainer.state.global_step,
        "runtime_s": round(seconds, 1),
    }
