"""The README's comparison command, as written there (section "Comparing runs"), after one experiment in a tiny
lab copy laid out like a fresh clone (the optional pipelines beside dvc.yaml, the domains pipeline's lock committed,
the export pipeline never run): it shows the experiment's columns, the param that changed and the headline metrics
of metrics/summary.json, and nothing else. `dvc exp show` also lists every stage's dependencies by path with their
hashes, and --only-changed keeps those an experiment changes (metrics/train.json, the predictions, ...) as well as
paths that dvc gives different hashes in different rows when two pipeline files list them, as the optional
pipelines and dvc.yaml do; the README's command has to leave them out."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from .conftest import REPO, TINY_LAB
from .pipeline_copy import dvc, make_lab_copy, run

# Another learning rate than params.yaml's: enough to move the validation loss of TINY_LAB's two steps.
OTHER_LR = "1e-3"


def readme_comparison_command() -> list[str]:
    """The `dvc exp show` line of the bash block under "## Comparing runs", without its trailing comment."""
    section = re.search(r"^## Comparing runs\n(.*?)(?=^## )", (REPO / "README.md").read_text(), re.M | re.S)
    assert section, "README.md has no section '## Comparing runs'"
    block = re.search(r"^```bash\n(.*?)^```", section.group(1), re.M | re.S)
    assert block, "no ```bash block under '## Comparing runs'"
    lines = [line for line in block.group(1).splitlines() if line.startswith("dvc exp show")]
    assert len(lines) == 1, lines
    return shlex.split(lines[0], comments=True)


def flat_keys(data: dict, prefix: str = "") -> set[str]:
    """Nested keys joined with dots, as dvc names metrics columns."""
    keys = set()
    for key, value in data.items():
        keys |= flat_keys(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}"}
    return keys


@pytest.fixture(scope="module")
def experiment_copy(tmp_path_factory: pytest.TempPathFactory, embedded_model_dir: Path) -> Path:
    """A tiny lab copy after `dvc repro`, committed as the baseline, and `dvc exp run -S lr=OTHER_LR`. Its model.base
    is the session's converted embedded model, which the base_model stage copies instead of converting it again."""
    overrides = {**TINY_LAB, "model": {"base": str(embedded_model_dir)}}
    root = make_lab_copy(tmp_path_factory.mktemp("exp-show-lab"), overrides, extra=("pipelines/domains/dvc.lock",))
    dvc("repro", cwd=root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "baseline"], root)
    dvc("exp", "run", "-S", f"lr={OTHER_LR}", cwd=root)
    return root


def test_the_readme_comparison_shows_the_changed_param_and_the_headline_metrics_only(experiment_copy: Path):
    command = readme_comparison_command()
    assert command[:3] == ["dvc", "exp", "show"] and "--only-changed" in command, command
    # What the command has to leave out: the experiment changed some of the stages' dependencies.
    rows = json.loads(dvc("exp", "show", "--json", cwd=experiment_copy).stdout)
    baseline = next(row for row in rows if row["rev"] != "workspace")
    experiment = baseline["experiments"][0]["revs"][0]
    changed_deps = {path for path, dep in experiment["data"]["deps"].items()
                    if dep != baseline["data"]["deps"].get(path)}
    assert changed_deps, "the experiment changed no dependency: this test no longer tests the command's filter"

    header = dvc(*command[1:], "--csv", "--no-pager", cwd=experiment_copy).stdout.splitlines()[0].split(",")
    summary = json.loads((experiment_copy / "metrics" / "summary.json").read_text())
    metrics = [name for name in header if name in flat_keys(summary)]
    assert header == ["Experiment", "rev", "typ", "Created", *metrics, "lr"], header
    # The headline an lr change must move; were it named "metrics/summary.json:validation_loss" (another metrics
    # file holding the same key), a filter on paths would have dropped it.
    assert "validation_loss" in metrics, header
