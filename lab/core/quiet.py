"""Third-party log lines that read as a failure in a run that is fine, silenced one by one, each by its
logger and its exact message: everything else those libraries log still shows.

bitsandbytes (0.50), imported on a CPU with AVX-512 BF16, tries to fetch a faster CPU kernel for 4-bit
matrix products from the Hugging Face Hub through the optional `kernels` package, and without it logs
(a `logging` warning of bitsandbytes.backends.cpu.ops, which Python prints to stderr when no logging is
configured) "Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'.
Please make sure you already `pip install kernels` ...". peft imports bitsandbytes wherever it is
installed, so every CPU run printed it. The lab never runs a 4-bit model on the CPU (4-bit and 8-bit
bases need CUDA: lab.model.runtime), so bitsandbytes falls back to its own kernel for nothing.

The filter sits on that logger, so it must be installed before bitsandbytes is first imported (it logs at
import): lab.core.cli.run_stage installs it before a stage's main(), and the stages import torch, peft
and bitsandbytes inside their functions.
"""

from __future__ import annotations

import logging

# bitsandbytes/backends/cpu/ops.py: logger.warning("Failed to load CPU gemm_4bit_forward from
# kernels-community: %s. Please make sure ...", exc) when `kernels` (or its Hub download) fails.
BITSANDBYTES_CPU_LOGGER = "bitsandbytes.backends.cpu.ops"
BITSANDBYTES_CPU_KERNEL_MESSAGE = "Failed to load CPU gemm_4bit_forward from kernels-community"


class _DropMessage(logging.Filter):
    """Drops the records whose message template (before %-formatting) starts with `prefix`."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(self.prefix))


def quiet_third_party_logs() -> None:
    """Install the filters; once is enough, again does nothing. Before bitsandbytes' first import."""
    logger = logging.getLogger(BITSANDBYTES_CPU_LOGGER)  # created now, bitsandbytes gets this one
    if not any(isinstance(f, _DropMessage) and f.prefix == BITSANDBYTES_CPU_KERNEL_MESSAGE for f in logger.filters):
        logger.addFilter(_DropMessage(BITSANDBYTES_CPU_KERNEL_MESSAGE))
