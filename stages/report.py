"""Stage report: metrics/report.md with the lab's tables, and the PNG plots it embeds.

Every number in the report is read from the metrics and predictions files, never typed in;
the sentence on length effects is the one the compare stage computed from its numbers.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

from lab.cli import run_stage
from lab.io import read_json, read_jsonl, write_text
from lab.plots import plot_lengths, plot_loss, plot_scores
from lab.report import (
    gallery_section,
    length_table,
    main_table,
    matched_table,
    per_source_table,
    precision_recall_table,
    training_section,
)
from lab.scoring import words


def read_loss_curve(path: Path) -> tuple[list[float], list[float]]:
    """Steps and losses from dvclive's TSV (empty when the run logged none)."""
    if not path.is_file():
        return [], []
    with path.open() as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [float(r["step"]) for r in rows], [float(r["loss"]) for r in rows]


def build_report(metrics_dir: Path, loss_curve: Path) -> str:
    """Write the plots beside the report and return the report's markdown."""
    files = {name: read_json(metrics_dir / f"{name}.json")
             for name in ("eval_base", "eval_finetuned", "compare", "gallery", "train", "data")}
    base_rows = read_jsonl(metrics_dir / "predictions" / "base.jsonl")
    tuned_rows = read_jsonl(metrics_dir / "predictions" / "finetuned.jsonl")
    plots = metrics_dir / "plots"
    plot_scores(files["compare"]["metrics"], plots / "scores.png")
    plot_lengths([words(r["prediction"]) for r in base_rows], [words(r["prediction"]) for r in tuned_rows],
                 [words(r["reference"]) for r in base_rows], plots / "lengths.png")
    plot_loss(*read_loss_curve(loss_curve), plots / "loss.png")
    return render(files["eval_base"], files["eval_finetuned"], files["compare"], files["gallery"], files["train"],
                  files["data"])


def render(base: dict[str, Any], finetuned: dict[str, Any], comparison: dict[str, Any], gallery: dict[str, Any],
           train: dict[str, Any], data: dict[str, Any]) -> str:
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
{semantic}. Intervals: {boot['confidence']:.0%}
percentile bootstrap over the eval examples, {boot['resamples']:,} resamples, seed {boot['seed']}; the difference
and its two-sided p-value come from a paired bootstrap (both models resampled on the same examples).

{main_table(comparison['metrics'])}

![Scores](plots/scores.png)

### ROUGE precision and recall

{precision_recall_table(base, finetuned)}

## Per source

Means per data source (base → fine-tuned, difference). Small groups are noisy: read them with their counts.

{per_source_table(comparison['per_source'])}

{length_and_examples(base, finetuned, comparison["length"], gallery)}

## Training

{training_section(train)}

![Training loss](plots/loss.png)
"""


def length_and_examples(base: dict[str, Any], finetuned: dict[str, Any], length: dict[str, Any],
                        gallery: dict[str, Any]) -> str:
    return f"""## Response length

{length_table(base, finetuned, length)}

Length ratio: prediction words / reference words, per example. Length-matched: each example's two predictions cut to
the shorter one's word count (mean budget {length['matched_budget_words_mean']:.1f} words), so neither model is
credited for length alone.

{matched_table(length)}

{length.get('summary', '')}

![Response lengths](plots/lengths.png)

## Examples

The eval examples where fine-tuning changed the score most, in each direction.

{gallery_section(gallery)}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics-dir", type=Path, default=Path("metrics"))
    parser.add_argument("--loss-curve", type=Path, default=Path("dvclive/plots/metrics/loss.tsv"))
    args = parser.parse_args()
    write_text(args.metrics_dir / "report.md", build_report(args.metrics_dir, args.loss_curve))
    print(f"report: {args.metrics_dir / 'report.md'}")


if __name__ == "__main__":
    run_stage(main)
