"""The merged export: the LoRA adapter merged into the base model as one standalone model that plain
transformers loads (AutoModelForCausalLM and AutoTokenizer, no peft), with the tokenizer and chat template
it was trained with, the base's generation config, and lab_export.json saying what it was made from.

The adapter is checked against the base before any weight loads: a LoRA weight for a module the base
lacks, or of another shape, means it was trained for another base, which peft would only warn about
(missing modules) or fail on deep inside (shapes). The merge runs in float32 and rounds once to
export.dtype: W + (alpha/r)·BA summed in 16 bits would round the small update a second time.
torch, transformers and peft are imported inside functions, so importing this module stays cheap.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from lab.core.choices import TORCH_DTYPES
from lab.core.config import ExportConfig
from lab.core.errors import ModelError
from lab.core.hub import local_model_problem, model_gguf
from lab.core.io import write_json
from lab.core.provenance import package_versions
from lab.export.gguf import write_gguf
from lab.model.loading import load_tokenizer, no_library_progress_bars

PROVENANCE_FILE = "lab_export.json"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# peft's names for a LoRA pair in the saved adapter: the wrapped model's module path, then lora_A/B.
_LORA_KEY = re.compile(r"base_model\.model\.(?P<module>.+)\.lora_(?P<side>[AB])\.weight")
EXPORT_PACKAGES = ("torch", "transformers", "peft", "safetensors", "unsloth")


def adapter_problem(adapter_dir: Path) -> str | None:
    """Why `adapter_dir` is not a LoRA adapter the export can merge (safetensors weights), or None."""
    if not adapter_dir.exists():
        return "not found (has the train stage run? try `dvc repro`)"
    if not adapter_dir.is_dir():
        return "is a file, not an adapter directory"
    if not (adapter_dir / ADAPTER_CONFIG).is_file():
        if (adapter_dir / "config.json").is_file():
            return f"holds a full model (config.json), not a LoRA adapter ({ADAPTER_CONFIG})"
        return f"is not a LoRA adapter directory: it has no {ADAPTER_CONFIG}"
    if not (adapter_dir / ADAPTER_WEIGHTS).is_file():
        if (adapter_dir / "adapter_model.bin").is_file():
            return (f"holds pickle weights only (adapter_model.bin), which can run code while they load; the lab "
                    f"loads {ADAPTER_WEIGHTS} only")
        return f"has no {ADAPTER_WEIGHTS}"
    try:
        adapter_config = json.loads((adapter_dir / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return f"has an unreadable {ADAPTER_CONFIG} ({error})"
    peft_type = adapter_config.get("peft_type") if isinstance(adapter_config, dict) else None
    if peft_type != "LORA":
        return f"holds a {peft_type} adapter ({ADAPTER_CONFIG}'s peft_type); the export merges LORA adapters"
    return None


def lora_shapes(adapter_dir: Path) -> dict[str, tuple[int, int]]:
    """(in_features, out_features) of each module the adapter's LoRA pairs update, read from the
    safetensors header (no tensor is loaded): lora_A is r x in, lora_B is out x r."""
    from safetensors import SafetensorError, safe_open

    sides: dict[str, dict[str, list[int]]] = {}
    try:
        with safe_open(adapter_dir / ADAPTER_WEIGHTS, "pt") as weights:
            for key in weights.keys():  # noqa: SIM118 (safe_open is not a mapping)
                match = _LORA_KEY.fullmatch(key)
                if match:
                    sides.setdefault(match["module"], {})[match["side"]] = weights.get_slice(key).get_shape()
    except (OSError, SafetensorError) as error:
        raise ModelError(f"adapter {adapter_dir}: {ADAPTER_WEIGHTS} is not readable safetensors ({error})") from None
    unpaired = sorted(module for module, pair in sides.items() if set(pair) != {"A", "B"})
    if not sides or unpaired:
        what = f"unpaired LoRA weights ({unpaired[0]!r})" if unpaired else "no LoRA weights"
        raise ModelError(f"adapter {adapter_dir}: {ADAPTER_WEIGHTS} holds {what}")
    return {module: (pair["A"][1], pair["B"][0]) for module, pair in sides.items()}


def base_mismatch(base_dir: Path, shapes: dict[str, tuple[int, int]], trust_remote_code: bool) -> str | None:
    """How the adapter's modules (`shapes`) disagree with the base model's, or None. The base is built on
    the meta device from its config: its module names and sizes without loading a weight."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    model_config = AutoConfig.from_pretrained(base_dir, trust_remote_code=trust_remote_code)
    with init_empty_weights():
        skeleton = AutoModelForCausalLM.from_config(model_config, trust_remote_code=trust_remote_code)
    modules = dict(skeleton.named_modules())
    missing = sorted(name for name in shapes if name not in modules)
    if missing:
        return f"updates {len(missing)} module(s) that the base model lacks, e.g. {missing[0]!r}"
    for name, (fan_in, fan_out) in sorted(shapes.items()):
        have = (getattr(modules[name], "in_features", None), getattr(modules[name], "out_features", None))
        if have != (fan_in, fan_out):
            return (f"updates {name!r} as a {fan_in} -> {fan_out} projection, but the base model's is "
                    f"{have[0]} -> {have[1]}")
    return None


def check_export_inputs(base_dir: Path, adapter_dir: Path, trust_remote_code: bool) -> None:
    """Fail with one line naming the problem before any weight loads: a missing or unusable base or
    adapter, or an adapter trained for another base model."""
    if not base_dir.exists():
        raise ModelError(f"base model {base_dir}: not found (has the base_model stage run? try `dvc repro`)")
    problem = local_model_problem(base_dir) or (
        "is a GGUF file; the export merges into the safetensors base the base_model stage writes"
        if model_gguf(base_dir) else None)
    if problem:
        raise ModelError(f"base model {base_dir} {problem}")
    problem = adapter_problem(adapter_dir)
    if problem:
        raise ModelError(f"adapter {adapter_dir}: {problem}")
    mismatch = base_mismatch(base_dir, lora_shapes(adapter_dir), trust_remote_code)
    if mismatch:
        raise ModelError(f"adapter {adapter_dir} does not fit base model {base_dir}: it {mismatch} (trained for "
                         "another base model?)")


def merged_model(base_dir: Path, adapter_dir: Path, dtype: str, trust_remote_code: bool) -> Any:
    """The base with the adapter merged in float32, then cast to `dtype` (an export.dtype) on the CPU."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    with no_library_progress_bars():
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32, use_safetensors=True,
                                                     trust_remote_code=trust_remote_code)
        model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    return cast_checked(model, dtype)


def cast_checked(model: Any, dtype: str) -> Any:
    """`model` cast to `dtype` (an export.dtype); a weight that is not finite after the cast (beyond
    fp16's range of 65504) is an error rather than an inf in the export."""
    import torch

    model = model.to(getattr(torch, TORCH_DTYPES[dtype]))
    broken = [name for name, weight in model.named_parameters() if not torch.isfinite(weight).all()]
    if broken:
        raise ModelError(f"export.dtype {dtype}: {len(broken)} merged weight tensor(s) are not finite in {dtype}, "
                         f"e.g. {broken[0]!r} (beyond its range?); use bf16 (fp32's range) or fp32")
    model.eval()
    return model


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fingerprint(directory: Path, names: list[str]) -> dict[str, str]:
    """sha256 of the named files of `directory` (weights and config: what defines the model)."""
    return {name: file_sha256(directory / name) for name in sorted(names)}


def export_record(base_dir: Path, adapter_dir: Path, tokenizer_dir: Path, export: ExportConfig,
                  model: Any) -> dict[str, Any]:
    """lab_export.json: what the export was made from (the base and the adapter, with their files'
    sha256), how (dtypes, library versions), and what it holds."""
    origin = base_dir / "lab_origin.json"
    adapter_config = json.loads((adapter_dir / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    base_files = ["config.json"] + [p.name for p in base_dir.glob("*.safetensors")]
    return {
        "base": {"path": str(base_dir), "origin": json.loads(origin.read_text()) if origin.is_file() else None,
                 "sha256": _fingerprint(base_dir, base_files)},
        "adapter": {"path": str(adapter_dir), "sha256": _fingerprint(adapter_dir, [ADAPTER_CONFIG, ADAPTER_WEIGHTS]),
                    **{key: adapter_config.get(key) for key in ("r", "lora_alpha", "use_rslora", "target_modules")}},
        "tokenizer_from": str(tokenizer_dir),
        "merged_in": "float32",
        "dtype": TORCH_DTYPES[export.dtype],
        "architecture": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "gguf": None,
        "versions": package_versions(EXPORT_PACKAGES),
    }


def export_merged(base_dir: Path, adapter_dir: Path, out_dir: Path, export: ExportConfig,
                  trust_remote_code: bool) -> dict[str, Any]:
    """Write the merged model, its tokenizer (the adapter's: the chat template it was trained with),
    the base's generation config and lab_export.json into `out_dir`; returns the record. With
    export.gguf, also GGUF files in out_dir/gguf (lab.export.gguf; check_gguf_support first)."""
    check_export_inputs(base_dir, adapter_dir, trust_remote_code)
    # The train stage saves its tokenizer beside the adapter; an adapter made elsewhere may come without.
    tokenizer_dir = adapter_dir if (adapter_dir / "tokenizer_config.json").is_file() else base_dir
    tokenizer = load_tokenizer(tokenizer_dir, trust_remote_code)
    if tokenizer.chat_template is None:
        raise ModelError(f"tokenizer in {tokenizer_dir} has no chat template; the export ships the one it was "
                         "trained with")
    model = merged_model(base_dir, adapter_dir, export.dtype, trust_remote_code)
    with no_library_progress_bars():
        model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    record = export_record(base_dir, adapter_dir, tokenizer_dir, export, model)
    del model  # the GGUF conversion loads the export again, on the GPU
    if export.gguf is not None:
        record["gguf"] = write_gguf(out_dir, export)
    write_json(out_dir / PROVENANCE_FILE, record)
    return record
