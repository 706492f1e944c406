"""Where a result came from: package versions, the machine and the code revision."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Names the commit of the code that runs, where git cannot: outside a git checkout, or in a copy of a
# working tree beside a .git that is not its own. Set, it wins over what git says.
COMMIT_VARIABLE = "LAB_GIT_COMMIT"
# The libraries whose versions move a benchmark's figures; recorded where installed.
RESULT_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "bitsandbytes", "unsloth", "datasets",
                   "dvc")
# CPU vector extensions that decide which kernels torch runs on a CPU (bf16 ones above all).
VECTOR_EXTENSIONS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
# Variables that cap the instruction set torch's own kernels, oneDNN and MKL use below what the CPU
# has: set, they make a machine measure like an older one, so a result records them.
ISA_LIMIT_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    """The installed version of each name: its distribution's, `python-X.Y.Z` for a standard-library
    module (its docstrings change with Python), None where it is not installed."""
    versions: dict[str, str | None] = {}
    for name in names:
        if name in sys.stdlib_module_names:
            versions[name] = f"python-{platform.python_version()}"
            continue
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_description(cpuinfo: str) -> dict[str, Any]:
    """The CPU model and which of VECTOR_EXTENSIONS it has, from the text of /proc/cpuinfo."""
    model, flags = None, set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model is None:
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return {"cpu": model or platform.processor() or "unknown",
            "vector_extensions": [name for name in VECTOR_EXTENSIONS if name in flags]}


def _read_cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: the model comes from platform, extensions stay unknown
        return ""


def machine_info() -> dict[str, Any]:
    """The machine a figure was measured on: CPU, cores, memory, Python, torch and the vector
    kernels it chose (with any ISA_LIMIT_VARIABLES that capped them), GPU where CUDA is."""
    info: dict[str, Any] = {
        **cpu_description(_read_cpuinfo()),
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        import torch
    except ImportError:
        return info
    info |= {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
             "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}
    limits = {name: os.environ[name] for name in ISA_LIMIT_VARIABLES if name in os.environ}
    if limits:
        info["isa_limits"] = limits
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def _git(args: list[str], where: Path) -> str | None:
    """git's output, stripped; None where git or a repository is missing."""
    try:
        return subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def git_revision(where: Path | str = ".") -> dict[str, Any] | None:
    """The commit named by LAB_GIT_COMMIT where that is set (a tree exported with `git archive` has no
    .git; a copied tree may sit beside a stale one); else the commit checked out where `where` lies and
    whether tracked files differ from it; else None."""
    named = os.environ.get(COMMIT_VARIABLE)
    if named:
        return {"commit": named, "uncommitted_changes": None, "from": COMMIT_VARIABLE}
    commit = _git(["rev-parse", "HEAD"], Path(where))
    if commit is None:
        return None
    # Untracked files are left out: a result file being written is one of them.
    changes = _git(["status", "--porcelain", "--untracked-files=no"], Path(where))
    return {"commit": commit, "uncommitted_changes": bool(changes)}


def result_header(script: str, benchmark: str) -> dict[str, Any]:
    """What every benchmark result file starts with: the script (a path inside the repository is
    recorded relative to its root) and its arguments, what it measures, when, at which revision, on
    which machine and with which library versions."""
    path = Path(script).resolve()
    # The lab may be installed from a wheel: the repository is the script's, not this module's.
    root = _git(["rev-parse", "--show-toplevel"], path.parent)
    if root and path.is_relative_to(root):
        script = path.relative_to(root).as_posix()
    installed = {name: version for name, version in package_versions(RESULT_PACKAGES).items() if version}
    return {
        "script": script,
        "arguments": sys.argv[1:],
        "benchmark": benchmark,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_revision": git_revision(path.parent),
        "machine": machine_info(),
        "versions": installed,
    }
