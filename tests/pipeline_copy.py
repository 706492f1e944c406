"""A throwaway git + DVC copy of the lab's pipeline with params.yaml overridden: the machinery of
the tests that run the real pipeline through `dvc repro`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from .conftest import REPO


def run(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def dvc(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run([str(Path(sys.executable).with_name("dvc")), *args], cwd, check)


def deep_update(target: dict, update: dict) -> dict:
    for key, value in update.items():
        target[key] = deep_update(target.get(key, {}), value) if isinstance(value, dict) else value
    return target


def make_lab_copy(root: Path, overrides: dict[str, Any], extra: tuple[str, ...] = ()) -> Path:
    """A git + DVC repository in `root` holding the lab's code and params.yaml with `overrides`
    (nested like the file), committed as in a clone; `extra` names more files or folders to copy
    (e.g. "pipelines", the optional pipelines, without their lock files: the copy has run nothing)."""
    # .gitignore too: it keeps the stages' temporary outputs out of git (and dvclive from adding its
    # staged folder to an experiment's commit).
    for name in dict.fromkeys(("dvc.yaml", "pipelines", "stages", "lab", ".gitignore", *extra)):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__", "dvc.lock"))
        else:
            shutil.copy(source, root / name)
    params = deep_update(yaml.safe_load((REPO / "params.yaml").read_text()), overrides)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], root)
    dvc("init", "-q", cwd=root)
    dvc("config", "core.analytics", "false", cwd=root)
    # As in a clone: dvclive needs a commit to compare against.
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "lab"], root)
    return root
