"""Checks of every param's value, run when params.yaml is loaded, before any stage spends time.

Each failure names the key, the value and what is allowed (a ConfigError), so a typo in
`dvc exp run -S` fails in a second instead of after a model has loaded.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

from lab.core.choices import LORA_PRESETS, MAX_RATING, MIN_RATING
from lab.core.config import (
    BUILTIN_DATASET,
    EMBEDDED_MODEL,
    MIXED_ADAPTER,
    RESERVED_DOMAIN_NAMES,
    DataConfig,
    FiltersConfig,
    LabConfig,
    ModelConfig,
)
from lab.core.errors import ConfigError
from lab.core.hub import is_hub_id, local_model_problem

# The local dataset files the lab reads, and how lab.data.prepare reads each: its own line-by-line JSON reader
# (lab.data.json_rows), or `datasets`' parquet loader.
DATA_FILE_LOADERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}
DATA_FILE_SUFFIXES = tuple(DATA_FILE_LOADERS)


def _check(condition: bool, key: str, value: Any, rule: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {value!r} is not allowed; it must be {rule}")


def _positive(section: Any, prefix: str, *names: str) -> None:
    for name in names:
        _check(getattr(section, name) > 0, f"{prefix}.{name}", getattr(section, name), "positive")


def validate(config: LabConfig) -> LabConfig:
    """Reject impossible values up front, before any stage spends time."""
    data, builtin, train = config.data, config.data.builtin, config.train
    _check(0 <= config.seed < 2**32, "seed", config.seed, "in [0, 2**32) (numpy's seed range)")
    _validate_model(config.model, train.backend)
    _validate_data_source(data.source, "data.source", data.revision, "data.revision")
    for i, extra in enumerate(data.mix.extra_sources):
        _validate_data_source(extra.source, f"data.mix.extra_sources[{i}].source", None, None)
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
    _check(config.export.gguf is None or config.export.dtype != "fp32", "export.gguf", config.export.gguf,
           "null with export.dtype fp32 (Unsloth converts a 16-bit checkpoint to GGUF): set export.dtype bf16 or fp16")
    _validate_feedback(config)
    _validate_domains(config)
    return config


def _validate_model(model: ModelConfig, backend: str) -> None:
    """model.base is the embedded model, a loadable local model or a Hub id; a revision needs a Hub id;
    model.chat_template needs a backend that applies it (train.backend auto: lab.train.backends checks it
    once the backend is resolved)."""

    base, path = model.base, Path(model.base)
    hub = base != EMBEDDED_MODEL and not path.exists()
    if base != EMBEDDED_MODEL and path.exists():
        problem = local_model_problem(path)
        _check(problem is None, "model.base", base, f"a loadable local model, but it {problem}")
    _check(not hub or is_hub_id(base), "model.base", base,
           f"{EMBEDDED_MODEL!r}, an existing local model directory (config.json and safetensors weights) or .gguf "
           "file, or a Hub model id owner/name")
    _check(model.revision is None or (hub and bool(model.revision.strip())), "model.revision", model.revision,
           "null, or a branch, tag or commit of a Hub model.base (a local or embedded model has no revisions)")
    _check(model.chat_template is None or backend != "hf", "model.chat_template", model.chat_template,
           "null with train.backend hf, which keeps the tokenizer's own template (Unsloth's template names "
           "apply to the unsloth backend only)")


def _validate_data_source(source: str, key: str, revision: str | None, revision_key: str | None) -> None:
    """A dataset source is builtin, an existing local .json/.jsonl/.parquet file or a Hub dataset id
    (lab.data.prepare.load_source_rows tells them apart the same way); a revision needs a Hub id."""

    path, files = Path(source), "/".join(DATA_FILE_SUFFIXES)
    local = source == BUILTIN_DATASET or path.suffix.lower() in DATA_FILE_SUFFIXES or path.exists()
    if local and source != BUILTIN_DATASET:
        _check(path.is_file() and path.suffix.lower() in DATA_FILE_SUFFIXES, key, source,
               f"an existing {files} file" + ("" if path.exists() else " (there is no such file)"))
    _check(local or is_hub_id(source), key, source,
           f"{BUILTIN_DATASET!r}, an existing local {files} file, or a Hub dataset id owner/name")
    if revision_key is not None:
        _check(revision is None or (not local and bool(revision.strip())), revision_key, revision,
               "null, or a branch, tag or commit of a Hub dataset data.source (builtin and local files have none)")


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
    _check(train.seed is None or 0 <= train.seed < 2**32, "train.seed", train.seed,
           "null (the top-level seed) or in [0, 2**32)")
    _validate_processes(train)
    _check(train.micro_batch_tokens in (None, "auto") or train.micro_batch_tokens >= 1, "train.micro_batch_tokens",
           train.micro_batch_tokens, "a whole number of tokens >= 1, auto (from the free memory) or null (off)")
    _check(train.micro_batch_tokens in (None, "auto") or train.padding_free, "train.micro_batch_tokens",
           train.micro_batch_tokens, "null or auto (off) unless train.padding_free is true (passes are cut "
           "between whole examples of a padding-free batch)")
    layers = lora.layers_to_transform
    _check(layers is None or (bool(layers) and min(layers) >= 0 and len(set(layers)) == len(layers)),
           "train.lora.layers_to_transform", layers, "null (every layer) or distinct layer indices >= 0")


def _validate_processes(train: Any) -> None:
    """train.processes, and how the batch and lr follow it (auto is checked once it resolves:
    lab.train.distributed.resolve_processes)."""
    _check(train.processes == "auto" or train.processes >= 1, "train.processes", train.processes,
           "a whole number >= 1, or auto (every visible GPU)")
    if train.processes != "auto":
        check_batch_split(train, train.processes)
    _check(train.lr_scaling == "none" or train.batch_scaling == "per_device", "train.lr_scaling", train.lr_scaling,
           "none unless train.batch_scaling is per_device (fixed_global keeps the global batch, and so the lr)")


def check_batch_split(train: Any, processes: int) -> None:
    """fixed_global splits train.grad_accum's micro-batches among the processes: it must divide."""
    _check(train.batch_scaling != "fixed_global" or train.grad_accum % processes == 0, "train.grad_accum",
           train.grad_accum, f"a multiple of the {processes} processes with train.batch_scaling fixed_global "
           "(each process accumulates an equal share of the optimizer step's micro-batches); or set "
           "train.batch_scaling: per_device")


def _validate_compare(config: LabConfig) -> None:
    compare, ev = config.compare, config.evaluate
    _positive(compare, "compare", "bootstrap_resamples")
    _check(0.0 < compare.confidence < 1.0, "compare.confidence", compare.confidence, "in (0, 1)")
    _check(compare.gallery_examples >= 0, "compare.gallery_examples", compare.gallery_examples, ">= 0")
    scored = list(ev.rouge_types) + (["semantic"] if ev.semantic_similarity else [])
    _check(compare.headline_metric in scored, "compare.headline_metric", compare.headline_metric,
           f"one of the scored metrics {scored}")


def _validate_feedback(config: LabConfig) -> None:

    low = config.feedback.min_rating
    _check(low is None or MIN_RATING <= low <= MAX_RATING, "feedback.min_rating", low,
           f"a rating from {MIN_RATING} to {MAX_RATING} (tools/chat.py /rate), or null (off)")
def _validate_domains(config: LabConfig) -> None:
    """The domain pipeline's params: names that can be folder and DVC stage names, the adapters its foreach trains
    (DVC's templating cannot append mixed to domains.names, so both lists are written out and must agree)."""

    domains = config.domains
    names = domains.names
    _check(bool(names) and len(set(names)) == len(names), "domains.names", names,
           "a non-empty list of distinct sources")
    for name in names:
        _check(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name) is not None and name not in RESERVED_DOMAIN_NAMES,
               "domains.names", name, "letters, digits, _ and - (a folder and a DVC stage name), and none of "
               f"{list(RESERVED_DOMAIN_NAMES)}")
    expected = [*names, MIXED_ADAPTER]
    _check(sorted(domains.adapters) == sorted(expected) and len(set(domains.adapters)) == len(domains.adapters),
           "domains.adapters", domains.adapters, f"the domains and {MIXED_ADAPTER}: {expected}")
    for name in ("code_examples", "math_examples", "validation_examples"):
        _check(getattr(domains, name) >= 0, f"domains.{name}", getattr(domains, name), ">= 0")
    _positive(domains, "domains", "train_examples", "eval_examples")
    _check(-1.0 <= domains.router_threshold <= 1.0, "domains.router_threshold", domains.router_threshold,
           "a cosine similarity in [-1, 1] (-1: never fall back)")
    _check(config.train.early_stopping_patience is None or domains.validation_examples > 0,
           "domains.validation_examples", domains.validation_examples,
           "> 0 while train.early_stopping_patience is set (early stopping needs a validation split)")
