"""The stages' entry-point wrapper: a known problem ends the stage with one clear line."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from lab.config import ConfigError
from lab.data import DataError
from lab.modeling import RuntimeConfigError

EXPECTED_ERRORS = (ConfigError, DataError, RuntimeConfigError, FileNotFoundError)


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); expected errors exit non-zero with the message, not a traceback."""
    name = Path(sys.argv[0]).stem
    try:
        main()
    except EXPECTED_ERRORS as error:
        sys.exit(f"{name}: error: {error}")
