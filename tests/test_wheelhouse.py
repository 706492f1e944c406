"""The offline wheelhouse builder's pure parts: target tags, pip's messages, markers, slimming."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import wheelhouse as wh  # noqa: E402


def test_target_tags_run_from_the_hosts_glibc_down() -> None:
    args = wh.target_args("3.12", "x86_64", "2.35")
    platforms = [args[i + 1] for i, arg in enumerate(args) if arg == "--platform"]
    assert platforms[0] == "manylinux_2_35_x86_64" and "manylinux_2_17_x86_64" in platforms
    assert "manylinux_2_36_x86_64" not in platforms  # would not load on the host
    assert platforms[-1] == "any" and "manylinux2014_x86_64" in platforms
    assert args[:5] == ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp"]


def test_the_requirement_without_a_wheel_is_read_from_pips_message() -> None:
    assert wh.source_only_requirement("ERROR: No matching distribution found for rouge-score==0.1.2\n") == \
        "rouge-score==0.1.2"
    conflict = ("The conflict is caused by:\n    hydra-core 1.3.4 depends on antlr4-python3-runtime==4.9.*\n"
                "    hydra-core 1.1.2 depends on antlr4-python3-runtime==4.8\n\nAdditionally, some packages in "
                "these conflicts have no matching distributions available for your environment:\n"
                "    antlr4-python3-runtime\n")
    assert wh.source_only_requirement(conflict) == "antlr4-python3-runtime==4.9.*"
    assert wh.source_only_requirement("ERROR: something else\n") is None


def test_dependencies_the_target_python_needs_are_found() -> None:
    installs = [{"metadata": {"name": "torch", "version": "2.13.0", "requires_dist": [
        'setuptools; python_version >= "3.12"', "filelock", 'pywin32; sys_platform == "win32"',
        'optree>=0.13; extra == "optree"']}, "requested_extras": []},
        {"metadata": {"name": "filelock", "version": "3.0"}}]
    assert wh.unmet_for_target(installs, wh.marker_environment("3.12", "x86_64")) == ["setuptools"]
    assert wh.unmet_for_target(installs, wh.marker_environment("3.11", "x86_64")) == []
    installs[0]["requested_extras"] = ["optree"]
    assert wh.unmet_for_target(installs, wh.marker_environment("3.11", "x86_64")) == ["optree>=0.13"]


def test_skip_patterns_match_normalized_names() -> None:
    assert wh.skipped("nvidia_cublas", ["nvidia-*"]) and wh.skipped("Torch", ["torch"])
    assert not wh.skipped("torchao", ["torch"])


def test_slimmed_bitsandbytes_keeps_the_named_cuda_and_the_cpu_kernels(tmp_path: Path) -> None:
    names = ["bitsandbytes/__init__.py", "bitsandbytes/libbitsandbytes_cpu.so",
             "bitsandbytes/libbitsandbytes_cuda130.so", "bitsandbytes/libbitsandbytes_cuda126.so"]
    wheel = tmp_path / "src" / "bitsandbytes-0.50.2-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as out:
        for name in names:
            out.writestr(name, b"x")
        out.writestr("bitsandbytes-0.50.2.dist-info/RECORD", "\n".join(f"{n},sha256=x,1" for n in names) + "\n")
    (tmp_path / "out").mkdir()
    wh.copy_wheel(wheel, tmp_path / "out", wh.bitsandbytes_filter(["130"]))
    with zipfile.ZipFile(tmp_path / "out" / wheel.name) as slim:
        kept = slim.namelist()
        record = slim.read("bitsandbytes-0.50.2.dist-info/RECORD").decode()
    assert "bitsandbytes/libbitsandbytes_cuda126.so" not in kept and "cuda126" not in record
    assert {"bitsandbytes/libbitsandbytes_cpu.so", "bitsandbytes/libbitsandbytes_cuda130.so"} <= set(kept)
