"""The lab's report: ROUGE and length tables computed from the metrics, and the plots it embeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.scoring import ROUGE_TYPES

ROUGE_LABELS = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L"}


def relative_change(base: float, finetuned: float) -> str:
    """Relative improvement in percent, as the lab reports it; undefined when the base is 0."""
    if base == 0:
        return "n/a"
    return f"{(finetuned - base) / base * 100:+.1f}%"


def rouge_table(base: dict[str, Any], finetuned: dict[str, Any]) -> str:
    lines = ["| Metric | Base | Fine-tuned | Absolute change | Relative change |", "|---|---:|---:|---:|---:|"]
    for name in ROUGE_TYPES:
        b, f = base[name], finetuned[name]
        lines.append(f"| {ROUGE_LABELS[name]} F1 | {b:.4f} | {f:.4f} | {f - b:+.4f} | {relative_change(b, f)} |")
    return "\n".join(lines)


def precision_recall_table(base: dict[str, Any], finetuned: dict[str, Any]) -> str:
    lines = ["| Metric | Base precision | Base recall | Fine-tuned precision | Fine-tuned recall |",
             "|---|---:|---:|---:|---:|"]
    for name in ROUGE_TYPES:
        lines.append(f"| {ROUGE_LABELS[name]} | {base['precision'][name]:.4f} | {base['recall'][name]:.4f} | "
                     f"{finetuned['precision'][name]:.4f} | {finetuned['recall'][name]:.4f} |")
    return "\n".join(lines)


def length_table(base: dict[str, Any], finetuned: dict[str, Any]) -> str:
    rows = [("Base model", base["words"]["prediction"]), ("Fine-tuned model", finetuned["words"]["prediction"]),
            ("Reference", base["words"]["reference"])]
    lines = ["| Responses | Mean words | Median words |", "|---|---:|---:|"]
    lines += [f"| {label} | {stats['mean']:.1f} | {stats['median']:.1f} |" for label, stats in rows]
    lines.append(f"\nGenerations cut off at max_new_tokens={base['generation']['max_new_tokens']}: "
                 f"base {base['hit_max_new_tokens_share']:.0%}, "
                 f"fine-tuned {finetuned['hit_max_new_tokens_share']:.0%}.")
    return "\n".join(lines)


def training_section(train: dict[str, Any]) -> str:
    ran = train["ran"]
    return "\n".join([
        f"- Ran: backend `{ran['backend']}` on `{ran['device']}`, dtype `{ran['dtype']}`, quantization "
        f"`{ran['quantization']}`, optimizer `{ran['optimizer']}`, LoRA r={ran['lora']['r']} "
        f"alpha={ran['lora']['alpha']} on {', '.join(ran['lora']['target_modules'])}.",
        f"- {train['data']['examples']} examples, {train['steps']} optimizer steps, {train['tokens_seen']:,} tokens "
        f"({train['data']['loss_tokens']:,} with a loss) in {train['runtime_s']:.0f} s: "
        f"{train['tokens_per_s']:.0f} tokens/s, peak memory {train['peak_memory_gib']:.2f} GiB.",
        f"- Loss on assistant tokens, mean of the first quarter of steps {train['loss_first_quarter']}, "
        f"of the last quarter {train['loss_last_quarter']}; mean over the run {train['train_loss']}.",
    ])


def plot_rouge(base: dict[str, Any], finetuned: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(ROUGE_TYPES))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(x - 0.2, [base[n] for n in ROUGE_TYPES], 0.4, label="base")
    ax.bar(x + 0.2, [finetuned[n] for n in ROUGE_TYPES], 0.4, label="fine-tuned")
    ax.set_xticks(x, [ROUGE_LABELS[n] for n in ROUGE_TYPES])
    ax.set_ylabel("F-measure")
    ax.legend()
    _save(fig, path)


def plot_lengths(base_words: list[int], finetuned_words: list[int], reference_words: list[int], path: Path) -> None:
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
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, losses, marker=".")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (assistant tokens)")
    _save(fig, path)


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    from lab.io import atomic_open

    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)
