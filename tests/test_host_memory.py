"""The host allocator policy of the compute stages (lab/core/host_memory.py): freed memory stays mapped, so
a step's tensors allocated again after the last step's were freed cost few page faults; and both stages apply it."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# A step's worth of activations: eight 16 MiB tensors allocated, touched and freed together, three
# times; prints the page faults of the last time. "keep" applies the lab's policy; "returned" hands the
# freed memory back to the kernel after each step (malloc_trim), which glibc's default does whenever the
# freed blocks sit at the heap's top (whether they do depends on the process's layout, so the default
# itself is no reliable control).
_REALLOCATION = textwrap.dedent("""
    import ctypes, resource, sys, torch
    from lab.core.host_memory import keep_freed_memory
    applied = keep_freed_memory() if sys.argv[1] == "keep" else None
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(2):
        step = [torch.ones(4 * 2**20) for _ in range(8)]
        del step
        if sys.argv[1] == "returned":
            ctypes.CDLL("libc.so.6").malloc_trim(0)
    before = faults()
    step = [torch.ones(4 * 2**20) for _ in range(8)]
    print(applied, faults() - before)
""")


def _reallocation_faults(policy: str) -> tuple[str, int]:
    done = subprocess.run([sys.executable, "-c", _REALLOCATION, policy], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    applied, faults = done.stdout.split()
    return applied, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_a_step_s_freed_tensors_are_reused_with_few_page_faults():
    applied, kept_faults = _reallocation_faults("keep")
    _, returned_faults = _reallocation_faults("returned")
    assert applied == "True"
    pages = 8 * 16 * 2**20 // 4096
    assert returned_faults > pages // 2  # memory handed back: its pages fault in again
    assert kept_faults < pages // 4


@pytest.mark.parametrize("stage", ["train", "evaluate"])
def test_the_compute_stages_keep_freed_memory(stage):
    source = (ROOT / "stages" / f"{stage}.py").read_text()
    assert "keep_freed_memory()" in source.split("def main", 1)[1]
