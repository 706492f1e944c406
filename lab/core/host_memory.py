"""The host allocator's policy for compute-heavy stages: keep freed memory for reuse.

glibc's malloc hands freed memory back to the kernel: a free block above its mmap threshold is
unmapped, and free memory at the heap's top beyond its trim threshold (twice the mmap threshold) is
trimmed. A training step on CPU allocates its activations (tens of MB each, hundreds in all) anew
every forward pass and frees them after the backward one, so the heap's top is trimmed and its pages
fault in again on the next pass; on a small virtual machine that costs the step real time
(benchmarks/cpu_allocator.py measures it). Never trimming keeps those pages mapped: the resident
memory stays at the peak, which the peak itself already needed. Nothing computed changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt(3) parameter numbers, from glibc's malloc.h.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
# glibc's ceiling for the mmap threshold, which its dynamic threshold climbs to anyway once blocks
# that large are freed. Fixing it there, rather than disabling mmap, keeps larger blocks unmapped on
# free: served from the heap, same-size blocks between longer-lived small ones are not always reused
# (each aligned request needs a little more than the last one left), and the heap would grow.
_MMAP_THRESHOLD = 32 * 2**20
# mallopt takes a C int: the largest trim threshold it can be given, 2 GiB of free heap top.
_NEVER_TRIM = 2**31 - 1


def keep_freed_memory() -> bool:
    """Have glibc never trim its heap (mmap threshold fixed at its 32 MiB ceiling). Returns whether
    it applied: False off Linux, or with a C library other than glibc."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # no glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # Setting either threshold turns off glibc's dynamic adjustment of both, so both are set.
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM))
