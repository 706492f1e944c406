"""The typed shape of params.yaml: every stage reads its knobs from here.

Values live in params.yaml only. This module holds their types, their allowed values (as
`Literal` types, the one list each) and their ranges; a key missing from params.yaml is an
error, never a silent default. Tests and benchmarks build configs from params.yaml plus explicit
overrides (`load_config(overrides=...)`), so nothing runs on a value that no user gets.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml

from lab.errors import ConfigError

PARAMS_FILE = Path("params.yaml")
EMBEDDED_MODEL = "embedded"
BUILTIN_DATASET = "builtin"

# Allowed values, each listed once; the modules that act on them read them from here.
Backend = Literal["auto", "unsloth", "hf"]
Quantization = Literal["auto", "4bit", "8bit", "none"]
CheckpointingMode = Literal["unsloth", "plain"]
OnInvalid = Literal["error", "drop"]
RougeType = Literal["rouge1", "rouge2", "rouge3", "rouge4", "rougeL", "rougeLsum"]
RougeTokenizer = Literal["default", "whitespace"]
Decode = Literal["auto", "generate", "static"]
DataFormat = Literal["auto", "sharegpt", "messages", "alpaca", "question_answer", "query_response", "inputs_targets",
                     "oasst"]
LrScheduler = Literal["linear", "cosine", "cosine_with_restarts", "constant", "constant_with_warmup"]
Precision = Literal["auto", "bf16", "fp16", "fp32"]
DataOrder = Literal["shuffle", "curriculum"]
CurriculumKey = Literal["length", "score", "domain"]
AnswerFormat = Literal["keep", "steps", "json"]
FinetunedBase = Literal["full", "as_trained"]
# LoRA target presets, usable in train.lora.target_modules beside module names (Llama-style names,
# which Llama, Qwen, Mistral and SmolLM share).
LORA_PRESETS: dict[str, tuple[str, ...]] = {
    "attention": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "mlp": ("gate_proj", "up_proj", "down_proj"),
    "all": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
}


def allowed(literal: Any) -> tuple[str, ...]:
    """The allowed values of one of the Literal types above."""
    return get_args(literal)


@dataclass(frozen=True)
class ModelConfig:
    base: str
    chat_template: str | None


@dataclass(frozen=True)
class TaskWeights:
    summary: float
    params: float
    examples: float


@dataclass(frozen=True)
class BuiltinConfig:
    packages: list[str]
    max_input_words: int
    min_words: int
    closed_share: float
    task_weights: TaskWeights
    code_examples: int
    math_examples: int


@dataclass(frozen=True)
class DedupConfig:
    exact: bool
    near: bool
    leak_check: bool
    threshold: float
    num_perm: int
    shingle_words: int


@dataclass(frozen=True)
class FiltersConfig:
    min_answer_words: int | None
    max_answer_words: int | None
    min_score: float | None
    max_symbol_share: float | None
    languages: list[str] | None


@dataclass(frozen=True)
class ExtraSource:
    source: str
    format: DataFormat


@dataclass(frozen=True)
class MixConfig:
    extra_sources: list[ExtraSource]
    # int values: fixed counts; float values: relative shares (see lab.mixing).
    proportions: dict[str, int | float] | None

    def counts(self) -> bool:
        """True when the proportions are fixed counts (ints), False for shares (floats)."""
        return self.proportions is not None and all(isinstance(v, int) for v in self.proportions.values())


@dataclass(frozen=True)
class DataConfig:
    source: str
    format: DataFormat
    hub_split: str
    builtin: BuiltinConfig
    mix: MixConfig
    filters: FiltersConfig
    dedup: DedupConfig
    on_invalid: OnInvalid
    test_size: float
    eval_examples: int
    validation_examples: int
    max_train_examples: int | None
    order: DataOrder
    curriculum_key: CurriculumKey
    curriculum_domains: list[str]
    answer_format: AnswerFormat


@dataclass(frozen=True)
class LoraConfig:
    r: int
    alpha: int
    dropout: float
    target_modules: list[str]
    layers_to_transform: list[int] | None
    use_rslora: bool

    def modules(self) -> list[str]:
        """target_modules with presets expanded, in order, each module once."""
        names = [n for item in self.target_modules for n in LORA_PRESETS.get(item, (item,))]
        return list(dict.fromkeys(names))


@dataclass(frozen=True)
class TrainConfig:
    backend: Backend
    quantization: Quantization
    batch_size: int
    grad_accum: int
    epochs: float
    warmup_steps: float
    weight_decay: float
    lr_scheduler: LrScheduler
    scheduler_cycles: int
    max_grad_norm: float
    precision: Precision
    optimizer: str
    max_seq_length: int
    padding_free: bool
    group_by_length: bool
    gradient_checkpointing: bool
    checkpointing_mode: CheckpointingMode
    logging_steps: int
    eval_steps: int
    early_stopping_patience: int | None
    lora: LoraConfig


@dataclass(frozen=True)
class EvaluateConfig:
    max_new_tokens: int
    batch_size: int
    max_input_tokens: int
    rouge_types: list[RougeType]
    rouge_use_stemmer: bool
    rouge_tokenizer: RougeTokenizer
    semantic_similarity: bool
    decode: Decode
    cuda_graph: bool
    finetuned_base: FinetunedBase


@dataclass(frozen=True)
class CompareConfig:
    bootstrap_resamples: int
    confidence: float
    headline_metric: str
    gallery_examples: int


@dataclass(frozen=True)
class LabConfig:
    seed: int
    lr: float
    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    evaluate: EvaluateConfig
    compare: CompareConfig


def _build(cls: type, raw: Any, where: str) -> Any:
    """Build dataclass `cls` from a mapping, naming the exact key on any mistake."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'params'}: expected a mapping, got {type(raw).__name__}")
    hints = get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"{where or 'params'}: unknown key(s) {unknown}; known: {sorted(known)}")
    missing = [name for name in known if name not in raw]
    if missing:
        raise ConfigError(f"{where or 'params'}: missing key(s) {missing} (every param is set in params.yaml)")
    values = {}
    for name in known:
        key = f"{where}.{name}" if where else name
        hint = hints[name]
        values[name] = _build(hint, raw[name], key) if dataclasses.is_dataclass(hint) else _coerce(raw[name], hint, key)
    return cls(**values)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check a value against its annotation; YAML 1.1 reads 2e-4 as a string, so floats are parsed."""
    args = get_args(hint)
    if type(None) in args:
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
    if value is None:
        raise ConfigError(f"{key}: must not be null")
    if dataclasses.is_dataclass(hint):  # a list of mappings (data.mix.extra_sources)
        return _build(hint, value, key)
    if get_origin(hint) is dict:
        if not isinstance(value, dict) or not all(isinstance(name, str) for name in value):
            raise ConfigError(f"{key}: expected a mapping of names to values, got {value!r}")
        return {name: _coerce(item, get_args(hint)[1], f"{key}.{name}") for name, item in value.items()}
    if set(args) == {int, float}:
        # int | float keeps what was written: 3 (a count) stays an int, 0.5 or 1.0 (a share) a float.
        return _coerce(value, int if isinstance(value, int) else float, key)
    if get_origin(hint) is Literal:
        if value not in get_args(hint):
            raise ConfigError(f"{key}: {value!r} is not allowed; allowed: {'|'.join(get_args(hint))}")
        return value
    if get_origin(hint) is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(item, get_args(hint)[0], f"{key}[{i}]") for i, item in enumerate(value)]
    name = getattr(hint, "__name__", str(hint))
    if isinstance(value, bool) and hint is not bool:
        raise ConfigError(f"{key}: expected {name}, got {value!r}")
    try:
        if hint is int:
            if isinstance(value, str) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if hint is float:
            return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected {name}, got {value!r}") from None
    if hint in (bool, str) and isinstance(value, hint):
        return value
    raise ConfigError(f"{key}: expected {name}, got {value!r}")


def _check(condition: bool, key: str, value: Any, rule: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {value!r} is not allowed; it must be {rule}")


def _positive(section: Any, prefix: str, *names: str) -> None:
    for name in names:
        _check(getattr(section, name) > 0, f"{prefix}.{name}", getattr(section, name), "positive")


def validate(config: LabConfig) -> LabConfig:
    """Reject impossible values up front, before any stage spends time."""
    data, builtin, train = config.data, config.data.builtin, config.train
    _check(0.0 < data.test_size < 1.0, "data.test_size", data.test_size, "in (0, 1)")
    _check(0.0 < data.dedup.threshold <= 1.0, "data.dedup.threshold", data.dedup.threshold, "a Jaccard in (0, 1]")
    _positive(data.dedup, "data.dedup", "num_perm", "shingle_words")
    _positive(data, "data", "eval_examples")
    _check(data.validation_examples >= 0, "data.validation_examples", data.validation_examples,
           ">= 0 (0: no validation split)")
    _check(data.max_train_examples is None or data.max_train_examples > 0, "data.max_train_examples",
           data.max_train_examples, "positive or null (all)")
    _validate_filters(data.filters)
    _validate_mix(data)
    _positive(builtin, "data.builtin", "max_input_words", "min_words")
    for name in ("code_examples", "math_examples"):
        _check(getattr(builtin, name) >= 0, f"data.builtin.{name}", getattr(builtin, name), ">= 0 (0: none)")
    _check(0.0 <= builtin.closed_share <= 1.0, "data.builtin.closed_share", builtin.closed_share, "in [0, 1]")
    weights = dataclasses.asdict(builtin.task_weights)
    _check(all(w >= 0 for w in weights.values()) and sum(weights.values()) > 0, "data.builtin.task_weights",
           weights, "non-negative with a positive sum")
    _check(math.isfinite(config.lr) and config.lr > 0, "lr", config.lr, "a finite positive number")
    _positive(train, "train", "batch_size", "grad_accum", "max_seq_length", "logging_steps", "epochs")
    _validate_train(config)
    _positive(config.evaluate, "evaluate", "max_new_tokens", "batch_size", "max_input_tokens")
    _check(bool(config.evaluate.rouge_types), "evaluate.rouge_types", config.evaluate.rouge_types, "non-empty")
    _validate_compare(config)
    return config


def _validate_filters(filters: FiltersConfig) -> None:
    for name in ("min_answer_words", "max_answer_words"):
        value = getattr(filters, name)
        _check(value is None or value > 0, f"data.filters.{name}", value, "positive, or null (off)")
    low, high = filters.min_answer_words, filters.max_answer_words
    _check(low is None or high is None or low <= high, "data.filters.max_answer_words", high,
           f">= data.filters.min_answer_words ({low}), or null (off)")
    _check(filters.min_score is None or math.isfinite(filters.min_score), "data.filters.min_score",
           filters.min_score, "a finite number, or null (off)")
    share = filters.max_symbol_share
    _check(share is None or 0.0 <= share < 1.0, "data.filters.max_symbol_share", share, "in [0, 1), or null (off)")
    languages = filters.languages
    _check(languages is None or (bool(languages) and len(set(languages)) == len(languages)),
           "data.filters.languages", languages, "null (off) or distinct ISO 639 codes (e.g. [en])")


def _validate_mix(data: DataConfig) -> None:
    names = [data.source] + [extra.source for extra in data.mix.extra_sources]
    _check(len(set(names)) == len(names), "data.mix.extra_sources", names,
           "distinct sources, none of them data.source")
    proportions = data.mix.proportions
    if proportions is not None:
        values = list(proportions.values())
        _check(bool(values) and all(v >= 0 for v in values) and sum(values) > 0, "data.mix.proportions",
               proportions, "null (natural mix) or a non-empty mapping of sources to values >= 0 with a positive sum")
        kinds = {type(v) for v in values}
        _check(len(kinds) == 1, "data.mix.proportions", proportions,
               "all counts (ints, e.g. 100) or all shares (floats, e.g. 0.5 or 1.0), not both")
        cap = data.max_train_examples
        _check(not data.mix.counts() or cap is None or sum(values) <= cap, "data.mix.proportions", proportions,
               f"counts summing to at most data.max_train_examples ({cap}), or set that to null")
    domains = data.curriculum_domains
    _check(bool(domains) and len(set(domains)) == len(domains), "data.curriculum_domains", domains,
           "a non-empty list of distinct sources")


def _validate_train(config: LabConfig) -> None:
    train, lora = config.train, config.train.lora
    _check(train.warmup_steps >= 0 and (train.warmup_steps < 1 or float(train.warmup_steps).is_integer()),
           "train.warmup_steps", train.warmup_steps, "a whole number of steps, or a share of all steps in [0, 1)")
    _check(train.weight_decay >= 0, "train.weight_decay", train.weight_decay, ">= 0")
    _check(math.isfinite(train.max_grad_norm) and train.max_grad_norm >= 0, "train.max_grad_norm",
           train.max_grad_norm, ">= 0 (0 turns clipping off)")
    _positive(train, "train", "scheduler_cycles", "eval_steps")
    _check(train.scheduler_cycles == 1 or train.lr_scheduler == "cosine_with_restarts", "train.scheduler_cycles",
           train.scheduler_cycles, "1 unless train.lr_scheduler is cosine_with_restarts")
    _check(not (train.group_by_length and config.data.order == "curriculum"), "train.group_by_length",
           train.group_by_length, "false when data.order is curriculum (it would reorder the curriculum)")
    _check(train.early_stopping_patience is None or train.early_stopping_patience > 0,
           "train.early_stopping_patience", train.early_stopping_patience, "positive, or null (off)")
    _check(train.early_stopping_patience is None or config.data.validation_examples > 0,
           "train.early_stopping_patience", train.early_stopping_patience,
           "null when data.validation_examples is 0 (early stopping needs a validation split)")
    _positive(lora, "train.lora", "r", "alpha")
    _check(0.0 <= lora.dropout < 1.0, "train.lora.dropout", lora.dropout, "in [0, 1)")
    _check(bool(lora.target_modules), "train.lora.target_modules", lora.target_modules,
           f"non-empty: module names or the presets {sorted(LORA_PRESETS)}")
    layers = lora.layers_to_transform
    _check(layers is None or (bool(layers) and min(layers) >= 0 and len(set(layers)) == len(layers)),
           "train.lora.layers_to_transform", layers, "null (every layer) or distinct layer indices >= 0")


def _validate_compare(config: LabConfig) -> None:
    compare, ev = config.compare, config.evaluate
    _positive(compare, "compare", "bootstrap_resamples")
    _check(0.0 < compare.confidence < 1.0, "compare.confidence", compare.confidence, "in (0, 1)")
    _check(compare.gallery_examples >= 0, "compare.gallery_examples", compare.gallery_examples, ">= 0")
    scored = list(ev.rouge_types) + (["semantic"] if ev.semantic_similarity else [])
    _check(compare.headline_metric in scored, "compare.headline_metric", compare.headline_metric,
           f"one of the scored metrics {scored}")


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` laid over it, nested mappings merged key by key."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_config(path: Path | str = PARAMS_FILE, overrides: dict[str, Any] | None = None) -> LabConfig:
    """Read params.yaml once into a validated, typed LabConfig; `overrides` (nested like the file)
    replace some of its values, as `dvc exp run -S` would."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found (run from the repository root)")
    with path.open() as handle:
        raw = yaml.safe_load(handle) or {}
    return validate(_build(LabConfig, _merge(raw, overrides or {}), ""))


def as_dict(config: Any) -> dict[str, Any]:
    """Plain-dict view of a config, for recording what ran next to the metrics."""
    return dataclasses.asdict(config)
