"""The report's Data section: where each source's conversations went, from metrics/data.json's
`per_source` (lab.data.stats), as a table and as stacked bars (lab.report.plots.plot_data_flow)."""

from __future__ import annotations

from typing import Any

# Row labels of the places the rows that were not removed end up, as data_stats.PLACES names them.
PLACE_LABELS = {"test": "Test", "validation": "Validation", "not_sampled": "Not sampled"}
# Column labels of the removal steps that are not a filter (filters are labelled by their param).
STEP_LABELS = {"exact_duplicates": "Exact dups", "near_duplicates": "Near dups", "leaked": "Leaked"}


def step_label(step: str) -> str:
    """A removal step's column label: dedup and the leak check by name, a filter by its param."""
    return STEP_LABELS.get(step, f"`{step}`")


def data_flow_segments(per_source: dict[str, Any]) -> dict[str, list[int]]:
    """The stacked-bar segments of the data plot: for each removal step, each place and the training
    rows (distinct, then repeats), one count per source in `per_source` order."""
    first = next(iter(per_source.values()))
    segments = {f"removed: {step}": [s["removed"][step] for s in per_source.values()] for step in first["removed"]}
    segments |= {label.lower(): [s[place] for s in per_source.values()] for place, label in PLACE_LABELS.items()}
    segments["train"] = [s["train_unique"] for s in per_source.values()]
    segments["train repeats"] = [s["repeats"] for s in per_source.values()]
    return segments


def source_table(per_source: dict[str, Any]) -> str:
    """One row per source: in, removed by each step, held out, not sampled, train (with repeats), and
    the median answer words in and in training."""
    steps = list(next(iter(per_source.values()))["removed"])
    header = (["Source", "In"] + [step_label(step) for step in steps] + list(PLACE_LABELS.values())
              + ["Train (repeats)", "Answer words in / train (median)"])
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for source, counts in per_source.items():
        cells = ([source, str(counts["in"])] + [str(counts["removed"][step]) for step in steps]
                 + [str(counts[place]) for place in PLACE_LABELS]
                 + [f"{counts['train']} ({counts['repeats']})",
                    f"{counts['answer_words_in']['median']:g} / {counts['answer_words_train']['median']:g}"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def data_section(data: dict[str, Any]) -> str:
    """The Data section's markdown (without its heading) from metrics/data.json."""
    filtered = data.get("filtered") or {}
    filters = ", ".join(f"`{name}` removed {count}" for name, count in filtered.items()) or "none on"
    mix, order = data["mix"], data["order"]
    shares = ", ".join(f"{name} {value}" for name, value in (mix["proportions"] or {}).items())
    proportions = (f"drawn to the proportions {shares} ({mix['repeats']} up-sampling repeats)"
                   if mix["proportions"] is not None else "the natural mix of the training pool")
    ordering = (f"in curriculum order by {order['curriculum_key']}, read as written" if order["order"] == "curriculum"
                else "shuffled by the trainer")
    extra = f" plus {', '.join(f'`{s}`' for s in data['extra_sources'])}" if data.get("extra_sources") else ""
    return f"""Sources: `{data['source']}`{extra}. Filters (data.filters, over all conversations before the split):
{filters}. Training rows: {proportions}, {ordering}. Each source's valid conversations, by where they went:
removed by a filter, by dedup or by the leak check, held out (test, validation), not sampled for training, or
trained on; repeats are up-sampled copies, counted in Train. Answer words: the last assistant turn.

{source_table(data['per_source'])}

![Data per source](plots/data.png)"""
