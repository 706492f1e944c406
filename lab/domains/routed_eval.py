"""The routed system evaluated end to end: every eval prompt routed (lab.domains.router), then answered by the
adapter it was routed to, and scored as any model is (lab.eval.evaluation). Each adapter is loaded once and
answers all the prompts routed to it, in their eval order; the rows come back in eval order, each with its route."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.core.config import LabConfig
from lab.domains.router import Router
from lab.eval.evaluation import base_quantization, evaluate
from lab.eval.format_metrics import aggregate_format
from lab.eval.scoring import aggregate
from lab.model.loading import load_for_inference


def evaluate_routed(config: LabConfig, base_dir: Path, adapters_dir: Path, router: Router,
                    examples: list[dict[str, Any]], device: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One row per example (its prediction by the adapter `adapters_dir`/<route> and the route) and the aggregates,
    with each adapter's share of the examples and its generation timing."""
    routes = router.route_many([example["input"] for example in examples])
    groups: dict[str, list[int]] = {}
    for index, route in enumerate(routes):
        groups.setdefault(route.adapter, []).append(index)
    quantization = base_quantization(config.evaluation, finetuned=True)
    rows: list[dict[str, Any] | None] = [None] * len(examples)
    timing: dict[str, Any] = {}
    for adapter, indices in sorted(groups.items()):
        adapter_dir = adapters_dir / adapter
        if not adapter_dir.is_dir():
            raise FileNotFoundError(f"{adapter_dir}: the router sends prompts to adapter {adapter!r}, which is not "
                                    "there (train it: `dvc repro pipelines/domains/dvc.yaml`)")
        model, tokenizer = load_for_inference(base_dir, adapter_dir, device, quantization,
                                              config.model.trust_remote_code)
        adapter_rows, adapter_metrics = evaluate(config.evaluation, model, tokenizer, [examples[i] for i in indices])
        del model  # one adapter's model in memory at a time
        for index, row in zip(indices, adapter_rows, strict=True):
            rows[index] = {**row, "route": routes[index].to_dict()}
        timing[adapter] = {"examples": len(indices), **adapter_metrics["generation"]}
    complete = [row for row in rows if row is not None]
    metrics = {"model": "routed", "device": device, "base_quantization": quantization, **aggregate(complete),
               **aggregate_format(complete, config.data.answer_format),
               "routes": {adapter: len(indices) for adapter, indices in sorted(groups.items())},
               "generation": timing}
    return complete, metrics
