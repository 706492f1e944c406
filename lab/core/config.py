"""The typed shape of params.yaml: every stage reads its knobs from here.

Values live in params.yaml only. This module holds their types, their allowed values (as
`Literal` types, the one list each) and their ranges; a key missing from params.yaml is an
error, never a silent default. Tests and benchmarks build configs from params.yaml plus explicit
overrides (`load_config(overrides=...)`), so nothing runs on a value that no user gets.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from lab.core.checks import validate
from lab.core.errors import ConfigError
from lab.core.schema import build, merge

PARAMS_FILE = Path("params.yaml")
EMBEDDED_MODEL = "embedded"
BUILTIN_DATASET = "builtin"
# The adapter trained on every domain's rows together, the router's fallback (pipelines/domains/dvc.yaml). The
# domain pipeline's other names for files and folders beside the domains' own are reserved as well.
MIXED_ADAPTER = "mixed"
RESERVED_DOMAIN_NAMES = (MIXED_ADAPTER, "base", "routed", "router")

# Allowed values, each listed once; the modules that act on them read them from here.
Backend = Literal["auto", "unsloth", "hf"]
Quantization = Literal["auto", "4bit", "8bit", "none"]
CheckpointingMode = Literal["unsloth", "plain"]
PackedAttention = Literal["per_example", "library"]
OnInvalid = Literal["error", "drop"]
SameRoleTurns = Literal["merge", "reject"]
LongSequences = Literal["truncate", "drop"]
RougeType = Literal["rouge1", "rouge2", "rouge3", "rouge4", "rougeL", "rougeLsum"]
RougeTokenizer = Literal["default", "whitespace"]
Decode = Literal["auto", "generate", "static"]
DataFormat = Literal["auto", "sharegpt", "messages", "alpaca", "question_answer", "query_response", "inputs_targets",
                     "oasst", "chat_log"]
LrScheduler = Literal["linear", "cosine", "cosine_with_restarts", "constant", "constant_with_warmup"]
# transformers' OptimizerNames the lab runs (8-bit and paged ones via bitsandbytes: on CPU too, paged as plain).
Optimizer = Literal["adamw_torch", "adamw_torch_fused", "adamw_8bit", "adamw_bnb_8bit", "paged_adamw_8bit",
                    "paged_adamw_32bit", "lion_8bit", "paged_lion_8bit", "adafactor", "sgd", "adagrad", "rmsprop"]
Precision = Literal["auto", "bf16", "fp16", "fp32"]
DataOrder = Literal["shuffle", "curriculum"]
CurriculumKey = Literal["length", "score", "domain"]
AnswerFormat = Literal["keep", "steps", "json"]
FinetunedBase = Literal["full", "as_trained"]
Auto = Literal["auto"]
BatchScaling = Literal["fixed_global", "per_device"]
LrScaling = Literal["none", "linear", "sqrt"]
ExportDtype = Literal["bf16", "fp16", "fp32"]
# Unsloth's GGUF quantizations (its save_pretrained_gguf's quantization_method), less the importance-matrix
# (iq*) ones: not_quantized, fast_quantized and quantized are its aliases of f16, q8_0 and q4_k_m.
GgufQuantization = Literal["not_quantized", "fast_quantized", "quantized", "f32", "bf16", "f16", "q8_0", "q4_k_m",
                           "q5_k_m", "q2_k", "q2_k_l", "q3_k_l", "q3_k_m", "q3_k_s", "q3_k_xs", "q4_0", "q4_1",
                           "q4_k_s", "q4_k", "q5_k", "q5_0", "q5_1", "q5_k_s", "q6_k"]
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
    revision: str | None
    trust_remote_code: bool
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
    # int values: fixed counts; float values: relative shares (see lab.data.mixing).
    proportions: dict[str, int | float] | None

    def counts(self) -> bool:
        """True when the proportions are fixed counts (ints), False for shares (floats)."""
        return self.proportions is not None and all(isinstance(v, int) for v in self.proportions.values())


@dataclass(frozen=True)
class DataConfig:
    source: str
    format: DataFormat
    hub_split: str
    revision: str | None
    builtin: BuiltinConfig
    mix: MixConfig
    filters: FiltersConfig
    dedup: DedupConfig
    on_invalid: OnInvalid
    same_role_turns: SameRoleTurns
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
    seed: int | None
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
    optimizer: Optimizer
    max_seq_length: int
    long_sequences: LongSequences
    padding_free: bool
    packed_attention: PackedAttention
    group_by_length: bool
    gradient_checkpointing: bool
    checkpointing_mode: CheckpointingMode
    logging_steps: int
    eval_steps: int
    early_stopping_patience: int | None
    micro_batch_tokens: int | Auto | None
    processes: int | Auto
    batch_scaling: BatchScaling
    lr_scaling: LrScaling
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


# The chat CLI's ratings (tools/chat.py /rate N): whole numbers in this range, highest best.
MIN_RATING, MAX_RATING = 1, 5
Unrated = Literal["keep", "drop"]


@dataclass(frozen=True)
class FeedbackConfig:
    """What prepare keeps of a chat log's answers (lab/data/feedback.py)."""

    min_rating: int | None
    unrated: Unrated


@dataclass(frozen=True)
class ExportConfig:
    dtype: ExportDtype
    gguf: GgufQuantization | None
# Per-domain adapters and the router (the optional pipeline pipelines/domains/dvc.yaml; lab/domains/data.py).
@dataclass(frozen=True)
class DomainsConfig:
    names: list[str]
    adapters: list[str]
    code_examples: int
    math_examples: int
    train_examples: int
    validation_examples: int
    eval_examples: int
    router_threshold: float


@dataclass(frozen=True)
class LabConfig:
    seed: int
    lr: float
    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    evaluate: EvaluateConfig
    compare: CompareConfig
    export: ExportConfig
    feedback: FeedbackConfig
    domains: DomainsConfig

    @property
    def train_seed(self) -> int:
        """The seed of the LoRA initialisation and the training order: train.seed, else seed."""
        return self.seed if self.train.seed is None else self.train.seed


def load_config(path: Path | str = PARAMS_FILE, overrides: dict[str, Any] | None = None) -> LabConfig:
    """Read params.yaml once into a validated, typed LabConfig; `overrides` (nested like the file)
    replace some of its values, as `dvc exp run -S` would."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found (run from the repository root)")
    with path.open() as handle:
        raw = yaml.safe_load(handle) or {}
    return validate(build(LabConfig, merge(raw, overrides or {}), ""))


def as_dict(config: Any) -> dict[str, Any]:
    """Plain-dict view of a config, for recording what ran next to the metrics."""
    return dataclasses.asdict(config)
