"""The report stage's assembly: metrics/report.md from the metrics files, and the plots it embeds.

Every number in the report is read from the metrics and predictions files, never typed in; the
sentence on length effects is the one the compare stage computed from its numbers. The tables
themselves are rendered in lab/report/tables.py.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from lab.core.io import read_json, read_jsonl
from lab.core.text import word_count
from lab.report.data import data_section
from lab.report.plots import plot_data_flow, plot_lengths, plot_loss, plot_scores
from lab.report.tables import (
    confidence_percent,
    format_section,
    gallery_section,
    length_table,
    main_table,
    matched_table,
    per_source_table,
    precision_recall_table,
    training_section,
)

METRICS_FILES = ("eval_base", "eval_finetuned", "compare", "gallery", "train", "data")


def read_loss_curve(path: Path) -> tuple[list[float], list[float]]:
    """Steps and losses from dvclive's TSV (empty when the run logged none)."""
    if not path.is_file():
        return [], []
    with path.open() as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [float(r["step"]) for r in rows], [float(r["loss"]) for r in rows]


def build_report(metrics_dir: Path, loss_curve: Path, plots: Path | None = None) -> str:
    """Write the plots to `plots` (default `metrics_dir`/plots, where the report, beside it, embeds
    them by relative path; the stage passes a staged folder that becomes that one) and return the
    report's markdown."""
    files = {name: read_json(metrics_dir / f"{name}.json") for name in METRICS_FILES}
    base_rows = read_jsonl(metrics_dir / "predictions" / "base.jsonl")
    finetuned_rows = read_jsonl(metrics_dir / "predictions" / "finetuned.jsonl")
    plots = metrics_dir / "plots" if plots is None else plots
    comparison = files["compare"]
    plot_scores(comparison["metrics"], comparison["bootstrap"]["confidence"], plots / "scores.png")
    plot_lengths([word_count(r["prediction"]) for r in base_rows],
                 [word_count(r["prediction"]) for r in finetuned_rows],
                 [word_count(r["reference"]) for r in base_rows], plots / "lengths.png")
    plot_loss(*read_loss_curve(loss_curve), plots / "loss.png")
    plot_data_flow(files["data"]["per_source"], plots / "data.png")
    return render(files["eval_base"], files["eval_finetuned"], comparison, files["gallery"], files["train"],
                  files["data"])


def render(base: dict[str, Any], finetuned: dict[str, Any], comparison: dict[str, Any], gallery: dict[str, Any],
           train: dict[str, Any], data: dict[str, Any]) -> str:
    """The report's markdown from the contents of the six metrics files (see METRICS_FILES)."""
    rows, boot = data["rows"], comparison["bootstrap"]
    rouge = base["rouge_config"]
    model = base.get("semantic_model")
    semantic = (f"and semantic similarity (cosine of `{model}` embeddings)" if model
                else "(semantic similarity off: evaluate.semantic_similarity)")
    return f"""# Fine-tuning report

Dataset `{data['source']}`: {rows['train']} training conversations (of {rows['train_available']} in the train
split), {rows['eval']} held-out eval examples drawn from the {rows['test']}-row test split. Input: the conversation
history; reference: the last assistant turn. Greedy decoding, at most {base['generation']['max_new_tokens']} new
tokens, on `{base['device']}`.

## Scores (mean over {comparison['examples']} examples)

ROUGE F-measures (rouge-score, stemming {'on' if rouge['use_stemmer'] else 'off'}, `{rouge['tokenizer']}` tokenizer)
{semantic}. Intervals: {confidence_percent(boot['confidence'])}
percentile bootstrap over the eval examples, {boot['resamples']:,} resamples, seed {boot['seed']}; the difference
and its two-sided p-value come from a paired bootstrap (both models resampled on the same examples).

{main_table(comparison['metrics'], boot['confidence'])}

![Scores](plots/scores.png)

### ROUGE precision and recall

{precision_recall_table(base, finetuned)}

{format_section(base, comparison)}

## Per source

Means per data source (base → fine-tuned, difference). Small groups are noisy: read them with their counts.

{per_source_table(comparison['per_source'])}

{length_and_examples(base, finetuned, comparison, gallery)}

## Data

{data_section(data)}

## Training

{training_section(train)}

![Training loss](plots/loss.png)
"""


def length_and_examples(base: dict[str, Any], finetuned: dict[str, Any], comparison: dict[str, Any],
                        gallery: dict[str, Any]) -> str:
    """The report's response-length and example-gallery sections."""
    length = comparison["length"]
    return f"""## Response length

{length_table(base, finetuned, length)}

Length ratio: prediction words / reference words, per example. Length-matched: each example's two predictions cut to
the shorter one's word count (mean budget {length['matched_budget_words_mean']:.1f} words), so neither model is
credited for length alone.

{matched_table(length, comparison['bootstrap']['confidence'])}

{length.get('summary', '')}

![Response lengths](plots/lengths.png)

## Examples

The eval examples where fine-tuning changed the score most, in each direction.

{gallery_section(gallery)}"""
