"""The domain pipeline's data (pipelines/domains/dvc.yaml, stage domains_prepare): lab.data.prepare's prepare run with
the domains section laid over the data section (`domain_data_config`), then its rows split by domain.

prepare does the loading, validation, dedup, split and leak check exactly as the default run does; the overrides
add the code and math domains, draw domains.train_examples + domains.validation_examples training rows from each
domain (data.mix.proportions as counts) and hold out no validation split of their own. Each domain's validation
rows are then a seeded sample of its training rows, so every domain adapter selects its best step on its own
domain; each domain's eval sample is a seeded sample of its test rows. The mixed adapter's rows are the union of
the domains' (its training rows in prepare's order, which a curriculum keeps), and its eval sample, every
domain's, is the one the base model and the routed system are scored on too.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

from lab.core.checks import validate
from lab.core.config import MIXED_ADAPTER, LabConfig
from lab.core.errors import DataError
from lab.core.io import staged_outputs, write_json, write_jsonl
from lab.data.mixing import sample
from lab.data.prepare import prepare, to_eval_example

# Each adapter's folder under the data directory holds these files.
DOMAIN_SPLITS = ("train", "validation", "eval")


def domain_data_config(config: LabConfig) -> LabConfig:
    """`config` with the data params the domain pipeline prepares with, checked again as params.yaml's are."""
    domains, data = config.domains, config.data
    per_domain = domains.train_examples + domains.validation_examples
    builtin = replace(data.builtin, code_examples=domains.code_examples, math_examples=domains.math_examples)
    mix = replace(data.mix, proportions={name: per_domain for name in domains.names})
    data = replace(data, builtin=builtin, mix=mix, max_train_examples=None, validation_examples=0,
                   eval_examples=domains.eval_examples)
    return validate(replace(config, data=data))


def _check_no_repeats(stats: dict[str, Any], config: LabConfig) -> None:
    """A domain short of training rows would be up-sampled by repeats, and a repeated row could then sit in both
    its training and its validation rows: refused, naming what to change."""
    short = {name: stats["per_source"][name]["train_unique"] for name in config.domains.names
             if stats["per_source"].get(name, {}).get("repeats", 0)}
    if short:
        needed = config.domains.train_examples + config.domains.validation_examples
        raise DataError(f"domains: {needed} training rows per domain (domains.train_examples + "
                        f"domains.validation_examples) but only {short} are available; lower those or add rows "
                        "(domains.code_examples, domains.math_examples for the builtin data)")


def _hold_out(train: list[dict[str, Any]], config: LabConfig) -> set[int]:
    """Positions in `train` of each domain's validation rows: a seeded sample per domain (a domain's draw does not
    depend on the other domains)."""
    held: set[int] = set()
    for name in config.domains.names:
        positions = [i for i, row in enumerate(train) if row["source"] == name]
        held |= set(random.Random(f"{config.seed}:{name}").sample(positions, config.domains.validation_examples))
    return held


def _eval_sample(test: list[dict[str, Any]], name: str, config: LabConfig) -> list[dict[str, Any]]:
    rows = [row for row in test if row["source"] == name]
    count = config.domains.eval_examples
    if len(rows) < count:
        raise DataError(f"domains.eval_examples={count} but the test split has only {len(rows)} {name!r} rows; lower "
                        "it or add rows (domains.code_examples, domains.math_examples for the builtin data)")
    return [to_eval_example(row) for row in sample(rows, count, config.seed)]


def split_by_domain(result: dict[str, Any], config: LabConfig) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Each adapter's train, validation and eval rows from prepare's result: a domain's own rows, and for mixed the
    union of the domains' (in prepare's order for training, in domains.names order for validation and eval)."""
    train = result["train"]
    held = _hold_out(train, config)
    splits: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for name in config.domains.names:
        splits[name] = {
            "train": [row for i, row in enumerate(train) if row["source"] == name and i not in held],
            "validation": [row for i, row in enumerate(train) if row["source"] == name and i in held],
            "eval": _eval_sample(result["test"], name, config),
        }
    splits[MIXED_ADAPTER] = {
        "train": [row for i, row in enumerate(train) if i not in held],
        **{split: [row for name in config.domains.names for row in splits[name][split]]
           for split in ("validation", "eval")},
    }
    return splits


def prepare_domains(config: LabConfig) -> tuple[dict[str, dict[str, list[dict[str, Any]]]], dict[str, Any]]:
    """Each adapter's splits and the statistics: prepare's (with the domain overrides) and the rows per adapter."""
    try:
        result = prepare(domain_data_config(config))
    except DataError as error:
        raise DataError(f"domains (domains.names as data.mix.proportions counts): {error}") from None
    _check_no_repeats(result["stats"], config)
    splits = split_by_domain(result, config)
    counts = {adapter: {split: len(rows) for split, rows in splits[adapter].items()} for adapter in splits}
    test_rows = {name: sum(row["source"] == name for row in result["test"]) for name in config.domains.names}
    stats = {"adapters": counts, "test_rows": test_rows, "prepare": result["stats"]}
    return splits, stats


def run_domains_prepare(config: LabConfig, data_dir: Path, metrics: Path) -> dict[str, Any]:
    """The domains_prepare stage: data_dir/<adapter>/<split>.jsonl for every adapter (domains.adapters) and the
    statistics at `metrics`, all or none (lab.core.io.staged_outputs)."""
    with staged_outputs(data_dir, metrics) as (staged_dir, staged_metrics):
        splits, stats = prepare_domains(config)
        for adapter in config.domains.adapters:
            for split in DOMAIN_SPLITS:
                write_jsonl(staged_dir / adapter / f"{split}.jsonl", splits[adapter][split])
        write_json(staged_metrics, stats)
    return stats
