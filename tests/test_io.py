"""lab.core.io's staged outputs and lab.core.cli's stop handling: outputs are committed together or not at all,
a stop request never lands inside the commit, what a killed writer left is swept at the next start, and outputs
get the modes of a plain write."""

from __future__ import annotations

import os
import signal
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import lab.core.io
from lab.core.cli import Terminated, run_stage
from lab.core.io import (
    PARTIAL_SUFFIX,
    atomic_dir,
    atomic_open,
    current_umask,
    read_json,
    staged_outputs,
    sweep_partials,
    write_json,
)


def partials(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob(f"*{PARTIAL_SUFFIX}"))


def old_outputs(root: Path) -> tuple[Path, Path]:
    """A file and a folder output, both from an earlier run."""
    file, folder = root / "metrics" / "train.json", root / "models" / "adapter"
    file.parent.mkdir(parents=True)
    file.write_text("old")
    folder.mkdir(parents=True)
    (folder / "weights").write_text("old")
    return file, folder


def write_new(staged_file: Path, staged_folder: Path) -> None:
    staged_folder.mkdir()
    (staged_folder / "weights").write_text("new")
    write_json(staged_file, {"run": "new"})


def test_staged_outputs_are_renamed_into_place_together_at_the_end(tmp_path: Path):
    file, folder = old_outputs(tmp_path)
    with staged_outputs(file, folder) as (staged_file, staged_folder):
        assert staged_file.parent == file.parent and staged_folder.parent == folder.parent  # same file system
        write_new(staged_file, staged_folder)
        assert file.read_text() == "old" and (folder / "weights").read_text() == "old"  # nothing moved yet
    assert read_json(file) == {"run": "new"} and [p.name for p in folder.iterdir()] == ["weights"]
    assert (folder / "weights").read_text() == "new"
    assert partials(tmp_path) == []


@pytest.mark.parametrize("stop", [ValueError("bad row"), KeyboardInterrupt(), Terminated(signal.SIGTERM)])
def test_a_failed_or_stopped_run_leaves_the_old_outputs_and_no_temporary_file(tmp_path: Path, stop: BaseException):
    file, folder = old_outputs(tmp_path)
    with pytest.raises(type(stop)), staged_outputs(file, folder) as (staged_file, staged_folder):
        write_new(staged_file, staged_folder)
        raise stop
    assert file.read_text() == "old" and (folder / "weights").read_text() == "old"
    assert partials(tmp_path) == []


def test_an_output_the_run_did_not_write_is_removed_so_none_is_left_from_an_earlier_run(tmp_path: Path):
    file, folder = old_outputs(tmp_path)
    with staged_outputs(file, folder) as (staged_file, _):
        write_json(staged_file, {"run": "new"})
    assert read_json(file) == {"run": "new"} and not folder.exists()


def test_what_a_killed_writer_left_is_swept_at_the_next_start_and_nothing_else(tmp_path: Path):
    file = tmp_path / "metrics.json"
    leftover_file = tmp_path / f".metrics.json.4242.0a1b2c3d{PARTIAL_SUFFIX}"
    leftover_folder = tmp_path / f".metrics.json.4243.deadbeef{PARTIAL_SUFFIX}"
    leftover_file.write_text("half")
    leftover_folder.mkdir()
    (leftover_folder / "part").write_text("half")
    others = [tmp_path / ".metrics.json.notes", tmp_path / f".metrics.jsonl.4242.0a1b2c3d{PARTIAL_SUFFIX}",
              tmp_path / f".metrics.json.notes{PARTIAL_SUFFIX}"]  # another output's, or not a pid: not ours
    for other in others:
        other.write_text("keep")
    with atomic_open(file) as handle:  # a single-file writer sweeps too
        handle.write("{}")
    assert not leftover_file.exists() and not leftover_folder.exists()
    assert all(other.exists() for other in others)
    leftover_file.write_text("half")
    with staged_outputs(file):
        assert not leftover_file.exists()  # swept on entering, before the run's work
    assert sweep_partials(tmp_path / "missing" / "out.json") == []


def test_a_stop_request_during_the_commit_is_held_until_every_output_is_in_place(tmp_path: Path, monkeypatch):
    """SIGTERM right after the first rename of the commit: the commit still finishes (all outputs
    new, nothing set aside left), and the stop is raised after it."""
    file, folder = old_outputs(tmp_path)
    real_replace = os.replace
    renames = []

    def replace_then_stop(source: Path, target: Path) -> None:
        real_replace(source, target)
        renames.append(target)
        if len(renames) == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    def raise_terminated(signum: int, _frame: object) -> None:
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        monkeypatch.setattr(lab.core.io.os, "replace", replace_then_stop)
        with pytest.raises(Terminated), staged_outputs(file, folder) as (staged_file, staged_folder):
            write_new(staged_file, staged_folder)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert len(renames) == 4  # two outputs set aside, two renamed in
    assert read_json(file) == {"run": "new"} and (folder / "weights").read_text() == "new"
    assert partials(tmp_path) == []


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_run_stage_ends_a_stopped_stage_with_the_signal_exit_code_and_one_line(capsys, signum: int, code: int):
    def main() -> None:
        os.kill(os.getpid(), signum)
        time.sleep(30)  # the handler's exception interrupts it

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped:
        run_stage(main)
    assert stopped.value.code == code
    assert f"stopped by {signal.Signals(signum).name}, no partial output left" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) == before


@pytest.fixture(params=[0o022, 0o077, 0o002], ids=lambda umask: f"umask {umask:03o}")
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """The test runs under this umask; the previous one is restored after it."""
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def plain_write_modes(root: Path) -> tuple[int, int]:
    """The modes `open(path, "w")` and `mkdir` give under the current umask, measured."""
    (root / "plain-file").write_text("x")
    (root / "plain-folder").mkdir()
    return mode(root / "plain-file"), mode(root / "plain-folder")


def test_current_umask_reads_the_umask_and_leaves_it(umask: int, monkeypatch):
    assert current_umask() == umask
    assert os.umask(umask) == umask  # unchanged

    def no_proc(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError("/proc/self/status")

    monkeypatch.setattr(lab.core.io, "open", no_proc, raising=False)  # not Linux: set and restored
    assert current_umask() == umask
    assert os.umask(umask) == umask


def test_a_file_written_through_atomic_open_has_the_mode_of_a_plain_write(tmp_path: Path, umask: int):
    plain_file, _ = plain_write_modes(tmp_path)
    with atomic_open(tmp_path / "out" / "model.bin", "wb") as handle:
        handle.write(b"weights")
    write_json(tmp_path / "lab_export.json", {"run": "new"})
    assert mode(tmp_path / "out" / "model.bin") == plain_file == 0o666 & ~umask
    assert mode(tmp_path / "lab_export.json") == plain_file


def temporary_file_write(path: Path, data: bytes) -> None:
    """What safetensors >= 0.8 does (and other atomic writers): an owner-only temporary file renamed over `path`."""
    fd, temp = tempfile.mkstemp(dir=path.parent)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(temp, path)


def test_a_staged_output_gets_the_plain_modes_where_temporary_file_writers_left_owner_only_ones(
        tmp_path: Path, umask: int):
    plain_file, plain_folder = plain_write_modes(tmp_path)
    elsewhere = tmp_path / "cache-file"  # a file the output hard-links, a DVC cache file say
    elsewhere.write_text("cached")
    elsewhere.chmod(0o600)
    with staged_outputs(tmp_path / "adapter", tmp_path / "metrics.json") as (folder, file):
        folder.mkdir()
        temporary_file_write(folder / "adapter_model.safetensors", b"weights")
        (folder / "tokenizer.json").write_text("{}")
        private = Path(tempfile.mkdtemp(dir=folder))  # an owner-only folder
        temporary_file_write(private / "part", b"part")
        (folder / "chosen").write_text("x")
        (folder / "chosen").chmod(0o640)  # a mode a writer chose: kept
        os.link(elsewhere, folder / "linked")
        (folder / "link").symlink_to(elsewhere)
        temporary_file_write(file, b"{}")
    adapter = tmp_path / "adapter"
    assert mode(adapter) == plain_folder
    assert mode(adapter / "adapter_model.safetensors") == mode(adapter / "tokenizer.json") == plain_file
    assert mode(adapter / private.name) == plain_folder and mode(adapter / private.name / "part") == plain_file
    assert mode(tmp_path / "metrics.json") == plain_file
    assert mode(adapter / "chosen") == 0o640
    assert mode(elsewhere) == 0o600  # neither through the hard link nor through the symlink


def test_safetensors_files_in_an_atomic_dir_get_the_mode_of_a_plain_write(tmp_path: Path, umask: int):
    """safetensors >= 0.8 writes through an owner-only temporary file (safetensors issue #782)."""
    np = pytest.importorskip("numpy")
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    plain_file, plain_folder = plain_write_modes(tmp_path)
    with atomic_dir(tmp_path / "export") as staging:
        safetensors_numpy.save_file({"w": np.zeros(2, dtype=np.float32)}, str(staging / "model.safetensors"))
        write_json(staging / "lab_export.json", {})
    export = tmp_path / "export"
    assert mode(export) == plain_folder
    assert mode(export / "model.safetensors") == mode(export / "lab_export.json") == plain_file
