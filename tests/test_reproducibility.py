"""Bit-identical reruns on CPU: the train stage run again, in another process with other string hashing,
writes the same adapter byte for byte, and the evaluation of it the same predictions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

from lab.core.reproducibility import save_adapter

from .conftest import TINY_LAB_HASH_SEED, run_stage_process


def test_save_adapter_writes_peft_sets_sorted(tmp_path: Path):
    """peft keeps target_modules as a set and wrote it in the process's set order."""
    from peft import LoraConfig

    config = LoraConfig(target_modules=["v_proj", "q_proj", "up_proj", "k_proj"])
    assert isinstance(config.target_modules, set)
    model = SimpleNamespace(peft_config={"default": config}, save_pretrained=config.save_pretrained)
    save_adapter(model, SimpleNamespace(save_pretrained=lambda directory: None), tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["target_modules"] == ["k_proj", "q_proj", "up_proj", "v_proj"]


def test_training_twice_gives_the_same_adapter_bytes_and_predictions(tiny_lab: Path, tmp_path: Path):
    root = tmp_path / "lab"
    shutil.copytree(tiny_lab, root, symlinks=True)
    shutil.rmtree(root / "models" / "adapter")
    other_hashing = {"PYTHONHASHSEED": str(TINY_LAB_HASH_SEED + 1)}  # another set order than the first run's
    for stage in ("train", "evaluate_finetuned"):
        result = run_stage_process(stage, root, env=other_hashing)
        assert result.returncode == 0, result.stderr[-3000:]
    adapter, first_adapter = root / "models" / "adapter", tiny_lab / "models" / "adapter"
    names = sorted(p.name for p in first_adapter.iterdir())
    assert "adapter_model.safetensors" in names and sorted(p.name for p in adapter.iterdir()) == names
    assert [n for n in names if (adapter / n).read_bytes() != (first_adapter / n).read_bytes()] == []
    train, first_train = (json.loads((r / "metrics" / "train.json").read_text()) for r in (root, tiny_lab))
    assert train["ran"]["cpu_threads"] >= 1
    for key in ("train_loss", "validation_losses", "best_step", "ran"):
        assert train[key] == first_train[key], key
    predictions = (root / "metrics" / "predictions" / "finetuned.jsonl").read_text()
    assert predictions == (tiny_lab / "metrics" / "predictions" / "finetuned.jsonl").read_text()
