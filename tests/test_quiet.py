"""lab.core.quiet: bitsandbytes' "Failed to load CPU gemm_4bit_forward from kernels-community" line, which
read as an error in every CPU run that was fine, is gone from a stage's output, and only that line."""

from __future__ import annotations

import logging
import subprocess
import sys

from lab.core.quiet import BITSANDBYTES_CPU_KERNEL_MESSAGE, BITSANDBYTES_CPU_LOGGER, quiet_third_party_logs

from .conftest import REPO

LINE = "Failed to load CPU gemm_4bit_forward from kernels-community"

# What a stage does on the CPU: run_stage(main), main() importing peft, which imports bitsandbytes. Then
# another warning of the same logger, which must still show.
STAGE = f"""
import logging, sys
from lab.core.cli import run_stage

def main():
    import peft  # noqa: F401
    import bitsandbytes
    assert "bitsandbytes.backends.cpu.ops" in sys.modules
    print("bitsandbytes", bitsandbytes.__version__)
    logging.getLogger({BITSANDBYTES_CPU_LOGGER!r}).warning("another bitsandbytes warning")

run_stage(main)
"""


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_a_stage_imports_bitsandbytes_without_the_kernels_line_and_other_warnings_still_show():
    result = python(STAGE)
    assert result.returncode == 0, result.stderr
    assert "bitsandbytes " in result.stdout
    assert LINE not in result.stderr
    assert "another bitsandbytes warning" in result.stderr


def test_without_the_filter_bitsandbytes_prints_the_line_here_or_never_tries():
    """The control: a plain import prints it where bitsandbytes tries the Hub kernel (a CPU with AVX-512
    BF16) and `kernels` is absent; elsewhere it never prints, filter or not."""
    result = python("import bitsandbytes, torch\n"
                    "from bitsandbytes.functional import has_avx512bf16\n"
                    "print(bool(has_avx512bf16()))")
    assert result.returncode == 0, result.stderr
    tries = result.stdout.strip().splitlines()[-1] == "True"
    assert (LINE in result.stderr) == (tries and python("import kernels").returncode != 0)


def test_the_filter_drops_that_message_only():
    logger = logging.getLogger(BITSANDBYTES_CPU_LOGGER)
    quiet_third_party_logs()
    installed = list(logger.filters)
    quiet_third_party_logs()
    assert logger.filters == installed  # installed once

    def record(msg: str, *args: object) -> logging.LogRecord:
        return logger.makeRecord(logger.name, logging.WARNING, "ops.py", 252, msg, args, None)

    kernel_failed = BITSANDBYTES_CPU_KERNEL_MESSAGE + ": %s. Please make sure you already `pip install kernels`"
    assert not logger.filter(record(kernel_failed, ModuleNotFoundError("No module named 'kernels'")))
    assert logger.filter(record("Failed to load the CPU-only bitsandbytes library"))
    assert logger.filter(record("another warning: %s", LINE))  # the template decides, not the arguments
    other = logging.getLogger("bitsandbytes.cextension")
    assert other.filter(other.makeRecord(other.name, logging.WARNING, "x.py", 1, kernel_failed, ("x",), None))
