"""The report's tables and sections, rendered as markdown from the metrics files: no number is typed in."""

from __future__ import annotations

from typing import Any

from lab.eval.scoring import metric_label

# Gallery texts longer than this are cut, so one long answer does not swamp the report.
GALLERY_MAX_WORDS = 120


def relative_change(base: float, finetuned: float) -> str:
    """Relative improvement in percent, as the lab reports it; undefined when the base is 0."""
    if base == 0:
        return "n/a"
    return f"{(finetuned - base) / base * 100:+.1f}%"


def confidence_percent(confidence: float) -> str:
    """A confidence level as the report and the plots print it: 0.95 -> "95%", 0.975 -> "97.5%"."""
    return f"{round(confidence * 100, 4):g}%"


def interval(low: float, high: float, signed: bool = False) -> str:
    """A confidence interval as "[low, high]", with signs for differences."""
    style = "+.3f" if signed else ".3f"
    return f"[{low:{style}}, {high:{style}}]"


def p_value(test: dict[str, Any]) -> str:
    """A bootstrap cannot resolve p below 1/resamples: say "<" there rather than print the floor."""
    return f"<{test['p_value']:g}" if test["p_value_at_floor"] else f"{test['p_value']:.3f}"


def main_table(comparison: dict[str, Any], confidence: float) -> str:
    """Each metric per model with its own CI, and the paired difference with CI and p-value.

    `confidence` is the bootstrap's (compare.confidence, recorded in compare.json), for the headers.
    """
    ci = f"[{confidence_percent(confidence)} CI]"
    lines = [f"| Metric | Base {ci} | Fine-tuned {ci} | Difference {ci} | p | Relative change |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, t in comparison.items():
        lines.append(
            f"| {metric_label(name)} | {t['base']:.4f} {interval(t['base_ci_low'], t['base_ci_high'])} "
            f"| {t['finetuned']:.4f} {interval(t['finetuned_ci_low'], t['finetuned_ci_high'])} "
            f"| {t['difference']:+.3f} {interval(t['ci_low'], t['ci_high'], signed=True)} | {p_value(t)} "
            f"| {relative_change(t['base'], t['finetuned'])} |")
    return "\n".join(lines)


def precision_recall_table(base: dict[str, Any], finetuned: dict[str, Any]) -> str:
    """Mean ROUGE precision and recall per model, from the two evaluate metrics files."""
    lines = ["| Metric | Base precision | Base recall | Fine-tuned precision | Fine-tuned recall |",
             "|---|---:|---:|---:|---:|"]
    for name in base["precision"]:
        lines.append(f"| {metric_label(name)} | {base['precision'][name]:.4f} | {base['recall'][name]:.4f} | "
                     f"{finetuned['precision'][name]:.4f} | {finetuned['recall'][name]:.4f} |")
    return "\n".join(lines)


def format_section(base: dict[str, Any], comparison: dict[str, Any]) -> str:
    """The format metrics (lab.eval.format_metrics), each over only the eval examples it covers, with the paired
    bootstrap the compare stage ran on them; one n/a line when none covers an example, nothing for metrics
    files written before the format metrics existed."""
    if "answer_format" not in base:
        return ""
    tests = comparison.get("format_metrics") or {}
    lead = f"### Answer format\n\nTarget format `{base['answer_format']}` (data.answer_format)."
    if not tests:
        return f"{lead} No format metric covers any eval example: n/a."
    ci = f"[{confidence_percent(comparison['bootstrap']['confidence'])} CI]"
    lines = [f"{lead} Each metric is the share of the examples it covers (lab/eval/format_metrics.py).", "",
             f"| Metric | Examples | Base {ci} | Fine-tuned {ci} | Difference {ci} | p |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, t in tests.items():
        lines.append(
            f"| {metric_label(name)} | {t['examples']} "
            f"| {t['base']:.3f} {interval(t['base_ci_low'], t['base_ci_high'])} "
            f"| {t['finetuned']:.3f} {interval(t['finetuned_ci_low'], t['finetuned_ci_high'])} "
            f"| {t['difference']:+.3f} {interval(t['ci_low'], t['ci_high'], signed=True)} | {p_value(t)} |")
    return "\n".join(lines)


def per_source_table(per_source: dict[str, Any]) -> str:
    """Base -> fine-tuned mean of every metric per data source, with the example count."""
    names = list(next(iter(per_source.values()))["metrics"])
    lines = ["| Source | Examples | " + " | ".join(metric_label(n) for n in names) + " |",
             "|---|---:|" + "---:|" * len(names)]
    for source, group in per_source.items():
        cells = [f"{m['base']:.3f} → {m['finetuned']:.3f} ({m['difference']:+.3f})"
                 for m in (group["metrics"][n] for n in names)]
        lines.append(f"| {source} | {group['count']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def length_table(base: dict[str, Any], finetuned: dict[str, Any], length: dict[str, Any]) -> str:
    """Words per response, length ratio to the reference, and the share cut off by max_new_tokens."""
    ratio, cutoff = length["length_ratio"], length["cutoff_share"]
    rows = [("Base model", base["words"]["prediction"], ratio["base"], f"{cutoff['base']:.0%}"),
            ("Fine-tuned model", finetuned["words"]["prediction"], ratio["finetuned"], f"{cutoff['finetuned']:.0%}"),
            ("Reference", base["words"]["reference"], {"mean": 1.0, "median": 1.0}, "")]
    lines = ["| Responses | Mean words | Median words | Length ratio, mean | Length ratio, median | "
             f"Cut off at {base['generation']['max_new_tokens']} tokens |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {label} | {words['mean']:.1f} | {words['median']:.1f} | {r['mean']:.2f} | {r['median']:.2f} "
              f"| {cut} |" for label, words, r, cut in rows]
    return "\n".join(lines)


def matched_table(length: dict[str, Any], confidence: float) -> str:
    """The length-matched means per model and their paired difference, with CI and p-value."""
    lines = [f"| Metric (length-matched) | Base | Fine-tuned | Difference [{confidence_percent(confidence)} CI] | p |",
             "|---|---:|---:|---:|---:|"]
    for name, t in length["matched"].items():
        lines.append(f"| {metric_label(name)} | {t['base']:.4f} | {t['finetuned']:.4f} "
                     f"| {t['difference']:+.3f} {interval(t['ci_low'], t['ci_high'], signed=True)} | {p_value(t)} |")
    return "\n".join(lines)


def _clip(text: str) -> str:
    words = text.split()
    return text if len(words) <= GALLERY_MAX_WORDS else " ".join(words[:GALLERY_MAX_WORDS]) + " …"


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in _clip(text).splitlines() or [""])


def _gallery_example_markdown(item: dict[str, Any], metric: str) -> str:
    """One gallery.json entry as a markdown block: scores, question, reference and both answers."""
    history = item["input"] or []
    question = history[-1]["content"] if history else ""
    earlier = f" (after {len(history) - 1} earlier turns)" if len(history) > 1 else ""
    return "\n\n".join([
        f"#### `{item['id']}` ({item['source']}): {metric} {item['base_score']:.3f} → "
        f"{item['finetuned_score']:.3f} ({item['difference']:+.3f})",
        f"**Question**{earlier}:\n\n{_quote(question)}",
        f"**Reference**:\n\n{_quote(item['reference'])}",
        f"**Base model**:\n\n{_quote(item['base_prediction'])}",
        f"**Fine-tuned model**:\n\n{_quote(item['finetuned_prediction'])}",
    ])


def gallery_section(gallery: dict[str, Any]) -> str:
    """The largest gains and losses of gallery.json, each example in full (long texts clipped)."""
    metric = metric_label(gallery["metric"])
    parts = []
    for key, title in (("largest_gain", "Largest gains"), ("largest_loss", "Largest losses")):
        items = gallery[key]
        parts.append(f"### {title} ({metric})")
        parts += [_gallery_example_markdown(item, metric) for item in items] or ["None."]
    return "\n\n".join(parts)


def training_section(train: dict[str, Any]) -> str:
    """What the training run used and how it went, from metrics/train.json."""
    ran = train["ran"]
    return "\n".join([
        f"- Ran: backend `{ran['backend']}` on `{ran['device']}`, dtype `{ran['dtype']}`, quantization "
        f"`{ran['quantization']}`, optimizer `{ran['optimizer']}`, LoRA r={ran['lora']['r']} "
        f"alpha={ran['lora']['alpha']} on {', '.join(ran['lora'].get('modules', ran['lora']['target_modules']))}, "
        f"scheduler `{ran.get('lr_scheduler', 'linear')}`, warmup {ran.get('warmup', 'as configured')}.",
        f"- {train['data']['examples']} examples, {train['steps']} optimizer steps, {train['tokens_seen']:,} tokens "
        f"({train['data']['loss_tokens']:,} with a loss) in {train['runtime_s']:.0f} s: "
        f"{train['tokens_per_s']:.0f} tokens/s, peak memory {train['peak_memory_gib']:.2f} GiB.",
        f"- Loss on assistant tokens, mean of the first quarter of steps {train['loss_first_quarter']}, "
        f"of the last quarter {train['loss_last_quarter']}; mean over the run {train['train_loss']}.",
        _selection_line(train),
    ])


def _selection_line(train: dict[str, Any]) -> str:
    """Which step's adapter was kept, chosen on the validation split only."""
    if train.get("best_validation_loss") is None:
        return "- No validation split: the last step's adapter is evaluated."
    losses = ", ".join(f"{v['loss']} (step {v['step']})" for v in train["validation_losses"])
    stopped = " Training stopped early." if train["stop_reason"] == "early_stopping" else ""
    return (f"- Validation loss {losses}: the adapter of step {train['best_step']} (validation loss "
            f"{train['best_validation_loss']}) is the one evaluated.{stopped}")
