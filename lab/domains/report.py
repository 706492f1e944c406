"""metrics/domains/report.md: the domain x adapter table with its paired intervals, the router's accuracy and
fallback rate, and the routed system against the mixed adapter; every number read from the domain pipeline's
metrics files (the tables in lab/report/tables.py's style), every verdict computed from an interval."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lab.core.config import MIXED_ADAPTER, LabConfig
from lab.core.io import read_json, read_jsonl
from lab.domains.compare import BASE, ROUTED, compare_domains, headline_summary, pair_key
from lab.eval.scoring import metric_label
from lab.report.tables import confidence_percent, interval, p_value


def _difference(test: Mapping[str, Any]) -> str:
    return f"{test['difference']:+.3f} {interval(test['ci_low'], test['ci_high'], signed=True)}"


def verdict(test: Mapping[str, Any], candidate: str, reference: str) -> str:
    """What a paired interval of candidate - reference says, in words."""
    if test["ci_low"] > 0:
        return f"{candidate} is better than {reference}"
    if test["ci_high"] < 0:
        return f"{reference} is better than {candidate}"
    return f"{candidate} and {reference} cannot be told apart (the interval holds 0)"


def training_table(data: Mapping[str, Any], train: Mapping[str, Mapping[str, Any]]) -> str:
    """Rows, steps and selection of each adapter: the mixed adapter trains on every domain's rows."""
    lines = ["| Adapter | Training rows | Validation rows | Optimizer steps | Best step | Best validation loss | "
             "Train seconds |", "|---|---:|---:|---:|---:|---:|---:|"]
    for adapter, metrics in train.items():
        counts = data["adapters"][adapter]
        lines.append(f"| {adapter} | {counts['train']} | {counts['validation']} | {metrics['steps']} | "
                     f"{metrics['best_step']} | {metrics['best_validation_loss']} | {metrics['runtime_s']:.0f} |")
    return "\n".join(lines)


def training_note(train: Mapping[str, Mapping[str, Any]]) -> str:
    """How the adapters' training compares beyond their rows: the mixed adapter's extra optimizer steps, and which
    adapters were still improving (best validation loss at their last step), which makes steps a confound."""
    domain_steps = [metrics["steps"] for adapter, metrics in train.items() if adapter != MIXED_ADAPTER]
    ratio = train[MIXED_ADAPTER]["steps"] / (sum(domain_steps) / len(domain_steps))
    note = (f"Same params, so the mixed adapter took {ratio:.1f}× a domain adapter's optimizer steps (each adapter "
            "sees each of its rows once per epoch).")
    improving = [adapter for adapter, metrics in train.items()
                 if metrics["best_validation_loss"] is not None and metrics["best_step"] == metrics["steps"]]
    if len(improving) == len(train):
        note += (" Every adapter's validation loss was lowest at its last step, still falling: part of the mixed "
                 "adapter's difference may come from its extra steps rather than its other domains' rows.")
    elif improving:
        note += f" Still improving at the last step (best validation loss there): {', '.join(improving)}."
    return note


def domain_table(comparison: Mapping[str, Any], metrics: list[str]) -> str:
    """Per domain and metric: the three models' means and the paired differences with their intervals."""
    ci = f"[{confidence_percent(comparison['bootstrap']['confidence'])} CI]"
    lines = [f"| Domain | Examples | Metric | Base | Mixed | Domain adapter | Domain − mixed {ci} | p | "
             f"Domain − base {ci} | Mixed − base {ci} |", "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, domain in comparison["domains"].items():
        means = domain["means"]
        for metric in metrics:
            own = domain[pair_key("adapter", MIXED_ADAPTER)][metric]
            lines.append(
                f"| {name} | {domain['examples']} | {metric_label(metric)} | {means[BASE][metric]:.4f} "
                f"| {means[MIXED_ADAPTER][metric]:.4f} | {means['adapter'][metric]:.4f} | {_difference(own)} "
                f"| {p_value(own)} | {_difference(domain[pair_key('adapter', BASE)][metric])} "
                f"| {_difference(domain[pair_key(MIXED_ADAPTER, BASE)][metric])} |")
    return "\n".join(lines)


def routed_table(comparison: Mapping[str, Any], metrics: list[str]) -> str:
    """The routed system against the mixed adapter and the base on every domain's examples."""
    routed = comparison[ROUTED]
    ci = f"[{confidence_percent(comparison['bootstrap']['confidence'])} CI]"
    lines = [f"| Metric | Base | Mixed | Routed | Routed − mixed {ci} | p | Routed − base {ci} |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for metric in metrics:
        test, versus_base = (routed[pair_key(ROUTED, side)][metric] for side in (MIXED_ADAPTER, BASE))
        lines.append(f"| {metric_label(metric)} | {routed['means'][BASE][metric]:.4f} "
                     f"| {routed['means'][MIXED_ADAPTER][metric]:.4f} | {routed['means'][ROUTED][metric]:.4f} "
                     f"| {_difference(test)} | {p_value(test)} | {_difference(versus_base)} |")
    return "\n".join(lines)


def router_section(routing: Mapping[str, Any]) -> str:
    """Accuracy, fallback and misrouting per domain, the confusion counts, and the threshold in context."""
    lines = ["| Domain | Examples | Routed to its adapter | Fell back to mixed | Misrouted | Nearest centroid right |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, rates in [*routing["per_domain"].items(), ("all", routing)]:
        lines.append(f"| {name} | {rates['examples']} | {rates['accuracy']:.1%} | {rates['fallback_rate']:.1%} "
                     f"| {rates['misrouted_rate']:.1%} | {rates['nearest_accuracy']:.1%} |")
    columns = list(next(iter(routing["confusion"].values())))
    lines += ["", "| Domain \\ routed to | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    lines += [f"| {name} | " + " | ".join(str(row[c]) for c in columns) + " |"
              for name, row in routing["confusion"].items()]
    train = routing["training_prompts"]
    quantiles = ", ".join(f"{q} {v:.3f}" for q, v in train["similarity_quantiles"].items())
    lines += ["", f"Threshold {routing['threshold']} (domains.router_threshold): a prompt whose nearest centroid is "
              f"less similar goes to the mixed adapter. On the {train['prompts']} training prompts the centroids were "
              f"fitted on, the nearest similarity has quantiles {quantiles}; {train['fallback_rate']:.1%} of them "
              "would fall back."]
    return "\n".join(lines)


def _verdicts(comparison: Mapping[str, Any], headline: str) -> str:
    lines = []
    for name, domain in comparison["domains"].items():
        test = domain[pair_key("adapter", MIXED_ADAPTER)][headline]
        lines.append(f"- **{name}** (domain − mixed {_difference(test)}): "
                     f"{verdict(test, 'the ' + name + ' adapter', 'mixed')} on {name}.")
    return "\n".join(lines)


def render(comparison: Mapping[str, Any], routing: Mapping[str, Any], routes: Mapping[str, int],
           data: Mapping[str, Any], train: Mapping[str, Mapping[str, Any]], headline: str) -> str:
    """The whole report: `routing` is the router stage's record, `routes` the routed evaluation's examples per
    adapter, `data` the domains_prepare statistics and `train` maps each adapter to its train metrics."""
    metrics, boot = comparison["metrics"], comparison["bootstrap"]
    label = metric_label(headline)
    routed_test = comparison[ROUTED][pair_key(ROUTED, MIXED_ADAPTER)][headline]
    used = ", ".join(f"{adapter} {count}" for adapter, count in routes.items())
    examples = ", ".join(f"{name} {domain['examples']}" for name, domain in comparison["domains"].items())
    return "\n\n".join([
        "# Per-domain adapters and a router",
        f"Each domain's adapter trained on that domain's rows only, the mixed adapter on all of them, with the same "
        f"params (`lr`, `train`); each scored on the eval examples of its domain ({examples}), "
        "against the base model and the mixed adapter on the same examples. Intervals: "
        f"paired bootstrap, {boot['resamples']:,} resamples, {confidence_percent(boot['confidence'])}.",
        "## Training", training_table(data, train), training_note(train),
        f"## Does specialisation pay? ({label})", _verdicts(comparison, headline),
        domain_table(comparison, [headline]),
        "### Every metric", domain_table(comparison, metrics),
        "## Router",
        f"Nearest domain centroid of all-MiniLM-L6-v2 prompt embeddings (cosine), fitted on the training rows' "
        f"prompts, checked on the eval examples' known domains: **{routing['accuracy']:.1%}** routed to their own "
        f"domain's adapter, **{routing['fallback_rate']:.1%}** fell back to mixed, {routing['misrouted_rate']:.1%} "
        "went to another domain's adapter.",
        router_section(routing),
        "## Routed system vs the mixed adapter",
        f"Every eval prompt routed and answered by the adapter it was routed to ({used}), against the mixed adapter "
        f"on the same {comparison[ROUTED]['examples']} examples, routed − mixed {label} {_difference(routed_test)}: "
        f"{verdict(routed_test, 'the routed system', 'the mixed adapter')}.",
        routed_table(comparison, metrics),
    ]) + "\n"


def build_domain_report(config: LabConfig, metrics_dir: Path) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """The comparison, the report's markdown and the headline summary, from the domain pipeline's files under
    `metrics_dir`: predictions/<base|mixed|routed|domain>.jsonl, router.json, eval/routed.json, data.json and
    train/<adapter>.json."""
    names = config.domains.names
    predictions = {side: read_jsonl(metrics_dir / "predictions" / f"{side}.jsonl")
                   for side in (BASE, MIXED_ADAPTER, ROUTED, *names)}
    comparison = compare_domains(config.comparison, predictions, names)
    routing = read_json(metrics_dir / "router.json")
    routes = read_json(metrics_dir / "eval" / f"{ROUTED}.json")["routes"]
    train = {adapter: read_json(metrics_dir / "train" / f"{adapter}.json") for adapter in config.domains.adapters}
    headline = config.compare.headline_metric
    report = render(comparison, routing, routes, read_json(metrics_dir / "data.json"), train, headline)
    return comparison, report, headline_summary(comparison, routing, headline)
