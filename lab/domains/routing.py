"""The domains_router stage's work: the router fitted on every domain's training prompts (the conversation before
each training answer), and measured on the eval examples, whose domains are known: how often each is routed to
its own domain's adapter, falls back to mixed, or goes to another domain's adapter."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lab.core.config import MIXED_ADAPTER, DomainsConfig
from lab.core.errors import DataError
from lab.core.io import read_jsonl
from lab.data.prepare import to_eval_example
from lab.domains.router import Route, Router, embed_prompts

# The quantiles of the training prompts' nearest-centroid similarity that the record keeps: where the threshold
# sits among the prompts the router was fitted on.
SIMILARITY_QUANTILES = (0.01, 0.05, 0.25, 0.5)
# What the record's list of eval routes names each example by.
ROUTE_KEYS = ("id", "source")


def routing_metrics(routes: Sequence[Route], domains: Sequence[str], adapters: Sequence[str]) -> dict[str, Any]:
    """How the routes of prompts of known domains compare with those domains: accuracy (routed to its own domain's
    adapter), fallback rate, misrouted rate (another domain's adapter), the nearest centroid's accuracy ignoring
    the threshold, each per domain too, and the confusion counts (true domain -> adapter, `adapters` the columns'
    order)."""
    if len(routes) != len(domains) or not routes:
        raise ValueError(f"{len(routes)} routes for {len(domains)} known domains")

    def rates(indices: list[int]) -> dict[str, Any]:
        count = len(indices)
        correct = sum(routes[i].adapter == domains[i] for i in indices)
        fallbacks = sum(routes[i].fallback for i in indices)
        return {"examples": count, "accuracy": round(correct / count, 4), "fallback_rate": round(fallbacks / count, 4),
                "misrouted_rate": round((count - correct - fallbacks) / count, 4),
                "nearest_accuracy": round(sum(routes[i].nearest == domains[i] for i in indices) / count, 4)}

    names = list(dict.fromkeys(domains))
    targets = [*adapters, *(route.adapter for route in routes)]
    confusion = {name: {target: sum(1 for route, domain in zip(routes, domains, strict=True)
                                    if domain == name and route.adapter == target)
                        for target in dict.fromkeys(targets)} for name in names}
    return {**rates(list(range(len(routes)))),
            "per_domain": {name: rates([i for i, d in enumerate(domains) if d == name]) for name in names},
            "confusion": confusion}


def training_prompts(domains: DomainsConfig, data_dir: Path) -> dict[str, list[list[dict[str, str]]]]:
    """Each domain's training prompts, from data_dir/<domain>/train.jsonl (domains_prepare's)."""
    prompts = {name: [to_eval_example(row)["input"] for row in read_jsonl(data_dir / name / "train.jsonl")]
               for name in domains.names}
    empty = [name for name, rows in prompts.items() if not rows]
    if empty:
        raise DataError(f"no training rows for domain(s) {empty} in {data_dir}: the router has nothing to fit")
    return prompts


def fit_router(domains: DomainsConfig, data_dir: Path,
               eval_examples: Sequence[dict[str, Any]]) -> tuple[Router, dict[str, Any]]:
    """The router (domains.router_threshold, falling back to mixed) and its record: routing_metrics on the eval
    examples, the examples' routes, and the training prompts' nearest similarities."""
    embeddings = {name: embed_prompts(rows) for name, rows in training_prompts(domains, data_dir).items()}
    router = Router.from_embeddings(embeddings, domains.router_threshold, MIXED_ADAPTER)
    routes = router.route_many([example["input"] for example in eval_examples])
    nearest = (np.concatenate(list(embeddings.values())) @ router.centroids.T).max(axis=1)
    record = {
        "threshold": router.threshold, "fallback": router.fallback,
        **routing_metrics(routes, [example["source"] for example in eval_examples], [*router.domains, MIXED_ADAPTER]),
        "training_prompts": {
            "prompts": int(nearest.size),
            "fallback_rate": round(float(np.mean(nearest < router.threshold)), 4),
            "similarity_quantiles": {f"p{round(q * 100)}": round(float(np.quantile(nearest, q)), 4)
                                     for q in SIMILARITY_QUANTILES}},
        "routes": [{**{key: example[key] for key in ROUTE_KEYS}, **route.to_dict()}
                   for example, route in zip(eval_examples, routes, strict=True)],
    }
    return router, record
