"""The stages' entry-point wrapper: a known problem ends the stage with one clear line."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from lab.errors import LabError


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); expected errors exit non-zero with the message, not a traceback."""
    name = Path(sys.argv[0]).stem
    try:
        main()
    except (LabError, FileNotFoundError) as error:
        sys.exit(f"{name}: error: {error}")
