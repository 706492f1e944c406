"""Paths the pipeline declares, read from dvc.yaml for the scripts beside it (benchmarks, tools):
dvc.yaml names every path once, and nothing else retypes it; and those files as a commit holds them."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import yaml


def _stages(dvc_yaml: Path) -> dict:
    return yaml.safe_load(dvc_yaml.read_text())["stages"]


def stage_flag_path(stage: str, flag: str, dvc_yaml: Path = Path("dvc.yaml")) -> Path:
    """The path a stage's command passes with `flag` (e.g. the train stage's --metrics)."""
    words = shlex.split(_stages(dvc_yaml)[stage]["cmd"])
    if words.count(flag) != 1:
        raise ValueError(f"{dvc_yaml}: stage {stage!r} passes {flag} {words.count(flag)} times, expected once")
    return Path(words[words.index(flag) + 1])


def stage_params(stage: str, dvc_yaml: Path = Path("dvc.yaml")) -> list[str]:
    """The params.yaml keys a stage lists under `params:` (dotted, e.g. "model.chat_template"), in order."""
    keys = []
    for entry in _stages(dvc_yaml)[stage].get("params", []):
        # A bare key reads params.yaml; a one-key mapping {file: [keys]} reads another file's keys.
        if not isinstance(entry, str):
            raise ValueError(f"{dvc_yaml}: stage {stage!r} reads params from {entry}; only params.yaml keys are known")
        keys.append(entry)
    return keys


def param_value(params: dict[str, Any], key: str) -> Any:
    """The value of a dotted params key ("train.lora.r") in a params mapping."""
    value: Any = params
    for part in key.split("."):
        value = value[part]
    return value


def metrics_files(dvc_yaml: Path = Path("dvc.yaml")) -> list[Path]:
    """Every file the stages declare as DVC metrics, in stage order."""
    paths = []
    for stage in _stages(dvc_yaml).values():
        # An entry is a bare path or a one-key mapping {path: options}.
        paths += [Path(entry if isinstance(entry, str) else next(iter(entry))) for entry in stage.get("metrics", [])]
    return paths


def committed_text(rev: str, path: str) -> str | None:
    """The file `path` as commit `rev` holds it, or None when that commit has no such file."""
    result = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else None


def committed_rows(rev: str, path: str) -> list[dict[str, Any]] | None:
    """The JSON-lines file `path` as commit `rev` holds it, or None when that commit has no such file."""
    text = committed_text(rev, path)
    return None if text is None else [json.loads(line) for line in text.splitlines() if line.strip()]
