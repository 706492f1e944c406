"""Where the base model and the datasets come from: a Hugging Face Hub id (owner/name) at a revision,
or a local path; and what a local model path must hold to load safely.

Weights load as safetensors only: a PyTorch .bin checkpoint is a pickle, which can run code while it
loads. A revision (a branch, tag or commit) pins a Hub model or dataset, and the commit a load
resolved to is recorded beside the results. `datasets` is imported inside functions, so importing
this module (config loading does) stays cheap.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lab.core.errors import DataError

# The Hub's repository ids: owner/name, each of letters, digits, "-", "_" and "." (at most 96), no
# "--" or "..", not ending in ".git". A bare name (the Hub's legacy ids) is refused: a mistyped local
# path without its suffix would otherwise reach the Hub.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
SAFETENSORS_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def is_hub_id(name: str) -> bool:
    """Whether `name` has the syntax of a Hub repository id (owner/name); says nothing of whether it exists."""
    return bool(_HUB_ID.fullmatch(name)) and "--" not in name and ".." not in name and not name.endswith(".git")


def model_gguf(path: Path) -> Path | None:
    """The GGUF file a local model.base names: the path itself, or the one .gguf of a directory
    without config.json; None otherwise."""
    if path.is_file() and path.suffix == ".gguf":
        return path
    if path.is_dir() and not (path / "config.json").is_file():
        found = sorted(path.glob("*.gguf"))
        return found[0] if len(found) == 1 else None
    return None


def local_model_problem(path: Path) -> str | None:
    """Why the local model at `path` cannot be loaded (safely), or None: a directory needs config.json
    and safetensors weights, or exactly one .gguf file."""
    if model_gguf(path) is not None:
        return None
    if not path.is_dir():
        return "is neither a model directory nor a .gguf file"
    if not (path / "config.json").is_file():
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        return (f"holds {len(ggufs)} .gguf files {ggufs}: name one of them" if ggufs
                else "has neither config.json nor a .gguf file")
    if any((path / name).is_file() for name in SAFETENSORS_WEIGHTS):
        return None
    pickles = [name for name in PICKLE_WEIGHTS if (path / name).is_file()]
    if pickles:
        return (f"holds PyTorch pickle weights only ({pickles[0]}), which can run code while they load; the lab "
                "loads safetensors only: load the model once where you trust it and save_pretrained it (which "
                "writes model.safetensors), or use a copy with safetensors weights")
    return f"has no safetensors weights ({' or '.join(SAFETENSORS_WEIGHTS)})"


def load_hub_dataset(name: str, split: str, revision: str | None) -> tuple[list[Any], str | None]:
    """The rows of split `split` of Hub dataset `name` at `revision` (None: the default branch), and
    the commit they came from (None where `datasets` does not say). Offline, `datasets` reads its
    latest cached copy whatever the revision: a pinned commit that differs from it is an error."""
    import datasets

    at = f" at revision {revision!r}" if revision else ""
    try:
        builder = datasets.load_dataset_builder(name, revision=revision)
        builder.download_and_prepare()
        rows = list(builder.as_dataset(split=split))
    except Exception as error:  # datasets raises many types; the user needs one clear line
        raise DataError(f"could not load Hub dataset {name!r}{at}: {type(error).__name__}: {error}") from None
    # For a Hub dataset, the builder's hash is the commit its files were read at.
    commit = builder.hash if isinstance(builder.hash, str) and _COMMIT.fullmatch(builder.hash) else None
    if revision and _COMMIT.fullmatch(revision) and commit and commit != revision:
        raise DataError(f"Hub dataset {name!r}: data.revision pins {revision} but the rows came from commit {commit} "
                        "(an offline cache of another revision?)")
    return rows, commit
