"""Every stage killed as a process (SIGINT, SIGTERM, SIGKILL) mid-work and mid-commit: each output is
left as it was before the run or absent, never a mix of two runs; a stopped stage leaves no temporary
file, a SIGKILLed one leaves some that the next run sweeps; and that rerun writes what an
uninterrupted run wrote (tests/conftest.py's tiny_lab), the trained adapter byte for byte."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lab.core.io import PARTIAL_SUFFIX

from .conftest import run_stage_process, stage_argv, stage_env, stage_outputs

# The stage's own script under two patches (the product code carries no test hook): the process sends
# itself `signal` right after the N-th output file is complete ("output:N", before the commit) or
# right after the N-th rename of the commit ("commit:N": with K outputs already there, renames 1..K
# set the old ones aside and the next ones rename the new ones in).
KILL_SCRIPT = """
import contextlib, json, os, runpy, signal, sys
import lab.core.io

argv, point, signame = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
kind, _, count = point.partition(":")
calls = []

def reached():
    calls.append(True)
    if len(calls) == int(count):
        os.kill(os.getpid(), getattr(signal, signame))

if kind == "output":
    real_open = lab.core.io.atomic_open

    @contextlib.contextmanager
    def atomic_open(*args, **kwargs):
        with real_open(*args, **kwargs) as handle:
            yield handle
        reached()

    lab.core.io.atomic_open = atomic_open
else:
    real_commit, real_replace = lab.core.io._commit, os.replace

    def replace(source, target):
        real_replace(source, target)
        reached()

    def commit(targets, staged):
        os.replace = replace
        try:
            real_commit(targets, staged)
        finally:
            os.replace = real_replace

    lab.core.io._commit = commit
sys.argv = argv
runpy.run_path(argv[0], run_name="__main__")
"""
# Figures that time the run, not its result (and the token budget that auto reads from the free memory).
VOLATILE = {"seconds", "tokens_per_s", "runtime_s", "runtime", "samples_per_second", "steps_per_second",
            "peak_memory_gib", "resumed_from_step", "micro_batches"}
OLD = "from an earlier run\n"


def _stable(value: object) -> object:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def snapshot(path: Path) -> object:
    """An output's content without its timings: None if absent, "old" if the earlier run's, else
    {relative path: bytes, or parsed JSON without the volatile figures}."""
    if not path.exists():
        return None
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    if [p.read_text(errors="replace") for p in files] == [OLD]:
        return "old"
    content = {}
    for file in files:
        if file.stem in VOLATILE:
            continue
        key = file.relative_to(path).as_posix() if path.is_dir() else file.name
        content[key] = _stable(json.loads(file.read_text())) if file.suffix == ".json" else file.read_bytes()
    return content


def outputs_of(stage: str, root: Path) -> dict[str, object]:
    return {name: snapshot(root / name) for name in stage_outputs(stage)}


def partials(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob(f"*{PARTIAL_SUFFIX}"))


@pytest.fixture
def old_lab(tiny_lab: Path, tmp_path: Path) -> Callable[[str], Path]:
    """A copy of the tiny lab whose outputs of `stage` are an earlier run's (one file each, so that
    a mix would show)."""

    def make(stage: str) -> Path:
        root = tmp_path / "lab"
        shutil.copytree(tiny_lab, root, symlinks=True)
        for name in stage_outputs(stage):
            path = root / name
            if path.is_dir():
                shutil.rmtree(path)
                path.mkdir()
                (path / "old.txt").write_text(OLD)
            else:
                path.write_text(OLD)
        return root

    return make


def assert_no_mix(stage: str, root: Path, reference: dict[str, object]) -> None:
    """Each output the earlier run's or absent, or each output this run's or absent."""
    now = outputs_of(stage, root)
    old_or_absent = all(value in ("old", None) for value in now.values())
    new_or_absent = all(value is None or value == reference[name] for name, value in now.items())
    assert old_or_absent or new_or_absent, {name: str(value)[:80] for name, value in now.items()}


def kill(stage: str, root: Path, point: str, signame: str) -> None:
    result = run_stage_process(stage, root, script=KILL_SCRIPT, script_args=(point, signame))
    expected = -signal.SIGKILL if signame == "SIGKILL" else 128 + getattr(signal, signame)
    assert result.returncode == expected, result.stderr[-3000:]


def rerun(stage: str, root: Path) -> None:
    result = run_stage_process(stage, root)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize(("stage", "stop", "commit_kill"), [
    # A stop mid-work (after the N-th output file is written), then a SIGKILL mid-commit (set aside / rename in).
    ("prepare", ("output:2", "SIGINT"), "commit:2"),
    ("evaluate_finetuned", ("output:1", "SIGTERM"), "commit:3"),
    ("compare", ("output:1", "SIGTERM"), "commit:4"),
    ("report", ("output:3", "SIGINT"), "commit:1"),
])
def test_a_killed_stage_leaves_old_or_no_outputs_and_its_rerun_matches_an_uninterrupted_run(
        tiny_lab: Path, old_lab: Callable[[str], Path], stage: str, stop: tuple[str, str], commit_kill: str):
    root = old_lab(stage)
    reference = outputs_of(stage, tiny_lab)
    # Stopped mid-work (Ctrl-C or SIGTERM): the outputs untouched, no temporary file.
    kill(stage, root, *stop)
    assert set(outputs_of(stage, root).values()) == {"old"} and partials(root) == []
    # SIGKILLed mid-commit: no cleanup ran, so temporary files remain, but no mix of two runs.
    kill(stage, root, commit_kill, "SIGKILL")
    assert partials(root)
    assert_no_mix(stage, root, reference)
    # The rerun sweeps them and writes what the uninterrupted run wrote.
    rerun(stage, root)
    assert partials(root) == [] and outputs_of(stage, root) == reference


def test_a_sigterm_during_the_commit_lets_it_finish(tiny_lab: Path, old_lab: Callable[[str], Path]):
    root = old_lab("compare")
    kill("compare", root, "commit:2", "SIGTERM")
    assert outputs_of("compare", root) == outputs_of("compare", tiny_lab) and partials(root) == []


def test_a_training_killed_from_outside_leaves_old_or_no_outputs_and_its_rerun_gives_the_same_adapter(
        tiny_lab: Path, old_lab: Callable[[str], Path]):
    """SIGTERM from another process once training is under way (its loss curves being written), then a
    SIGKILL mid-commit: the outputs stay old or go; the rerun's outputs are the uninterrupted run's,
    the adapter byte for byte."""
    root = old_lab("train")
    reference = outputs_of("train", tiny_lab)
    process = subprocess.Popen([sys.executable, *stage_argv("train")], cwd=root, env=stage_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list(root.glob(f".dvclive.*{PARTIAL_SUFFIX}")) and process.poll() is None:
        assert time.monotonic() < deadline, "training never started"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "train: stopped by SIGTERM, no partial output left" in stderr
    assert set(outputs_of("train", root).values()) == {"old"} and partials(root) == []
    kill("train", root, "commit:2", "SIGKILL")  # the old adapter and curves set aside, the metrics still old
    assert_no_mix("train", root, reference)
    assert partials(root)
    rerun("train", root)
    assert partials(root) == [] and outputs_of("train", root) == reference
