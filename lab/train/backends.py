"""The trainable model for each backend: the base model with LoRA adapters on the configured
projections, through Unsloth (train.backend: unsloth) or transformers + peft (hf).

Both are imported inside functions: Unsloth must come before transformers (lab.model.runtime's
resolve_runtime imports it first), and the hf backend must not import Unsloth at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.core.choices import LORA_PRESETS
from lab.core.config import LoraConfig, TrainingSetup
from lab.core.errors import ConfigError
from lab.core.hub import local_model_problem
from lab.model.loading import ensure_pad_token, kbit_config
from lab.model.runtime import Runtime, local_rank, world_size
from lab.train.attention import routes_taken, use_packed_attention, use_unsloth_varlen

# Unsloth's use_gradient_checkpointing value for each train.checkpointing_mode: "unsloth" (its own,
# which offloads the saved activations to CPU memory) or "plain" (recompute only; more GPU memory,
# and faster at the lab's micro-batches on an H100/H200).
CHECKPOINTING_MODES: dict[str, str | bool] = {"unsloth": "unsloth", "plain": True}


def check_chat_template(setup: TrainingSetup, runtime: Runtime) -> None:
    """model.chat_template is applied by Unsloth only: refuse it on the hf backend rather than train
    with the tokenizer's own template. lab.core.config refuses an explicit train.backend hf at load; this
    covers auto, once resolved on this machine (hf without a CUDA GPU), before any weight loads."""
    template = setup.model.chat_template
    if template is not None and runtime.backend != "unsloth":
        raise ConfigError(f"model.chat_template: {template!r} is not allowed; it must be null with the "
                          f"{runtime.backend} backend (train.backend {setup.train.backend} resolved to it on this "
                          f"machine, {runtime.device}), which keeps the tokenizer's own template; Unsloth's template "
                          "names apply to the unsloth backend only")


def check_lora_targets(base_dir: Path, lora: LoraConfig, trust_remote_code: bool = False) -> None:
    """Fail before any weight loads if train.lora names modules or layers the base model lacks.

    The model is built on the meta device from its config (no weights, no memory), which is enough
    to list its module names and count its layers."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    model_config = AutoConfig.from_pretrained(base_dir, trust_remote_code=trust_remote_code)
    with init_empty_weights():
        skeleton = AutoModelForCausalLM.from_config(model_config, trust_remote_code=trust_remote_code)
    leaf_names = {name.rsplit(".", 1)[-1] for name, module in skeleton.named_modules() if not list(module.children())}
    missing = [name for name in lora.modules() if name not in leaf_names]
    if missing:
        raise ConfigError(f"train.lora.target_modules: {lora.target_modules} names {missing}, which the base model "
                          f"does not have; allowed: its modules {sorted(leaf_names)} or the presets "
                          f"{sorted(LORA_PRESETS)}")
    layers = model_config.num_hidden_layers
    outside = [index for index in lora.layers_to_transform or [] if index >= layers]
    if outside:
        raise ConfigError(f"train.lora.layers_to_transform: {lora.layers_to_transform} includes {outside}; the base "
                          f"model has layers 0..{layers - 1}")


def load_trainable_model(base_dir: Path, setup: TrainingSetup, runtime: Runtime) -> tuple[Any, Any]:
    """The base model with LoRA adapters and its tokenizer (with a pad token), for runtime.backend:
    safetensors weights only, the model's own Python code only with model.trust_remote_code."""
    problem = local_model_problem(base_dir)
    if problem:
        raise ConfigError(f"base model {base_dir} {problem}")
    routes_taken.clear()  # what this model's packed rows take, for attention_path
    if runtime.backend == "unsloth":
        return _load_unsloth(base_dir, setup, runtime)
    return _load_hf(base_dir, setup, runtime)


def _load_unsloth(base_dir: Path, setup: TrainingSetup, runtime: Runtime) -> tuple[Any, Any]:
    """Unsloth's FastLanguageModel with its LoRA, k-bit loading and gradient checkpointing."""
    import torch
    from unsloth import FastLanguageModel

    train, lora = setup.train, setup.train.lora
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=str(base_dir), max_seq_length=train.max_seq_length, dtype=getattr(torch, runtime.dtype),
        load_in_4bit=runtime.quantization == "4bit", load_in_8bit=runtime.quantization == "8bit",
        trust_remote_code=setup.model.trust_remote_code,
        # Each data-parallel process on its own GPU; one process keeps Unsloth's own placement.
        **({"device_map": {"": local_rank()}} if world_size() > 1 else {}),
    )
    use_unsloth_varlen(train.packed_attention == "per_example")  # one varlen call per layer (lab.train.attention)
    checkpointing = CHECKPOINTING_MODES[train.checkpointing_mode] if train.gradient_checkpointing else False
    model = FastLanguageModel.get_peft_model(
        model, r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, bias="none",
        target_modules=lora.modules(), layers_to_transform=lora.layers_to_transform, use_rslora=lora.use_rslora,
        random_state=setup.seed, use_gradient_checkpointing=checkpointing,
    )
    if setup.model.chat_template:
        from unsloth.chat_templates import get_chat_template

        tokenizer = get_chat_template(tokenizer, chat_template=setup.model.chat_template)
    return model, ensure_pad_token(tokenizer)


def _load_hf(base_dir: Path, setup: TrainingSetup, runtime: Runtime) -> tuple[Any, Any]:
    """transformers + peft: bitsandbytes for k-bit bases, LoRA seeded by `seed`."""
    import torch
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = getattr(torch, runtime.dtype)
    # On CPU the weights stay float32 and bf16 (train.precision) runs as autocast: mixed precision.
    trust = setup.model.trust_remote_code
    kwargs: dict[str, Any] = {"dtype": dtype if runtime.device == "cuda" else torch.float32,
                              "quantization_config": kbit_config(runtime.quantization, dtype),
                              "use_safetensors": True, "trust_remote_code": trust}
    if runtime.device == "cuda":
        kwargs["device_map"] = {"": local_rank()}  # each data-parallel process on its own GPU
    torch.manual_seed(setup.seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir, **kwargs)
    # Padding-free batches attend example by example (lab.train.attention): on CPU 1.3x the tokens/s of the
    # masked row; on CUDA in half precision one varlen flash call per layer, instead of the masked
    # kernel over the whole row (benchmarks/train_throughput.py's hf rows). On CUDA in fp32 the flash
    # kernel does not apply, and a loop of per-example calls measured slower than the masked one.
    half = runtime.dtype in ("bfloat16", "float16")
    if setup.train.packed_attention == "per_example" and (runtime.device == "cpu" or half):
        use_packed_attention(model)
    if runtime.quantization != "none":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=setup.train.gradient_checkpointing)
    lora = setup.train.lora
    peft_config = PeftLoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                             target_modules=lora.modules(), layers_to_transform=lora.layers_to_transform,
                             use_rslora=lora.use_rslora, bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, peft_config)
    tokenizer = ensure_pad_token(AutoTokenizer.from_pretrained(base_dir, trust_remote_code=trust))
    return model, tokenizer
