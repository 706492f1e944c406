"""Atomic file output: a failed, interrupted or killed stage never leaves a half-written output, nor a
mix of outputs from two runs.

Every output is written under a temporary name beside it first (`.NAME.PID.RANDOM.lab-partial`) and
renamed into place once complete. A stage with several outputs stages them all (`staged_outputs`) and
renames them together at the end. Ctrl-C and SIGTERM (which lab.core.cli turns into an exception) remove
the temporary files on the way out; after a SIGKILL, where no cleanup can run, the next writer of the
same output sweeps them (a stage's outputs have one writer at a time: DVC locks the repository).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

PARTIAL_SUFFIX = ".lab-partial"


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
