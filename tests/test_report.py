"""The report renders the metrics' own numbers."""

import pytest

from lab.report import plots
from lab.report.build import read_loss_curve, render
from lab.report.plots import plot_scores
from lab.report.tables import confidence_percent, main_table, matched_table


def eval_metrics(rouge_l: float, words: float) -> dict:
    return {
        "device": "cpu", "examples": 2, "rouge1": 0.3, "rouge2": 0.1, "rougeL": rouge_l,
        "precision": {"rouge1": 0.3, "rouge2": 0.1, "rougeL": 0.2}, "recall": {"rouge1": 0.4, "rouge2": 0.2,
                                                                             "rougeL": 0.3},
        "words": {"prediction": {"mean": words, "median": words}, "reference": {"mean": 20.0, "median": 19.0}},
        "hit_max_new_tokens_share": 0.5, "generation": {"max_new_tokens": 96},
        "rouge_config": {"types": ["rouge1", "rouge2", "rougeL"], "use_stemmer": True, "tokenizer": "default"},
        "semantic_model": "sentence-transformers/all-MiniLM-L6-v2",
    }


def paired_test(base: float, finetuned: float) -> dict:
    return {"base": base, "base_ci_low": base - 0.05, "base_ci_high": base + 0.05, "finetuned": finetuned,
            "finetuned_ci_low": finetuned - 0.05, "finetuned_ci_high": finetuned + 0.05,
            "difference": finetuned - base, "ci_low": 0.01, "ci_high": 0.09, "p_value": 0.02,
            "p_value_at_floor": False}


COMPARE = {
    "examples": 2, "bootstrap": {"resamples": 1000, "confidence": 0.95, "seed": 1, "paired": True},
    "metrics": {"rougeL": paired_test(0.2, 0.25), "semantic": paired_test(0.5, 0.6)},
    "per_source": {"numpy": {"count": 2, "metrics": {"rougeL": {"base": 0.2, "finetuned": 0.25, "difference": 0.05}}}},
    "length": {"length_ratio": {"base": {"mean": 2.5, "median": 2.4}, "finetuned": {"mean": 1.1, "median": 1.0}},
               "cutoff_share": {"base": 0.5, "finetuned": 0.0}, "matched_budget_words_mean": 20.0,
               "matched": {"rougeL": paired_test(0.21, 0.24)}, "summary": "COMPUTED SENTENCE"},
}
GALLERY = {"metric": "rougeL", "largest_loss": [], "largest_gain": [
    {"id": "numpy.sort", "source": "numpy", "input": [{"role": "user", "content": "What does it do?"}],
     "reference": "Sorts.", "base_prediction": "It\n```python\nx", "finetuned_prediction": "Sorts it.",
     "base_score": 0.1, "finetuned_score": 0.6, "difference": 0.5}]}


TRAIN = {"ran": {"backend": "hf", "device": "cpu", "dtype": "float32", "quantization": "none",
                 "optimizer": "adamw_8bit", "lora": {"r": 16, "alpha": 16, "target_modules": ["q_proj"]}},
         "data": {"examples": 8, "loss_tokens": 100}, "steps": 1, "tokens_seen": 900, "runtime_s": 3.0,
         "tokens_per_s": 300.0, "peak_memory_gib": 1.5, "loss_first_quarter": 2.0,
         "loss_last_quarter": 1.5, "train_loss": 1.7}
WORDS = {"mean": 12.0, "median": 11.0, "max": 40}
PER_SOURCE = {
    "docs": {"in": 120, "removed": {"min_answer_words": 5, "exact_duplicates": 3, "near_duplicates": 0, "leaked": 2},
             "test": 18, "validation": 2, "not_sampled": 86, "train_unique": 4, "repeats": 0, "train": 4,
             "answer_words_in": WORDS, "answer_words_train": {**WORDS, "median": 13.0}},
    "math": {"in": 10, "removed": {"min_answer_words": 0, "exact_duplicates": 1, "near_duplicates": 0, "leaked": 0},
             "test": 2, "validation": 1, "not_sampled": 0, "train_unique": 6, "repeats": 2, "train": 8,
             "answer_words_in": {**WORDS, "median": 30.0}, "answer_words_train": {**WORDS, "median": 31.5}},
}
DATA = {"source": "builtin", "rows": {"train": 8, "train_available": 80, "eval": 2, "test": 15},
        "extra_sources": [], "filtered": {"min_answer_words": 5}, "per_source": PER_SOURCE,
        "mix": {"proportions": {"docs": 0.4, "math": 0.6}, "repeats": 2},
        "order": {"order": "curriculum", "curriculum_key": "length"}}


def test_report_tables_show_the_metrics_numbers():
    text = render(eval_metrics(0.2, 50.0), eval_metrics(0.25, 21.0), COMPARE, GALLERY, TRAIN, DATA)
    assert "| ROUGE-L | 0.2000 [0.150, 0.250] | 0.2500 [0.200, 0.300] | +0.050 [+0.010, +0.090] | 0.020 | +25.0% |" \
        in text
    assert "| Semantic similarity | 0.5000 [0.450, 0.550] |" in text
    assert "| Base model | 50.0 | 50.0 | 2.50 | 2.40 | 50% |" in text
    assert "| Fine-tuned model | 21.0 | 21.0 | 1.10 | 1.00 | 0% |" in text
    assert "| Reference | 20.0 | 19.0 |" in text
    assert "| numpy | 2 | 0.200 → 0.250 (+0.050) |" in text
    assert "| ROUGE-L | 0.2100 | 0.2400 | +0.030 [+0.010, +0.090] | 0.020 |" in text and "COMPUTED SENTENCE" in text
    assert "#### `numpy.sort` (numpy): ROUGE-L 0.100 → 0.600 (+0.500)" in text and "> Sorts it." in text
    assert "### Largest losses (ROUGE-L)\n\nNone." in text
    assert "backend `hf` on `cpu`" in text and "300 tokens/s" in text


def test_loss_curve_is_read_from_dvclive_tsv(tmp_path):
    tsv = tmp_path / "loss.tsv"
    tsv.write_text("step\tloss\n0\t2.5\n1\t2.0\n")
    assert read_loss_curve(tsv) == ([0.0, 1.0], [2.5, 2.0])
    assert read_loss_curve(tmp_path / "missing.tsv") == ([], [])


def test_report_says_when_semantic_similarity_is_off():
    base, finetuned = eval_metrics(0.2, 50.0), eval_metrics(0.25, 21.0)
    base["semantic_model"] = finetuned["semantic_model"] = None
    comparison = {**COMPARE, "metrics": {"rougeL": COMPARE["metrics"]["rougeL"]}}
    text = render(base, finetuned, comparison, GALLERY, TRAIN, DATA)
    assert "semantic similarity off" in text and "`None`" not in text


def test_the_confidence_level_comes_from_compare_json(tmp_path, monkeypatch):
    assert confidence_percent(0.9) == "90%" and confidence_percent(0.975) == "97.5%"
    header = main_table(COMPARE["metrics"], 0.9).splitlines()[0]
    assert header == "| Metric | Base [90% CI] | Fine-tuned [90% CI] | Difference [90% CI] | p | Relative change |"
    assert "Difference [90% CI]" in matched_table(COMPARE["length"], 0.9)
    comparison = {**COMPARE, "bootstrap": {**COMPARE["bootstrap"], "confidence": 0.9}}
    text = render(eval_metrics(0.2, 50.0), eval_metrics(0.25, 21.0), comparison, GALLERY, TRAIN, DATA)
    assert "95%" not in text and "Intervals: 90%" in text
    labels = []

    def keep_label(fig, path):
        import matplotlib.pyplot as plt

        labels.append(fig.axes[0].get_ylabel())
        plt.close(fig)

    monkeypatch.setattr(plots, "_save", keep_label)
    plot_scores(COMPARE["metrics"], 0.9, tmp_path / "scores.png")
    assert labels == ["mean score (90% CI)"]


def test_the_data_section_shows_each_sources_rows_from_in_to_train():
    text = render(eval_metrics(0.2, 50.0), eval_metrics(0.25, 21.0), COMPARE, GALLERY, TRAIN, DATA)
    section = text.split("## Data", 1)[1].split("## Training", 1)[0]
    assert ("| Source | In | `min_answer_words` | Exact dups | Near dups | Leaked | Test | Validation | Not sampled | "
            "Train (repeats) | Answer words in / train (median) |") in section
    assert "| docs | 120 | 5 | 3 | 0 | 2 | 18 | 2 | 86 | 4 (0) | 11 / 13 |" in section
    assert "| math | 10 | 0 | 1 | 0 | 0 | 2 | 1 | 0 | 8 (2) | 30 / 31.5 |" in section
    assert "`min_answer_words` removed 5" in section
    assert "drawn to the proportions docs 0.4, math 0.6 (2 up-sampling repeats)" in section
    assert "curriculum order by length" in section and "![Data per source](plots/data.png)" in section


def test_the_data_plot_stacks_each_sources_rows(tmp_path, monkeypatch):
    bars = {}

    def keep_bars(fig, path):
        import matplotlib.pyplot as plt

        ax = fig.axes[0]
        bars["labels"] = [text.get_text() for text in ax.get_legend().get_texts()]
        bars["sources"] = [label.get_text() for label in ax.get_yticklabels()]
        bars["right"] = max(patch.get_x() + patch.get_width() for patch in ax.patches)
        plt.close(fig)

    monkeypatch.setattr(plots, "_save", keep_bars)
    plots.plot_data_flow(PER_SOURCE, tmp_path / "data.png")
    # A segment that is zero for every source (near duplicates, here) is left out.
    assert bars["labels"] == ["removed: min_answer_words", "removed: exact_duplicates", "removed: leaked", "test",
                              "validation", "not sampled", "train", "train repeats"]
    assert bars["sources"] == ["docs", "math"]
    # Shares of each source's rows in: 100% for docs (no repeats), (10 + 2 repeats) / 10 for math.
    assert bars["right"] == pytest.approx(120.0)

def format_test(base: float, finetuned: float, examples: int) -> dict:
    return {**paired_test(base, finetuned), "examples": examples}


def test_report_shows_the_format_metrics_with_their_counts_or_n_a_or_nothing():
    tuned = {**eval_metrics(0.25, 21.0), "answer_format": "steps"}
    base = {**eval_metrics(0.2, 50.0), "answer_format": "steps"}
    comparison = {**COMPARE, "format_metrics": {"format_valid": format_test(0.1, 0.9, 64),
                                                "math_exact_match": format_test(0.25, 0.5, 12)}}
    text = render(base, tuned, comparison, GALLERY, TRAIN, DATA)
    assert "Target format `steps` (data.answer_format)." in text
    assert ("| Format valid | 64 | 0.100 [0.050, 0.150] | 0.900 [0.850, 0.950] | +0.800 [+0.010, +0.090] "
            "| 0.020 |") in text
    assert "| Math exact match | 12 | 0.250 [0.200, 0.300] | 0.500 [0.450, 0.550] |" in text
    # No metric covers an example: one n/a line, no table of zeros.
    text = render(base, tuned, {**COMPARE, "format_metrics": {}}, GALLERY, TRAIN, DATA)
    assert "No format metric covers any eval example: n/a." in text and "| Format valid |" not in text
    # Metrics files from before the format metrics: no section at all.
    assert "Answer format" not in render(eval_metrics(0.2, 50.0), eval_metrics(0.25, 21.0), COMPARE, GALLERY, TRAIN,
                                         DATA)
