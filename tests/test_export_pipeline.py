"""The export pipeline through DVC in a tiny lab copy: `dvc repro pipelines/export/dvc.yaml` runs the stages
the export needs (base_model, prepare, train) and then the export, reading the root's params.yaml; and what
DVC caches (the data splits, the base model, the adapter and the export) survives a remote round trip:
`dvc push`, the cache and the workspace's copies deleted, `dvc pull`, byte for byte."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from lab.export.merged import file_sha256

from .conftest import TINY_LAB
from .pipeline_copy import dvc, make_lab_copy

EXPORT_PIPELINE = "pipelines/export/dvc.yaml"
UP_TO_DATE = "Data and pipelines are up to date."


@pytest.fixture(scope="module")
def exported_copy(tmp_path_factory: pytest.TempPathFactory, embedded_model_dir: Path) -> tuple[Path, str]:
    """A lab copy on the tiny config after `dvc repro` of the export pipeline, and what DVC printed. Its
    model.base is the session's converted embedded model, a local model directory: the base_model stage
    copies it instead of de-quantizing the GGUF file again."""
    overrides = {**TINY_LAB, "model": {"base": str(embedded_model_dir)}}
    root = make_lab_copy(tmp_path_factory.mktemp("export-lab"), overrides)
    return root, dvc("repro", EXPORT_PIPELINE, cwd=root).stdout


def cached_outputs(root: Path) -> list[str]:
    """The outputs DVC caches (every out without `cache: false`) of the stages that ran (those in a lock file)."""
    paths = []
    for dvc_yaml in (root / "dvc.yaml", root / EXPORT_PIPELINE):
        lock = dvc_yaml.with_name("dvc.lock")
        ran = yaml.safe_load(lock.read_text())["stages"] if lock.is_file() else {}
        for name, stage in yaml.safe_load(dvc_yaml.read_text())["stages"].items():
            entries = [(out, {}) if isinstance(out, str) else next(iter(out.items())) for out in stage.get("outs", [])]
            paths += [path for path, options in entries if name in ran and (options or {}).get("cache", True)]
    return paths


def digest(path: Path) -> dict[str, str]:
    """sha256 of a file, or of every file under a folder, by path relative to it."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(file.relative_to(path)): hashlib.sha256(file.read_bytes()).hexdigest() for file in files}


def test_repro_of_the_export_pipeline_runs_what_the_export_needs_then_the_export(exported_copy):
    root, stdout = exported_copy
    for stage in ("base_model", "prepare", "train", f"{EXPORT_PIPELINE}:export"):
        assert f"Running stage '{stage}'" in stdout, stdout
    assert "Running stage 'evaluate_base'" not in stdout  # nothing the export does not need
    # params: resolved against the root's params.yaml (the stage's wdir), not one beside the pipeline file.
    lock = yaml.safe_load((root / EXPORT_PIPELINE).with_name("dvc.lock").read_text())["stages"]["export"]
    assert lock["params"]["params.yaml"]["export"] == {"dtype": "bf16", "gguf": None}
    export = root / "models" / "export"
    record = json.loads((export / "lab_export.json").read_text())
    weights = "adapter_model.safetensors"
    assert record["adapter"]["sha256"][weights] == file_sha256(root / "models" / "adapter" / weights)
    assert json.loads((export / "config.json").read_text())["dtype"] == "bfloat16"
    assert (export / "model.safetensors").is_file() and (export / "chat_template.jinja").is_file()
    assert dvc("status", "--with-deps", EXPORT_PIPELINE, cwd=root).stdout.strip() == UP_TO_DATE
    # A change of export.dtype in params.yaml makes the export stale, and nothing upstream.
    params = (root / "params.yaml").read_text()
    (root / "params.yaml").write_text(params.replace("dtype: bf16", "dtype: fp16"))
    stale = dvc("status", "--with-deps", EXPORT_PIPELINE, cwd=root).stdout
    (root / "params.yaml").write_text(params)
    assert f"{EXPORT_PIPELINE}:export:" in stale and "modified:           export" in stale, stale
    assert "train:" not in stale, stale


def test_push_then_pull_into_an_empty_cache_restores_every_cached_output(exported_copy, tmp_path: Path):
    root, _ = exported_copy
    outputs = cached_outputs(root)
    assert sorted(outputs) == ["data/eval.jsonl", "data/test.jsonl", "data/train.jsonl", "data/validation.jsonl",
                               "models/adapter", "models/base", "models/export"]
    before = {path: digest(root / path) for path in outputs}
    dvc("remote", "add", "-d", "storage", str(tmp_path / "remote"), cwd=root)
    dvc("push", cwd=root)
    shutil.rmtree(root / ".dvc" / "cache")
    for path in outputs:
        target = root / path
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    missing = dvc("status", "--with-deps", EXPORT_PIPELINE, cwd=root).stdout
    assert all(f"not in cache:       {path}" in missing for path in outputs), missing
    # The export and what it depends on (the copy also holds the domains pipeline's lock, whose outputs
    # this copy never produced, so a bare `dvc pull` would report those missing).
    dvc("pull", "--with-deps", EXPORT_PIPELINE, cwd=root)
    assert dvc("status", "--with-deps", EXPORT_PIPELINE, cwd=root).stdout.strip() == UP_TO_DATE
    assert "Cache and remote 'storage' are in sync." in dvc("status", "--cloud", cwd=root).stdout
    assert {path: digest(root / path) for path in outputs} == before
