"""Where a result came from: the CPU's description, the git revision and the result header."""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from lab.core import provenance

CPUINFO = """processor\t: 0
model name\t: Example CPU @ 2.0GHz
flags\t\t: fpu sse2 avx2 amx_bf16 avx512f avx512bw

processor\t: 1
model name\t: Example CPU @ 2.0GHz
flags\t\t: fpu sse2 avx2 amx_bf16 avx512f avx512bw
"""


def test_cpu_description_reads_the_model_and_the_vector_extensions() -> None:
    described = provenance.cpu_description(CPUINFO)
    assert described == {"cpu": "Example CPU @ 2.0GHz", "vector_extensions": ["avx2", "avx512f", "amx_bf16"]}
    assert provenance.cpu_description("model name : Old CPU\nflags : sse2\n")["vector_extensions"] == []


def test_machine_info_describes_this_machine() -> None:
    info = provenance.machine_info()
    assert {"cpu", "vector_extensions", "cores", "memory_gib", "python", "platform", "torch"} <= set(info)
    assert info["cores"] >= 1 and info["memory_gib"] > 0
    assert info["torch_cpu_capability"] in {"DEFAULT", "NO AVX", "AVX2", "AVX512", "VSX", "Z VECTOR", "SVE256"}


def test_machine_info_records_a_capped_instruction_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in provenance.ISA_LIMIT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert "isa_limits" not in provenance.machine_info()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert provenance.machine_info()["isa_limits"] == {"ONEDNN_MAX_CPU_ISA": "AVX2"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_git_revision_names_the_commit_and_uncommitted_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(provenance.COMMIT_VARIABLE, raising=False)
    git(tmp_path, "init", "-q")
    (tmp_path / "tracked.txt").write_text("one\n")
    git(tmp_path, "add", "tracked.txt")
    git(tmp_path, "commit", "-q", "-m", "first")
    head = git(tmp_path, "rev-parse", "HEAD")
    assert provenance.git_revision(tmp_path) == {"commit": head, "uncommitted_changes": False}
    (tmp_path / "result.json").write_text("{}")  # untracked: a result being written
    assert provenance.git_revision(tmp_path)["uncommitted_changes"] is False
    (tmp_path / "tracked.txt").write_text("two\n")
    assert provenance.git_revision(tmp_path) == {"commit": head, "uncommitted_changes": True}
    monkeypatch.setenv(provenance.COMMIT_VARIABLE, "abc123")  # a copied tree beside a stale .git
    assert provenance.git_revision(tmp_path) == {"commit": "abc123", "uncommitted_changes": None,
                                                 "from": provenance.COMMIT_VARIABLE}


def test_outside_git_the_commit_comes_from_the_environment_or_nowhere(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(provenance.COMMIT_VARIABLE, raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # no repository above tmp_path
    assert provenance.git_revision(tmp_path) is None
    monkeypatch.setenv(provenance.COMMIT_VARIABLE, "abc123")
    assert provenance.git_revision(tmp_path) == {"commit": "abc123", "uncommitted_changes": None,
                                                 "from": provenance.COMMIT_VARIABLE}


def test_result_header_names_script_revision_machine_and_versions(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    git(tmp_path, "init", "-q")
    script = tmp_path / "benchmarks" / "bench.py"
    script.parent.mkdir()
    script.write_text("")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "first")
    monkeypatch.setattr("sys.argv", ["bench.py", "--out", "x.json"])
    header = provenance.result_header(str(script), "what it measures")
    assert list(header) == ["script", "arguments", "benchmark", "date", "git_revision", "machine", "versions"]
    assert header["script"] == "benchmarks/bench.py"  # relative to the script's repository
    assert header["arguments"] == ["--out", "x.json"] and header["benchmark"] == "what it measures"
    assert header["git_revision"] == {"commit": git(tmp_path, "rev-parse", "HEAD"), "uncommitted_changes": False}
    assert datetime.fromisoformat(header["date"]).utcoffset().total_seconds() == 0
    assert "torch" in header["versions"] and None not in header["versions"].values()
    assert set(header["versions"]) <= set(provenance.RESULT_PACKAGES)


def dvc_tree(root: Path) -> Path:
    """A repository as a `git archive` export or a copy of its tracked files leaves it: .dvc, no .git;
    returns its benchmark script."""
    (root / ".dvc").mkdir(parents=True)
    (root / ".dvc" / "config").write_text("")
    script = root / "benchmarks" / "bench.py"
    script.parent.mkdir()
    script.write_text("")
    return script


def test_without_git_the_script_is_relative_to_the_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = dvc_tree(tmp_path / "checkout")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # no repository git could find
    monkeypatch.setattr(provenance, "_git", lambda *_: None)  # nor any git at all, as on the GPU machine
    monkeypatch.chdir(tmp_path)  # run from elsewhere: the root comes from the script, not the cwd
    monkeypatch.setattr("sys.argv", [str(script), "--steps", "3"])
    assert provenance.repository_root(script) == tmp_path / "checkout"
    header = provenance.result_header(str(script), "what it measures")
    assert header["script"] == "benchmarks/bench.py"
    assert header["arguments"] == ["--steps", "3"]
    assert list(header) == ["script", "arguments", "benchmark", "date", "git_revision", "machine", "versions"]


def test_an_absolute_argument_inside_the_repository_becomes_relative(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "checkout"
    script = dvc_tree(root)
    monkeypatch.setattr("sys.argv", ["bench.py", "--out", str(root / "benchmarks" / "results" / "x.json"),
                                     f"--data={root / 'data' / 'rows.jsonl'}", "-S", f"model.base={root}",
                                     "--steps", "3", "results/y.json"])
    header = provenance.result_header(str(script), "what it measures")
    assert header["arguments"] == ["--out", "benchmarks/results/x.json", "--data=data/rows.jsonl", "-S",
                                   "model.base=.", "--steps", "3", "results/y.json"]  # relative ones as given
    # A symlink into the repository names the same file.
    (tmp_path / "link").symlink_to(root / "benchmarks", target_is_directory=True)
    assert provenance.portable_path(str(tmp_path / "link" / "bench.py"), root) == "benchmarks/bench.py"


def test_an_absolute_path_outside_the_repository_names_no_machine(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "checkout"
    script = dvc_tree(root)
    outside = tmp_path / "scratch" / "run-7" / "out.json"
    monkeypatch.setattr("sys.argv", ["bench.py", "--out", str(outside), f"data.source={outside.parent}"])
    header = provenance.result_header(str(script), "what it measures")
    assert header["arguments"] == ["--out", "<outside>/out.json", "data.source=<outside>/run-7"]
    assert str(tmp_path) not in str(header)
    # A copy of the script run from outside the repository is recorded the same way, as is the root.
    copy = tmp_path / "copy" / "bench.py"
    copy.parent.mkdir()
    copy.write_text("")
    assert provenance.portable_path(str(copy), root) == "<outside>/bench.py"
    assert provenance.portable_path("/", root) == provenance.OUTSIDE
    assert provenance.portable_path(str(root / ".." / "checkout-old" / "x.py"), root) == "<outside>/x.py"


def test_package_versions_has_one_home() -> None:
    root = Path(__file__).resolve().parents[1]
    definitions = [path for path in [*root.glob("lab/**/*.py"), *root.glob("benchmarks/*.py")]
                   if "def package_versions(" in path.read_text()]
    assert definitions == [root / "lab" / "core" / "provenance.py"]
