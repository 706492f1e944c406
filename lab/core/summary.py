"""metrics/summary.json: the run's headline, the one file DVC lists as metrics.

`dvc exp show` and `dvc metrics diff` print every key of every metrics file, so the file they read
holds only what a user compares runs on: each model's scores, the fine-tuned-minus-base difference
with its paired-bootstrap interval and p-value, the validation loss that selects runs, and the
training speed. The stages' full records (per-source means, length effects, token counts, what
ran, data statistics) stay beside it as plain, still versioned outputs.
"""

from __future__ import annotations

from typing import Any

# Per metric: both models' means, then the paired test of their difference.
TEST_KEYS = ("base", "finetuned", "difference", "ci_low", "ci_high", "p_value")
VALIDATION_LOSS = "validation_loss"
TRAIN_SECONDS = "train_seconds"


def headline(train: dict[str, Any], comparison: dict[str, Any]) -> dict[str, Any]:
    """The summary from metrics/train.json and metrics/compare.json (the format metrics, where any
    covers an eval example, with the number it covers)."""
    summary: dict[str, Any] = {
        VALIDATION_LOSS: train["best_validation_loss"],
        "best_step": train["best_step"],
        "train_tokens_per_s": train["tokens_per_s"],
        TRAIN_SECONDS: train["runtime_s"],
    }
    for metric, test in comparison["metrics"].items():
        summary[metric] = {key: test[key] for key in TEST_KEYS}
    for metric, test in (comparison.get("format_metrics") or {}).items():
        summary[metric] = {**{key: test[key] for key in TEST_KEYS}, "examples": test["examples"]}
    return summary
