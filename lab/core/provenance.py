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


# What a result records for an absolute path outside the repository, before the path's last name:
# the folders above it name the machine that ran (a home or scratch folder, a mount), not the lab.
OUTSIDE = "<outside>"
# What marks a repository's root: .dvc (tracked through .dvc/config, so a clone, a `git archive` export
# and a copy of the tracked files all keep it, .git or not), or .git (a folder, or a worktree's file).
ROOT_MARKERS = (".dvc", ".git")


def repository_root(script: Path | str | None = None) -> Path | None:
    """The root of the repository a result comes from, found without running git: the nearest folder
    above `script` that holds one of ROOT_MARKERS, else the one above this lab package (a checkout the
    lab is installed from in editable mode), else None (a wheel-installed lab running a script of no
    repository)."""
    starts = [Path(script).resolve().parent] if script is not None else []
    for start in [*starts, Path(__file__).resolve().parent]:
        for folder in (start, *start.parents):
            if any((folder / marker).exists() for marker in ROOT_MARKERS):
                return folder
    return None


def portable_path(value: str, root: Path | None) -> str:
    """`value` as a result records it: an absolute path inside `root` relative to it (`.` for the root
    itself, symlinks resolved where that makes it inside), an absolute path outside it (or with no
    root) as `<outside>/NAME`, NAME its last component, and anything else, relative paths included,
    unchanged."""
    if not os.path.isabs(value):
        return value
    path = Path(os.path.normpath(value))
    if root is not None:
        for candidate in (path, path.resolve()):
            if candidate.is_relative_to(root):
                return candidate.relative_to(root).as_posix()
    return f"{OUTSIDE}/{path.name}" if path.name else OUTSIDE


def portable_argument(argument: str, root: Path | None) -> str:
    """A command-line argument with its absolute path made portable (`portable_path`): the whole
    argument (`--out /x/y.json`'s second word), or the value of a KEY=VALUE (`--out=/x/y.json`,
    `-S model.base=/x/base`); any other argument unchanged."""
    if os.path.isabs(argument):
        return portable_path(argument, root)
    key, equals, value = argument.partition("=")
    if equals and os.path.isabs(value):
        return f"{key}={portable_path(value, root)}"
    return argument


def result_header(script: str, benchmark: str) -> dict[str, Any]:
    """What every benchmark result file starts with: the script and its arguments, what it measures,
    when, at which revision, on which machine and with which library versions.

    The script and its arguments name no folder of the machine that ran: the script is recorded
    relative to the repository root (`repository_root`: found from the script's own location, so the
    same with or without .git), and each absolute path among the arguments relative to that root when
    inside it, else as `<outside>/NAME` (`portable_path`). Relative arguments are kept as given (they
    are relative to the working directory, the repository root when run as the README says)."""
    path = Path(script).resolve()
    root = repository_root(path)
    installed = {name: version for name, version in package_versions(RESULT_PACKAGES).items() if version}
    return {
        "script": portable_path(str(path), root),
        "arguments": [portable_argument(argument, root) for argument in sys.argv[1:]],
        "benchmark": benchmark,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_revision": git_revision(path.parent),
        "machine": machine_info(),
        "versions": installed,
    }
