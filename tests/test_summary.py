"""The headline that DVC lists as metrics, and the dvc.yaml paths the scripts beside the pipeline read."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.core.pipeline_files import metrics_files, stage_flag_path
from lab.core.summary import headline

from .conftest import REPO

TEST = {"base": 0.2, "base_ci_low": 0.15, "base_ci_high": 0.25, "finetuned": 0.3, "finetuned_ci_low": 0.25,
        "finetuned_ci_high": 0.35, "difference": 0.1, "ci_low": 0.05, "ci_high": 0.15, "p_value": 0.002,
        "p_value_at_floor": True}
TRAIN = {"best_validation_loss": 1.23, "best_step": 16, "tokens_per_s": 99.9, "runtime_s": 340.6, "steps": 24,
         "validation_losses": [{"step": 8, "loss": 1.5}], "ran": {"device": "cpu"}}


def test_the_summary_keeps_the_headline_and_drops_the_details():
    comparison = {"examples": 64, "bootstrap": {"resamples": 1000}, "per_source": {"docs": {}}, "length": {},
                  "metrics": {"rouge1": TEST, "rougeL": TEST},
                  "format_metrics": {"math_exact_match": {**TEST, "examples": 12}}}
    summary = headline(TRAIN, comparison)
    test = {key: TEST[key] for key in ("base", "finetuned", "difference", "ci_low", "ci_high", "p_value")}
    assert summary == {"validation_loss": 1.23, "best_step": 16, "train_tokens_per_s": 99.9, "train_seconds": 340.6,
                       "rouge1": test, "rougeL": test, "math_exact_match": {**test, "examples": 12}}


def test_the_pipeline_declares_one_metrics_file_and_the_stages_paths(tmp_path: Path):
    assert metrics_files(REPO / "dvc.yaml") == [Path("metrics/summary.json")]
    assert stage_flag_path("evaluate_finetuned", "--predictions", REPO / "dvc.yaml") == Path(
        "metrics/predictions/finetuned.jsonl")
    broken = tmp_path / "dvc.yaml"
    broken.write_text("stages:\n  s:\n    cmd: python s.py --out a --out b\n")
    with pytest.raises(ValueError, match="passes --out 2 times"):
        stage_flag_path("s", "--out", broken)
