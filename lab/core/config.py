"""The typed shape of params.yaml: every stage reads its knobs from here, and each stage's code takes the
sections it needs (`LabConfig.training`, `.evaluation`, `.comparison`, or one section such as `config.data`).

Values live in params.yaml only (lab.core.params reads it; lab.core.choices lists the allowed words). A key missing
from params.yaml is an error, never a silent default; tests and benchmarks build configs from params.yaml plus
explicit overrides (`load_config(overrides=...)`), so nothing runs on a value that no user gets.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from lab.core.choices import (
    LORA_PRESETS,
    AnswerFormat,
    Auto,
    Backend,
    BatchScaling,
    CheckpointingMode,
    CurriculumKey,
    DataFormat,
    DataOrder,
    Decode,
    ExportDtype,
    FinetunedBase,
    GgufQuantization,
    LongSequences,
    LrScaling,
    LrScheduler,
    OnInvalid,
    Optimizer,
    PackedAttention,
    Precision,
    Quantization,
    RougeTokenizer,
    RougeType,
    SameRoleTurns,
    Unrated,
)

EMBEDDED_MODEL = "embedded"
BUILTIN_DATASET = "builtin"
# The adapter trained on every domain's rows together, the router's fallback (pipelines/domains/dvc.yaml). The
# domain pipeline's other names for files and folders beside the domains' own are reserved as well.
MIXED_ADAPTER = "mixed"
RESERVED_DOMAIN_NAMES = (MIXED_ADAPTER, "base", "routed", "router")


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
class TrainingSetup:
    """The train stage's share of the params (its `params:` in dvc.yaml), as lab.train takes them: the train
    section, the model options that training applies, the learning rate, the training seed and the data order."""

    train: TrainConfig
    model: ModelConfig
    lr: float
    seed: int  # of the LoRA initialisation and the training order: train.seed, else seed
    data_order: DataOrder


@dataclass(frozen=True)
class EvaluationSetup:
    """What the evaluate stages read of the params, as lab.eval takes them: the evaluate section, the answer
    format the format metrics check, and the quantization training ran with (evaluate.finetuned_base: as_trained)."""

    evaluate: EvaluateConfig
    answer_format: AnswerFormat
    train_quantization: Quantization


@dataclass(frozen=True)
class ComparisonSetup:
    """What the compare stage reads of the params: the compare section, the ROUGE settings of the length-matched
    rescoring (evaluate section) and the bootstrap's seed."""

    compare: CompareConfig
    evaluate: EvaluateConfig
    seed: int


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

    @property
    def evaluation(self) -> EvaluationSetup:
        """What the evaluate stages' code reads of these params (lab.eval.evaluation)."""
        return EvaluationSetup(evaluate=self.evaluate, answer_format=self.data.answer_format,
                               train_quantization=self.train.quantization)

    @property
    def comparison(self) -> ComparisonSetup:
        """What the compare stage's code reads of these params (lab.eval.comparison)."""
        return ComparisonSetup(compare=self.compare, evaluate=self.evaluate, seed=self.seed)

    @property
    def training(self) -> TrainingSetup:
        """What the train stage's code reads of these params (lab.train)."""
        return TrainingSetup(train=self.train, model=self.model, lr=self.lr, seed=self.train_seed,
                             data_order=self.data.order)


def as_dict(config: Any) -> dict[str, Any]:
    """Plain-dict view of a config, for recording what ran next to the metrics."""
    return dataclasses.asdict(config)
