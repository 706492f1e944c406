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
