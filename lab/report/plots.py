"""The plots the report embeds: ROUGE bars, response-length distributions, the training loss, and
where each data source's conversations went."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.eval.scoring import metric_label
from lab.report.data import data_flow_segments
from lab.report.tables import confidence_percent


def plot_scores(comparison: dict[str, Any], confidence: float, path: Path) -> None:
    """Each metric's mean per model, with its bootstrap confidence interval as an error bar.

    `comparison` is compare.json's "metrics"; `confidence` its bootstrap's level, for the axis label.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(comparison)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    for offset, side, label in ((-0.2, "base", "base"), (0.2, "finetuned", "fine-tuned")):
        means = np.array([comparison[n][side] for n in names])
        errors = np.array([[means[i] - comparison[n][f"{side}_ci_low"], comparison[n][f"{side}_ci_high"] - means[i]]
                           for i, n in enumerate(names)]).T.clip(min=0)
        ax.bar(x + offset, means, 0.4, yerr=errors, capsize=3, label=label)
    ax.set_xticks(x, [metric_label(n) for n in names])
    ax.set_ylabel(f"mean score ({confidence_percent(confidence)} CI)")
    ax.legend()
    _save(fig, path)


def plot_lengths(base_words: list[int], finetuned_words: list[int], reference_words: list[int], path: Path) -> None:
    """Histograms of response lengths in words: both models and the references."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    top = max(base_words + finetuned_words + reference_words + [1])
    bins = range(0, top + 10, max(1, top // 30))
    for label, values in (("base", base_words), ("fine-tuned", finetuned_words), ("reference", reference_words)):
        ax.hist(values, bins=bins, histtype="step", linewidth=1.5, label=label)
    ax.set_xlabel("response length (words)")
    ax.set_ylabel("examples")
    ax.legend()
    _save(fig, path)


def plot_loss(steps: list[float], losses: list[float], path: Path) -> None:
    """The training loss per optimizer step, as dvclive logged it."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, losses, marker=".")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (assistant tokens)")
    _save(fig, path)


def plot_data_flow(per_source: dict[str, Any], path: Path) -> None:
    """Stacked horizontal bars, one per source: the shares of its conversations removed by each step,
    held out, not sampled and trained on, from metrics/data.json's per_source. Shares, not counts, so
    that a small domain is as readable as a large one; up-sampling repeats reach past 100%."""
    import matplotlib.pyplot as plt

    names = list(per_source)
    totals = [max(1, per_source[name]["in"]) for name in names]
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.45 * len(names)))
    left = [0.0] * len(names)
    for label, counts in data_flow_segments(per_source).items():
        if any(counts):
            shares = [100 * count / total for count, total in zip(counts, totals, strict=True)]
            ax.barh(names, shares, left=left, label=label)
            left = [a + b for a, b in zip(left, shares, strict=True)]
    ax.axvline(100, color="black", linewidth=0.8, linestyle="--")
    ax.invert_yaxis()  # sources top to bottom in the table's order
    ax.set_xlabel("% of the source's conversations (repeats past 100%)")
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5))
    _save(fig, path)


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    from lab.core.io import atomic_open

    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)
