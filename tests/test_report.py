"""The report renders the metrics' own numbers."""

import importlib.util

from .conftest import REPO


def load_report_stage():
    spec = importlib.util.spec_from_file_location("report_stage", REPO / "stages" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def eval_metrics(rouge_l: float, words: float) -> dict:
    return {
        "device": "cpu", "examples": 2, "rouge1": 0.3, "rouge2": 0.1, "rougeL": rouge_l,
        "precision": {"rouge1": 0.3, "rouge2": 0.1, "rougeL": 0.2}, "recall": {"rouge1": 0.4, "rouge2": 0.2,
                                                                             "rougeL": 0.3},
        "words": {"prediction": {"mean": words, "median": words}, "reference": {"mean": 20.0, "median": 19.0}},
        "hit_max_new_tokens_share": 0.5, "generation": {"max_new_tokens": 96},
    }


TRAIN = {"ran": {"backend": "hf", "device": "cpu", "dtype": "float32", "quantization": "none",
                 "optimizer": "adamw_8bit", "lora": {"r": 16, "alpha": 16, "target_modules": ["q_proj"]}},
         "data": {"examples": 8, "loss_tokens": 100}, "steps": 1, "tokens_seen": 900, "runtime_s": 3.0,
         "tokens_per_s": 300.0, "peak_memory_gib": 1.5, "loss_first_quarter": 2.0,
         "loss_last_quarter": 1.5, "train_loss": 1.7}
DATA = {"source": "builtin", "rows": {"train": 8, "train_available": 80, "eval": 2, "test": 15}}


def test_report_tables_show_the_metrics_numbers():
    text = load_report_stage().render(eval_metrics(0.2, 50.0), eval_metrics(0.25, 21.0), TRAIN, DATA)
    assert "| ROUGE-L F1 | 0.2000 | 0.2500 | +0.0500 | +25.0% |" in text
    assert "| Base model | 50.0 | 50.0 |" in text and "| Fine-tuned model | 21.0 | 21.0 |" in text
    assert "| Reference | 20.0 | 19.0 |" in text
    assert "backend `hf` on `cpu`" in text and "300 tokens/s" in text


def test_loss_curve_is_read_from_dvclive_tsv(tmp_path):
    tsv = tmp_path / "loss.tsv"
    tsv.write_text("step\tloss\n0\t2.5\n1\t2.0\n")
    assert load_report_stage().read_loss_curve(tsv) == ([0.0, 1.0], [2.5, 2.0])
    assert load_report_stage().read_loss_curve(tmp_path / "missing.tsv") == ([], [])
