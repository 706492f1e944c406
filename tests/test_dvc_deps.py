"""dvc.yaml (and each optional pipeline's pipelines/<name>/dvc.yaml) lists, for every stage, each lab/ module its
script imports, directly or not, so an edit always reruns what it changes (and `dvc exp run` never reuses a result
of stale code)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from .conftest import REPO
from .helpers import lab_module_files


def pipeline_stages() -> dict[str, dict]:
    """Every stage of the root dvc.yaml and of the optional pipelines, keyed "file:stage"; a foreach stage by
    its `do` template (its script and deps are the same for every item)."""
    stages = {}
    for path in [REPO / "dvc.yaml", *sorted((REPO / "pipelines").glob("*/dvc.yaml"))]:
        for name, stage in yaml.safe_load(path.read_text())["stages"].items():
            if path.parent != REPO:
                assert stage.get("wdir", stage.get("do", {}).get("wdir")) == "../..", \
                    f"{path}: stage {name!r} must run at the repository root"
            stages[f"{path.relative_to(REPO)}:{name}"] = stage.get("do", stage)
    return stages


STAGES = pipeline_stages()


def lab_imports(path: Path) -> set[str]:
    """Repository-relative paths of the lab/ modules that `path` imports anywhere in its code (the package
    __init__ files hold a docstring only: tests/test_layers.py)."""
    return {name for name in lab_module_files(path, REPO) if not name.endswith("__init__.py")}


def transitive_lab_imports(script: str) -> set[str]:
    seen: set[str] = set()
    pending = [script]
    while pending:
        for module in lab_imports(REPO / pending.pop()) - seen:
            seen.add(module)
            pending.append(module)
    return seen


def stage_script(stage: dict) -> str:
    words = stage["cmd"].split()
    return words[words.index("python") + 1]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_each_stage_depends_on_its_script_and_every_lab_module_it_imports(name: str):
    stage = STAGES[name]
    script = stage_script(stage)
    deps = set(stage.get("deps", []))
    assert script in deps
    missing = sorted(transitive_lab_imports(script) - deps)
    assert not missing, f"dvc.yaml stage {name!r} misses deps {missing}"
    # And no stale entry: every listed lab/ module is really imported.
    unused = sorted(d for d in deps if d.startswith("lab/") and d not in transitive_lab_imports(script))
    assert not unused, f"dvc.yaml stage {name!r} lists lab modules it never imports: {unused}"


def test_prepare_depends_on_no_evaluation_or_training_code():
    """An edit to the ROUGE code (or any evaluation or training module) must not rerun prepare and all after it."""
    for stage in ("dvc.yaml:prepare", "pipelines/domains/dvc.yaml:domains_prepare"):
        later = sorted(d for d in STAGES[stage]["deps"] if d.startswith(("lab/eval/", "lab/train/", "lab/report/")))
        assert not later, f"{stage} depends on {later}"


def test_the_import_walk_sees_imports_inside_functions():
    assert "lab/data/builtin/docstrings.py" in transitive_lab_imports("stages/prepare.py")
    assert "lab/core/errors.py" in transitive_lab_imports("stages/prepare.py")


def test_the_optional_pipelines_are_covered():
    assert "pipelines/domains/dvc.yaml:domains_train" in STAGES and "dvc.yaml:train" in STAGES
