"""Atomic file output: a failed, interrupted or killed stage never leaves a half-written output, nor a
mix of outputs from two runs.

Every output is written under a temporary name beside it first (`.NAME.PID.RANDOM.lab-partial`) and
renamed into place once complete. A stage with several outputs stages them all (`staged_outputs`) and
renames them together at the end. Ctrl-C and SIGTERM (which lab.core.cli turns into an exception) remove
the temporary files on the way out; after a SIGKILL, where no cleanup can run, the next writer of the
same output sweeps them (a stage's outputs have one writer at a time: DVC locks the repository).

Outputs get the modes a plain `open(path, "w")` or `mkdir` gives (0o666 or 0o777 less the umask), not the
owner-only ones of temporary files: `atomic_open`'s mkstemp file is given the plain mode, and a staged
output's files and folders that a temporary-file writer made owner-only (0600 files, 0700 folders:
safetensors >= 0.8 writes its .safetensors files through a temporary file) get it at the commit.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

PARTIAL_SUFFIX = ".lab-partial"


# The modes of temporary files and folders (mkstemp, mkdtemp, NamedTemporaryFile, Rust's tempfile crate).
_TEMPORARY_FILE_MODE, _TEMPORARY_FOLDER_MODE = 0o600, 0o700


def current_umask() -> int:
    """The process umask, read without changing it where Linux shows it (/proc/self/status, since 4.7).

    Elsewhere it is set and restored, the classic way. That is acceptable here: a file that another
    thread creates between the two calls (two system calls apart) gets the owner-only mode that umask
    0o077 gives, the mode of a temporary file, and the lab's outputs are written by the main thread."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o077)
    os.umask(umask)
    return umask


def plain_modes() -> tuple[int, int]:
    """The modes that `open(path, "w")` and `mkdir` give a new file and folder: 0o666 and 0o777 less the umask."""
    umask = current_umask()
    return 0o666 & ~umask, 0o777 & ~umask


def _give_plain_modes(path: Path) -> None:
    """Give `path`, and what is under it if it is a folder, the plain modes where a temporary-file writer
    left owner-only ones (files 0600, folders 0700). Other modes are kept (a writer meant them); so
    are the modes of links: a symlink is not followed, nor is a hard-linked file changed (its mode is
    another path's too, a file in DVC's cache say)."""
    file_mode, folder_mode = plain_modes()
    if (file_mode, folder_mode) == (_TEMPORARY_FILE_MODE, _TEMPORARY_FOLDER_MODE):
        return  # an umask of 0o077: owner-only is what a plain write gives
    paths = [path]
    if path.is_dir() and not path.is_symlink():
        for folder, folders, files in os.walk(path):  # symlinked folders are not entered
            paths += [Path(folder, name) for name in folders + files]
    for each in paths:
        try:
            info = each.lstat()
        except FileNotFoundError:
            continue
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISREG(info.st_mode) and info.st_nlink == 1 and mode == _TEMPORARY_FILE_MODE != file_mode:
            os.chmod(each, file_mode)
        elif stat.S_ISDIR(info.st_mode) and mode == _TEMPORARY_FOLDER_MODE != folder_mode:
            os.chmod(each, folder_mode)


def partial_path(path: Path) -> Path:
    """A fresh temporary name beside `path`, in the pattern that `sweep_partials` recognises."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}")


def sweep_partials(path: Path | str) -> list[Path]:
    """Remove what interrupted writers of `path` left beside it (temporary files or folders, and
    previous outputs set aside during a commit); returns what was removed."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    prefix = f".{path.name}."
    leftovers = [p for p in path.parent.iterdir()
                 if p.name.startswith(prefix) and p.name.endswith(PARTIAL_SUFFIX)
                 and p.name[len(prefix):].split(".", 1)[0].isdigit()]  # the pid: not another output's name
    for leftover in leftovers:
        _remove(leftover)
    return leftovers


def _remove(path: Path) -> None:
    """Delete a file, a link or a folder tree; nothing if it is gone."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_open(path: Path | str, mode: str = "w") -> Iterator[IO[Any]]:
    """Write to a temporary file beside `path`, then rename it over `path` on success."""
    path = Path(path)
    encoding = {} if "b" in mode else {"encoding": "utf-8"}
    if path.name.endswith(PARTIAL_SUFFIX):  # a staged output (staged_outputs) is temporary already
        with path.open(mode, **encoding) as handle:
            yield handle
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_partials(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=PARTIAL_SUFFIX)
    try:
        with os.fdopen(fd, mode, **encoding) as handle:
            os.fchmod(fd, plain_modes()[0])  # mkstemp's file is owner-only (0600); a plain open's is not
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path | str, payload: Any) -> None:
    with atomic_open(path) as handle:
        json.dump(payload, handle, indent=2, sort_keys=False, ensure_ascii=False)
        handle.write("\n")


def write_jsonl(path: Path | str, rows: Iterable[dict[str, Any]]) -> None:
    with atomic_open(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_text(path: Path | str, text: str) -> None:
    with atomic_open(path) as handle:
        handle.write(text)


def read_json(path: Path | str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (has the stage that writes it run? try `dvc repro`)")
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def read_jsonl(path: Path | str) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (has the stage that writes it run? try `dvc repro`)")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}:{line_number}: invalid JSON ({error.msg})") from None
    return rows


@contextmanager
def staged_outputs(*paths: Path | str) -> Iterator[tuple[Path, ...]]:
    """Temporary names for a stage's outputs, renamed into place together when the block ends
    normally, and removed when it raises (Ctrl-C and SIGTERM included).

    Yields one path per output, in order, none of them created yet: the block writes a file there or
    makes a folder. Enter it at the stage's start: it sweeps what a killed run left first. An output
    the block did not write is removed at the commit, so that the outputs are all this run's."""
    targets = tuple(Path(p) for p in paths)
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        sweep_partials(target)
    staged = tuple(partial_path(target) for target in targets)
    try:
        yield staged
        _commit(targets, staged)
    finally:
        for temp in staged:
            _remove(temp)  # nothing left after a commit


def _commit(targets: tuple[Path, ...], staged: tuple[Path, ...]) -> None:
    """Set every existing output aside, then rename the new ones in, Ctrl-C and SIGTERM held until
    both are done: even a SIGKILL in between leaves each output old or absent (while setting aside),
    or new or absent (while renaming in), never new beside old. What was set aside is deleted last,
    or swept by the next run."""
    aside: list[Path] = []
    try:
        for temp in staged:
            _give_plain_modes(temp)
        with _stop_requests_held():
            for target in targets:
                if target.exists() or target.is_symlink():
                    aside.append(partial_path(target))
                    os.replace(target, aside[-1])
            for target, temp in zip(targets, staged, strict=True):
                if temp.exists() or temp.is_symlink():
                    os.replace(temp, target)
    finally:
        for old in aside:
            _remove(old)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def _stop_requests_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM during the block and deliver the first one after it.

    Handlers are swapped rather than the signals masked: the OS may deliver a signal to any thread
    (torch's, tokenizers'), and Python then runs the handler in the main thread whatever its mask."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread can set handlers; Python never runs them elsewhere
        return
    held: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, _frame: held.append(signum)) for signum in _STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        if held:
            signal.raise_signal(held[0])


@contextmanager
def atomic_dir(path: Path | str) -> Iterator[Path]:
    """Build a directory under a temporary name, then swap it in for `path` on success."""
    with staged_outputs(path) as (staging,):
        staging.mkdir()
        yield staging
