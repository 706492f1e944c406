"""GGUF files of the merged export (export.gguf), for llama.cpp and Ollama, through Unsloth's
`save_pretrained_gguf` (llama.cpp's converter and quantizer, which Unsloth fetches and builds into
./llama.cpp on first use).

Unsloth runs on a CUDA GPU only, so export.gguf is checked before any work (check_gguf_support). It
converts a loaded model that carries no adapter from the checkpoint it was loaded from, and writes its
tokenizer fixes (a BOS that the GGUF chat template must not repeat) into that folder: it is handed a
scratch copy of the export (weights hard-linked, not copied), so the export's own files stay as saved.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

from lab.core.choices import TORCH_DTYPES
from lab.core.config import ExportConfig
from lab.core.errors import RuntimeConfigError

GGUF_FOLDER = "gguf"
# Inside the export's staging folder while Unsloth works, removed before the export is committed.
_SOURCE, _WORK = ".gguf-source", ".gguf-work"


def check_gguf_support(export: ExportConfig) -> None:
    """export.gguf needs Unsloth, which needs a CUDA GPU: fail before any work where either is missing.
    Unsloth is imported here, before transformers, so that its patches apply."""
    if export.gguf is None:
        return
    import torch

    missing = ([] if torch.cuda.is_available() else ["no CUDA GPU here"]) + (
        [] if importlib.util.find_spec("unsloth") else ["unsloth is not installed"])
    if missing:
        raise RuntimeConfigError(
            f"export.gguf: {export.gguf!r} needs Unsloth on a CUDA GPU ({'; '.join(missing)}): on a CUDA host, pip "
            "install -r requirements-gpu.txt (Unsloth then builds llama.cpp on first use, which needs network "
            "access and a C compiler); or set export.gguf: null for the safetensors export alone")
    try:
        import unsloth  # noqa: F401
    except ImportError as error:
        raise RuntimeConfigError(f"export.gguf: {export.gguf!r} needs Unsloth, which does not import ({error}); "
                                 "pip install -r requirements-gpu.txt, or set export.gguf: null") from None


def _scratch_copy(model_dir: Path, scratch: Path) -> None:
    """The export's files in `scratch`: the weights hard-linked (no second copy on disk; nothing rewrites
    them), the small files copied (Unsloth rewrites the tokenizer's)."""
    scratch.mkdir()
    for file in model_dir.iterdir():
        if not file.is_file():
            continue
        if file.suffix == ".safetensors":
            os.link(file, scratch / file.name)
        else:
            shutil.copy2(file, scratch / file.name)


def _convert(scratch: Path, work: Path, export: ExportConfig) -> dict[str, Any]:
    """Unsloth's save_pretrained_gguf on the model in `scratch`; returns its result (gguf_files,
    gguf_directory, modelfile_location)."""
    import torch
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=str(scratch), dtype=getattr(torch, TORCH_DTYPES[export.dtype]), load_in_4bit=False)
    try:
        return model.save_pretrained_gguf(str(work), tokenizer, quantization_method=export.gguf)
    except (RuntimeError, ValueError, TypeError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise RuntimeConfigError(f"export.gguf: {export.gguf!r}: Unsloth's GGUF export failed: {first_line}") from error


def write_gguf(model_dir: Path, export: ExportConfig) -> dict[str, Any]:
    """GGUF files (and Unsloth's Ollama Modelfile, where it writes one) of the model in `model_dir`, in
    model_dir/gguf; returns what lab_export.json records of them."""
    scratch, work = model_dir / _SOURCE, model_dir / _WORK
    _scratch_copy(model_dir, scratch)
    result = _convert(scratch, work, export)
    files = [Path(name) for name in result.get("gguf_files") or []]
    if not files:
        raise RuntimeConfigError(f"export.gguf: {export.gguf!r}: Unsloth's GGUF export reported no GGUF file")
    if result.get("modelfile_location"):
        files.append(Path(result["modelfile_location"]))
    out = model_dir / GGUF_FOLDER
    out.mkdir()
    for file in files:
        shutil.move(file, out / file.name)
    for leftover in (scratch, work, Path(result.get("gguf_directory") or work)):
        shutil.rmtree(leftover, ignore_errors=True)
    return {"quantization": export.gguf, "files": sorted(f"{GGUF_FOLDER}/{file.name}" for file in files)}
