"""One typed config built from params.yaml: every stage reads its knobs from here."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

PARAMS_FILE = Path("params.yaml")
EMBEDDED_MODEL = "embedded"
BUILTIN_DATASET = "builtin"


class ConfigError(ValueError):
    """A param in params.yaml is missing, unknown or impossible."""


@dataclass(frozen=True)
class ModelConfig:
    base: str = EMBEDDED_MODEL
    chat_template: str | None = None


@dataclass(frozen=True)
class DataConfig:
    source: str = BUILTIN_DATASET
    hub_split: str = "train"
    builtin_packages: list[str] = field(default_factory=lambda: ["numpy", "pandas"])
    builtin_max_input_words: int = 250
    on_invalid: str = "error"
    test_size: float = 0.15
    eval_examples: int = 100
    max_train_examples: int | None = None


@dataclass(frozen=True)
class LoraConfig:
    r: int = 16
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


@dataclass(frozen=True)
class TrainConfig:
    backend: str = "auto"
    quantization: str = "auto"
    batch_size: int = 2
    grad_accum: int = 4
    epochs: float = 1.0
    warmup_steps: int = 5
    weight_decay: float = 0.01
    lr_scheduler: str = "linear"
    optimizer: str = "adamw_8bit"
    max_seq_length: int = 2048
    padding_free: bool = True
    group_by_length: bool = False
    gradient_checkpointing: bool = False
    checkpointing_mode: str = "unsloth"
    logging_steps: int = 1
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass(frozen=True)
class EvaluateConfig:
    max_new_tokens: int = 256
    batch_size: int = 16
    max_input_tokens: int = 1024
    rouge_types: list[str] = field(default_factory=lambda: ["rouge1", "rouge2", "rougeL"])
    rouge_use_stemmer: bool = True
    rouge_tokenizer: str = "default"
    semantic_similarity: bool = True
    decode: str = "auto"
    cuda_graph: bool = True


@dataclass(frozen=True)
class CompareConfig:
    bootstrap_resamples: int = 1000
    confidence: float = 0.95
    headline_metric: str = "rougeL"
    gallery_examples: int = 3


@dataclass(frozen=True)
class LabConfig:
    seed: int = 3407
    lr: float = 2e-4
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)


def _build(cls: type, raw: Any, where: str) -> Any:
    """Build dataclass `cls` from a mapping, naming the exact key on any mistake."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'params'}: expected a mapping, got {type(raw).__name__}")
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where or 'params'}: unknown key(s) {unknown}; known: {sorted(known)}")
    values = {}
    for name, value in raw.items():
        key = f"{where}.{name}" if where else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, key)
        else:
            values[name] = _coerce(value, hint, key)
    return cls(**values)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check a scalar against its annotation; YAML reads 2e-4 as a string, so floats are parsed."""
    args = get_args(hint)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if optional else hint
    name = getattr(base, "__name__", str(base))
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{key}: must not be null")
    if isinstance(value, bool) and base is not bool:
        raise ConfigError(f"{key}: expected {name}, got {value!r}")
    try:
        if base is int:
            if isinstance(value, str) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if base is float:
            return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected {name}, got {value!r}") from None
    if base in (bool, str) and isinstance(value, base):
        return value
    if get_origin(base) is list and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(f"{key}: expected {name}, got {value!r}")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def validate(config: LabConfig) -> LabConfig:
    """Reject impossible values up front, before any stage spends time."""
    data, train, ev = config.data, config.train, config.evaluate
    _check(0.0 < data.test_size < 1.0, f"data.test_size must be in (0, 1), got {data.test_size}")
    _check(data.eval_examples > 0, f"data.eval_examples must be positive, got {data.eval_examples}")
    _check(data.max_train_examples is None or data.max_train_examples > 0,
           f"data.max_train_examples must be positive or null, got {data.max_train_examples}")
    _check(data.builtin_max_input_words > 0,
           f"data.builtin_max_input_words must be positive, got {data.builtin_max_input_words}")
    _check(data.on_invalid in {"error", "drop"}, f"data.on_invalid must be error|drop, got {data.on_invalid!r}")
    _check(config.lr > 0, f"lr must be positive, got {config.lr}")
    _check(train.backend in {"auto", "unsloth", "hf"}, f"train.backend must be auto|unsloth|hf, got {train.backend!r}")
    _check(train.quantization in {"auto", "4bit", "8bit", "none"},
           f"train.quantization must be auto|4bit|8bit|none, got {train.quantization!r}")
    for name in ("batch_size", "grad_accum", "max_seq_length", "logging_steps"):
        _check(getattr(train, name) > 0, f"train.{name} must be positive, got {getattr(train, name)}")
    _check(train.checkpointing_mode in {"unsloth", "plain"},
           f"train.checkpointing_mode must be unsloth|plain, got {train.checkpointing_mode!r}")
    _check(train.epochs > 0, f"train.epochs must be positive, got {train.epochs}")
    _check(train.warmup_steps >= 0, f"train.warmup_steps must be >= 0, got {train.warmup_steps}")
    _check(train.lora.r > 0 and train.lora.alpha > 0, "train.lora.r and train.lora.alpha must be positive")
    _check(0.0 <= train.lora.dropout < 1.0, f"train.lora.dropout must be in [0, 1), got {train.lora.dropout}")
    _check(bool(train.lora.target_modules), "train.lora.target_modules must not be empty")
    known_rouge = {"rouge1", "rouge2", "rouge3", "rouge4", "rougeL", "rougeLsum"}
    _check(bool(ev.rouge_types) and set(ev.rouge_types) <= known_rouge,
           f"evaluate.rouge_types must be a non-empty subset of {sorted(known_rouge)}, got {ev.rouge_types}")
    _check(ev.rouge_tokenizer in {"default", "whitespace"},
           f"evaluate.rouge_tokenizer must be default|whitespace, got {ev.rouge_tokenizer!r}")
    _check(ev.decode in {"auto", "generate", "static"},
           f"evaluate.decode must be auto|generate|static, got {ev.decode!r}")
    for name in ("max_new_tokens", "batch_size", "max_input_tokens"):
        _check(getattr(ev, name) > 0, f"evaluate.{name} must be positive, got {getattr(ev, name)}")
    _validate_compare(config)
    return config


def _validate_compare(config: LabConfig) -> None:
    compare, ev = config.compare, config.evaluate
    _check(compare.bootstrap_resamples > 0,
           f"compare.bootstrap_resamples must be positive, got {compare.bootstrap_resamples}")
    _check(0.0 < compare.confidence < 1.0, f"compare.confidence must be in (0, 1), got {compare.confidence}")
    _check(compare.gallery_examples >= 0, f"compare.gallery_examples must be >= 0, got {compare.gallery_examples}")
    scored = list(ev.rouge_types) + (["semantic"] if ev.semantic_similarity else [])
    _check(compare.headline_metric in scored,
           f"compare.headline_metric must be one of the scored metrics {scored}, got {compare.headline_metric!r}")


def load_config(path: Path | str = PARAMS_FILE) -> LabConfig:
    """Read params.yaml once into a validated, typed LabConfig."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found (run from the repository root)")
    with path.open() as handle:
        raw = yaml.safe_load(handle) or {}
    return validate(_build(LabConfig, raw, ""))


def as_dict(config: Any) -> dict[str, Any]:
    """Plain-dict view of a config, for recording what ran next to the metrics."""
    return dataclasses.asdict(config)
