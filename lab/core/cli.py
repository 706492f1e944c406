"""The stages' entry-point wrapper: a known problem ends the stage with one clear line, and a stop
request (Ctrl-C, SIGTERM) unwinds like an exception, so that no temporary output is left behind."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from lab.core.errors import LabError
from lab.core.quiet import quiet_third_party_logs


class Terminated(BaseException):
    """SIGTERM as an exception. Not an Exception: no `except Exception` on the way swallows it, and
    every `finally` and lab.core.io's staged outputs clean up as they do on Ctrl-C (KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


def _raise_terminated(signum: int, _frame: FrameType | None) -> None:
    raise Terminated(signum)


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); expected errors exit non-zero with the message, not a traceback.

    SIGTERM (what `kill`, timeouts and schedulers send) is raised as Terminated, which Python's
    default handling would not do (the process would die with its temporary files in place). A
    stopped stage exits with the shell's code for the signal (130 Ctrl-C, 143 SIGTERM)."""
    name = Path(sys.argv[0]).stem
    quiet_third_party_logs()  # before main() imports bitsandbytes (lab/core/quiet.py)
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    # A process started in the background by a non-interactive shell inherits SIGINT ignored, and
    # Python then leaves it so: a stage is still stopped cleanly by Ctrl-C (what `dvc` forwards).
    previous_interrupt = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        main()
    except (LabError, FileNotFoundError) as error:
        sys.exit(f"{name}: error: {error}")
    except (KeyboardInterrupt, Terminated) as stop:
        signum = stop.signum if isinstance(stop, Terminated) else signal.SIGINT
        print(f"{name}: stopped by {signal.Signals(signum).name}, no partial output left", file=sys.stderr)
        sys.exit(128 + signum)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous_interrupt is None else previous_interrupt)
