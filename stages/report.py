"""Stage report: metrics/report.md with the lab's tables, and the PNG plots it embeds.

Every number in the report is read from the metrics and predictions files, never typed in.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

from lab.cli import run_stage
from lab.io import read_json, read_jsonl, write_text
from lab.report import (
    length_table,
    plot_lengths,
    plot_loss,
    plot_rouge,
    precision_recall_table,
    rouge_table,
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
    base, finetuned = read_json(metrics_dir / "eval_base.json"), read_json(metrics_dir / "eval_finetuned.json")
    train, data = read_json(metrics_dir / "train.json"), read_json(metrics_dir / "data.json")
    base_rows = read_jsonl(metrics_dir / "predictions" / "base.jsonl")
    tuned_rows = read_jsonl(metrics_dir / "predictions" / "finetuned.jsonl")
    plots = metrics_dir / "plots"
    plot_rouge(base, finetuned, plots / "rouge.png")
    plot_lengths([words(r["prediction"]) for r in base_rows], [words(r["prediction"]) for r in tuned_rows],
                 [words(r["reference"]) for r in base_rows], plots / "lengths.png")
    plot_loss(*read_loss_curve(loss_curve), plots / "loss.png")
    return render(base, finetuned, train, data)


def render(base: dict[str, Any], finetuned: dict[str, Any], train: dict[str, Any], data: dict[str, Any]) -> str:
    rows = data["rows"]
    return f"""# Fine-tuning report

Dataset `{data['source']}`: {rows['train']} training conversations (of {rows['train_available']} in the train
split), {rows['eval']} held-out eval examples drawn from the {rows['test']}-row test split. Input: the conversation
history; reference: the last assistant turn. Greedy decoding, at most {base['generation']['max_new_tokens']} new
tokens, on `{base['device']}`.

## ROUGE (F-measure, mean over {base['examples']} examples)

{rouge_table(base, finetuned)}

![ROUGE](plots/rouge.png)

### Precision and recall

{precision_recall_table(base, finetuned)}

## Response length

{length_table(base, finetuned)}

![Response lengths](plots/lengths.png)

## Training

{training_section(train)}

![Training loss](plots/loss.png)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics-dir", type=Path, default=Path("metrics"))
    parser.add_argument("--loss-curve", type=Path, default=Path("dvclive/plots/metrics/train/loss.tsv"))
    args = parser.parse_args()
    write_text(args.metrics_dir / "report.md", build_report(args.metrics_dir, args.loss_curve))
    print(f"report: {args.metrics_dir / 'report.md'}")


if __name__ == "__main__":
    run_stage(main)
