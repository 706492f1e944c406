"""The reference lab's configuration rehearsed through `dvc repro` on CPU: the tiny rehearsal base
(random weights, the real Llama 3.2 tokenizer and chat template) as model.base, FineTome-shaped data
as data.source, every size cut down to what 2 cores run in a minute or two."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from .conftest import REPO
from .pipeline_copy import dvc, make_lab_copy

ROWS = 40  # test_size 0.2: 8 test rows (2 eval), 32 training rows (2 validation)
TINY_SIZES = {
    "data": {"eval_examples": 2, "validation_examples": 2, "max_train_examples": 8, "test_size": 0.2},
    # Below the lengths' median (330 tokens): most rows are truncated, as the long tail is at 2048.
    "train": {"max_seq_length": 256, "eval_steps": 1},
    "evaluate": {"max_new_tokens": 8, "batch_size": 2, "max_input_tokens": 128},
}


@pytest.fixture(scope="module")
def rehearsal_copy(tmp_path_factory: pytest.TempPathFactory, rehearsal_base_dir: Path) -> Path:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from finetome_shaped import write_finetome_shaped

    data = tmp_path_factory.mktemp("data") / "finetome_shaped.jsonl"
    write_finetome_shaped(data, ROWS, seed=3407)
    overrides = {**TINY_SIZES, "model": {"base": str(rehearsal_base_dir)},
                 "data": {**TINY_SIZES["data"], "source": str(data)}}
    return make_lab_copy(tmp_path_factory.mktemp("rehearsal"), overrides)


def read(root: Path, name: str) -> dict:
    return json.loads((root / "metrics" / name).read_text())


def test_dvc_repro_runs_the_llama_3_rehearsal(rehearsal_copy: Path):
    dvc("repro", cwd=rehearsal_copy)
    for name in ("data.json", "train.json", "eval_base.json", "eval_finetuned.json", "compare.json", "summary.json",
                 "report.md"):
        assert (rehearsal_copy / "metrics" / name).is_file(), name
    # The base_model stage's copy still says it is random, and keeps the Llama 3 template and stops.
    base = rehearsal_copy / "models" / "base"
    assert json.loads((base / "config.json").read_text())["lab_rehearsal"]["random_weights"] is True
    assert json.loads((base / "generation_config.json").read_text())["eos_token_id"] == [128001, 128008, 128009]
    assert "Cutting Knowledge Date" in (base / "chat_template.jinja").read_text()

    data = read(rehearsal_copy, "data.json")
    assert data["rows"]["raw"] == ROWS and data["rows"]["train"] == 8 and data["rows"]["eval"] == 2
    train = read(rehearsal_copy, "train.json")
    assert train["ran"] == {**train["ran"], "backend": "hf", "device": "cpu", "quantization": "none"}
    assert train["steps"] == 1 and train["data"]["truncated"] > 0  # 8 examples / (batch 2 x grad-accum 4)
    assert train["data"]["tokens"] <= 8 * 256 and 0 < train["data"]["loss_tokens"] < train["data"]["tokens"]
    assert math.isfinite(train["train_loss"]) and math.isfinite(train["best_validation_loss"])
    # Random weights over 128,256 tokens: the loss starts near ln(128256) = 11.8.
    assert 9.0 < train["train_loss"] < 14.0
    for side in ("base", "finetuned"):
        evaluation = read(rehearsal_copy, f"eval_{side}.json")
        assert evaluation["examples"] == 2 and 0.0 <= evaluation["rougeL"] <= 1.0
        assert 0 < evaluation["generation"]["new_tokens"] <= 2 * 8
        rows = [json.loads(line) for line in
                (rehearsal_copy / "metrics" / "predictions" / f"{side}.jsonl").read_text().splitlines()]
        assert len(rows) == 2 and any(row["prompt_truncated"] for row in rows)  # left-truncated to 128 tokens
    assert read(rehearsal_copy, "summary.json")["validation_loss"] == train["best_validation_loss"]
