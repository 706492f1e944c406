"""No committed file names a folder of the machine that wrote it.

Every git-tracked text file is scanned for absolute paths outside the repository: a checkout or home
location, a temporary folder or a data mount. Such a path means nothing on another machine and tells
where someone's checkout was; a result records its script and arguments relative to the repository
(lab.core.provenance.portable_path), and docs name paths relative to it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The top-level folders a machine path starts with (spelled without slashes, so this file has none):
# checkout and home locations, temporary folders, data and model mounts (those benchmarks/readme_figures.py
# refuses in the docs among them).
MACHINE_FOLDERS = ("work", "workspace", "home", "root", "Users", "tmp", "var/tmp", "private", "data", "models",
                   "mnt", "media", "nfs", "scratch", "opt", "srv")
# An absolute path into one of them: the folder name ends at a slash, the token's end or punctuation.
# The character before the leading slash must not continue a relative path or a URL's host
# (`metrics/data/`, `./tmp/`, `~/work/`, `{root}/data/`, `$HOME/tmp/`, `https://host/tmp/`); a file
# URL (three slashes) is absolute and found.
MACHINE_PATH = re.compile(r"(?<![\w.~}\)$-])/(?:" + "|".join(re.escape(f) for f in MACHINE_FOLDERS)
                          + r")(?:/[^\s\"'`<>|,;)\]}]*)?(?![\w.-])")

# Paths that look like machine paths but name none: (file, path) -> why. Keep it short; each entry is
# checked to still occur, so a stale one fails too.
EXCEPTIONS: dict[tuple[str, str], str] = {
    # A .gitignore pattern with a leading slash is anchored at the repository root: the repository's own
    # data/ folder, not an absolute path.
    (".gitignore", "/data/finetome_shaped*.jsonl"): "root-anchored ignore pattern",
    (".gitignore", "/models/rehearsal-*/"): "root-anchored ignore pattern",
    # DVC's own ignore file (written by `dvc init`): its patterns are anchored at .dvc/, so this is
    # DVC's .dvc/tmp folder.
    (".dvc/.gitignore", "/tmp"): "ignore pattern anchored at .dvc/",
    # Default scratch folders for a random-weight model the GPU benchmarks build and then reuse between
    # runs; never written into a result (the result records the arguments, made portable).
    ("benchmarks/train_profile.py", "/tmp/rand-llama-3b"): "scratch default, not recorded",
    ("benchmarks/train_throughput.py", "/tmp/rand-llama-3b"): "scratch default, not recorded",
    ("benchmarks/multi_gpu.py", "/tmp/multi_gpu"): "scratch default, not recorded",
}


THIS_FILE = "tests/test_no_machine_paths.py"


def tracked_files() -> list[str]:
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the tracked files are unknown")
    done = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"not a git checkout ({done.stderr.decode(errors='replace').strip()}): the tracked files "
                    "are unknown")
    return [name for name in done.stdout.decode().split("\0") if name]


def text_of(path: Path) -> str | None:
    """The file's text; None for a binary file (a NUL byte, or not UTF-8: the plots' PNGs) or one that
    is tracked but deleted in the working tree."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def machine_paths(text: str) -> list[tuple[int, str]]:
    """(line number, path) of every machine path in `text`."""
    return [(number, found.group(0).rstrip(".:")) for number, line in enumerate(text.splitlines(), 1)
            for found in MACHINE_PATH.finditer(line)]


def test_the_pattern_finds_machine_paths_and_nothing_else() -> None:
    def found(line: str) -> list[str]:
        return [path for _, path in machine_paths(line)]

    slash = "/"  # built at run time, so that this file's own text holds no machine path
    assert found(f"python {slash}work/main/benchmarks/x.py --out {slash}tmp/prof/x.json") == [
        f"{slash}work/main/benchmarks/x.py", f"{slash}tmp/prof/x.json"]
    assert found(f'"model.base={slash}data/rehearsal/base", "{slash}root/out/y.json"') == [
        f"{slash}data/rehearsal/base", f"{slash}root/out/y.json"]
    assert found(f"cd {slash}home/me && ls {slash}var/tmp/z {slash}Users/x {slash}mnt {slash}scratch/q") == [
        f"{slash}home/me", f"{slash}var/tmp/z", f"{slash}Users/x", f"{slash}mnt", f"{slash}scratch/q"]
    assert found(f"file://{slash}tmp/x and `{slash}private/var/y`") == [f"{slash}tmp/x", f"{slash}private/var/y"]
    assert found("metrics/data/x.json ./tmp/y ~/work/z {root}/data/w $HOME/tmp/v https://h.io/data/u") == []
    assert found(f"-S model.base={slash}models/base {slash}opt/x") == [f"{slash}models/base", f"{slash}opt/x"]
    assert found("/dev/null /usr/bin/env /etc/xdg/pip <outside>/out.json /database /datasets/x /tmpfile") == []


def test_no_tracked_file_names_a_machine_path() -> None:
    scanned, found, used = 0, [], set()
    for name in tracked_files():
        text = text_of(ROOT / name)
        if text is None:
            continue
        scanned += 1
        for number, path in machine_paths(text):
            if (name, path) in EXCEPTIONS:
                used.add((name, path))
            elif name == THIS_FILE and path in {excepted for _, excepted in EXCEPTIONS}:
                continue  # the exceptions' own list, in this file
            else:
                found.append(f"{name}:{number}: {path}")
    assert scanned > 0, "no tracked text file was read"
    assert not found, ("absolute paths of a machine (record them relative to the repository, "
                       "or as <outside>/NAME):\n" + "\n".join(found))
    stale = sorted(set(EXCEPTIONS) - used)
    assert not stale, f"exceptions that no longer occur (remove them): {stale}"
