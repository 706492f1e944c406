"""Reading params.yaml: one call, one validated, typed LabConfig (lab.core.config holds the types,
lab.core.schema builds them from the raw mapping, lab.core.checks rejects impossible values)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lab.core.checks import validate
from lab.core.config import LabConfig
from lab.core.errors import ConfigError
from lab.core.schema import build, merge

PARAMS_FILE = Path("params.yaml")


def load_config(path: Path | str = PARAMS_FILE, overrides: dict[str, Any] | None = None) -> LabConfig:
    """Read params.yaml once into a validated, typed LabConfig; `overrides` (nested like the file)
    replace some of its values, as `dvc exp run -S` would."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found (run from the repository root)")
    with path.open() as handle:
        raw = yaml.safe_load(handle) or {}
    return validate(build(LabConfig, merge(raw, overrides or {}), ""))
