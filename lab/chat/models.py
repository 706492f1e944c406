"""Loading what the chat CLI talks to: a model directory (the base model, or a merged standalone
export), optionally with LoRA adapters on it, each checked against the model before it loads.

One adapter is merged into the model, as the evaluate stage merges it (lab.model.loading), so the chat
answers as the evaluated model does. Several adapters stay unmerged in one peft model, and the one
that answers a conversation is switched in with `set_adapter`. An adapter trained on another base
model would otherwise load with a size-mismatch traceback, or (where peft only warns about keys it
cannot place) answer as the plain base model: `adapter_problem` compares the adapter's weights with
the model's modules first and names what does not fit.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.core.errors import LabError
from lab.core.hub import local_model_problem, model_gguf

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# peft's key for a LoRA factor: base_model.model.<module path>.lora_A.weight (lora_B: the other factor).
_LORA_KEY = re.compile(r"base_model\.model\.(?P<module>.+?)\.lora_(?P<factor>A|B)\.weight")
_ADAPTER_NAME = re.compile(r"[A-Za-z0-9][\w.-]*")
# Mismatches quoted in the error; the rest are counted.
QUOTED_MISMATCHES = 3


def parse_adapters(values: list[str]) -> dict[str, Path]:
    """--adapter values, NAME=PATH or PATH (named after its directory), as {name: path}."""
    adapters: dict[str, Path] = {}
    for value in values:
        name, separator, path = value.partition("=")
        if not (separator and _ADAPTER_NAME.fullmatch(name) and path and not Path(value).exists()):
            name, path = Path(value).name or value, value
        if name in adapters:
            raise LabError(f"--adapter {value}: the name {name!r} is given twice; name them NAME=PATH")
        adapters[name] = Path(path)
    return adapters


def routed_adapters(router_dir: Path, adapters: dict[str, Path], names: list[str]) -> dict[str, Path]:
    """`adapters` with every adapter a router chooses among (its domains and its fallback) added,
    each from beside the router's folder (models/domains/NAME, where the domains pipeline writes
    them) unless an --adapter NAME=DIR names it."""
    found = dict(adapters)
    for name in names:
        found.setdefault(name, router_dir.parent / name)
    return found


@dataclass
class ChatModel:
    """A loaded model, its tokenizer per adapter (an adapter saved with a tokenizer of its own renders
    with it, as the evaluate stage does) and the adapters by name ({} for a plain model)."""

    model: Any
    model_dir: Path
    device: str
    base_tokenizer: Any
    adapters: dict[str, Path] = field(default_factory=dict)
    tokenizers: dict[str, Any] = field(default_factory=dict)
    merged: bool = False

    def activate(self, name: str | None) -> Any:
        """Switch the answering adapter to `name` (None: no adapter) and return the tokenizer to use."""
        if name is None:
            return self.base_tokenizer
        if not self.merged:
            self.model.set_adapter(name)
        return self.tokenizers[name]


def model_dir_problem(path: Path) -> str | None:
    """Why `path` is not a model directory the chat can load, or None."""
    if (path / ADAPTER_CONFIG).is_file() and not (path / "config.json").is_file():
        return "is a LoRA adapter, not a model: pass it with --adapter (on its base model, --model)"
    if model_gguf(path) is not None:
        return ("is a GGUF file, which the chat does not load: convert it first (`dvc repro base_model` writes "
                "models/base)")
    return local_model_problem(path)


def adapter_files_problem(path: Path) -> str | None:
    """Why `path` is not a LoRA adapter directory with safetensors weights, or None."""
    if not path.is_dir():
        return "is not a directory"
    if not (path / ADAPTER_CONFIG).is_file():
        hint = ": it is a model; pass it with --model" if (path / "config.json").is_file() else ""
        return f"has no {ADAPTER_CONFIG}, so it is not a LoRA adapter{hint}"
    try:
        peft_type = json.loads((path / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("peft_type")
    except (ValueError, AttributeError) as error:
        return f"has an unreadable {ADAPTER_CONFIG} ({type(error).__name__})"
    if peft_type != "LORA":
        return f"is a {peft_type!r} adapter; the chat loads LoRA adapters"
    if not (path / ADAPTER_WEIGHTS).is_file():
        return f"has no {ADAPTER_WEIGHTS} (safetensors weights; pickled .bin weights are not loaded)"
    return None


def _linear_shape(module: Any) -> tuple[int, int] | None:
    """(in_features, out_features) of a linear layer, None for a module of another kind."""
    if hasattr(module, "in_features") and hasattr(module, "out_features"):
        return module.in_features, module.out_features
    return None


def adapter_problem(model: Any, path: Path) -> str | None:
    """Why the LoRA adapter at `path` does not fit `model` (modules it lacks, or of other sizes), or None."""
    problem = adapter_files_problem(path)
    if problem is not None:
        return problem
    from safetensors import safe_open

    try:
        with safe_open(path / ADAPTER_WEIGHTS, framework="pt") as weights:
            shapes = {key: tuple(weights.get_slice(key).get_shape()) for key in weights.keys()}  # noqa: SIM118 (a safe_open handle, not a dict)
    except Exception as error:  # safetensors raises its own error type for a damaged file
        return f"has an unreadable {ADAPTER_WEIGHTS} ({type(error).__name__}: {str(error)[:120]})"
    modules = dict(model.named_modules())
    keys = [(match, key) for key in shapes if (match := _LORA_KEY.fullmatch(key))]
    mismatches: list[str] = []
    for match, key in keys:
        name, factor = match["module"], match["factor"]
        if name not in modules:
            mismatches.append(f"{name} (no such module)")
            continue
        sizes = _linear_shape(modules[name])
        expected = None if sizes is None else (sizes[0] if factor == "A" else sizes[1])
        found = shapes[key][1] if factor == "A" else shapes[key][0]
        if expected is not None and found != expected:
            side = "input" if factor == "A" else "output"
            mismatches.append(f"{name} ({side} size {found} in the adapter, {expected} in the model)")
    if not keys:
        return f"holds no LoRA weights in {ADAPTER_WEIGHTS}"
    if not mismatches:
        return None
    more = f" and {len(mismatches) - QUOTED_MISMATCHES} more" if len(mismatches) > QUOTED_MISMATCHES else ""
    trained_on = _trained_on(path)
    return (f"does not fit this model ({type(model).__name__}): {'; '.join(mismatches[:QUOTED_MISMATCHES])}{more}"
            f"; it was trained on another base model{trained_on}")


def _trained_on(path: Path) -> str:
    """" (adapter_config.json names ...)" where the adapter names its base model."""
    try:
        base = json.loads((path / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (ValueError, AttributeError):
        return ""
    return f" ({ADAPTER_CONFIG} names {base!r})" if base else ""


def _tokenizer_for(adapter_dir: Path, base_tokenizer: Any) -> Any:
    """The adapter's own tokenizer where it saved one (the train stage does), else the model's."""
    from lab.model.loading import load_tokenizer

    return load_tokenizer(adapter_dir) if (adapter_dir / "tokenizer_config.json").is_file() else base_tokenizer


def check_paths(model_dir: Path, adapters: dict[str, Path]) -> None:
    """Refuse a model or adapter path that holds no model or adapter, before anything loads."""
    problem = model_dir_problem(model_dir)
    if problem is not None:
        raise LabError(f"--model {model_dir} {problem}")
    for name, path in adapters.items():
        problem = adapter_files_problem(path)
        if problem is not None:
            raise LabError(f"--adapter {name}={path} {problem}")


def load_chat_model(model_dir: Path, adapters: dict[str, Path], device: str) -> ChatModel:
    """The model in `model_dir` with `adapters` (name: directory) on it, each checked first."""
    check_paths(model_dir, adapters)
    from lab.model.loading import load_for_inference, no_library_progress_bars

    try:
        model, tokenizer = load_for_inference(model_dir, None, device)
    except (OSError, ValueError, RuntimeError) as error:  # a damaged or foreign model directory
        raise LabError(f"--model {model_dir} could not be loaded: {type(error).__name__}: "
                       f"{str(error).strip().splitlines()[0][:200] if str(error).strip() else ''}") from None
    for name, path in adapters.items():
        problem = adapter_problem(model, path)
        if problem is not None:
            raise LabError(f"--adapter {name}={path} {problem}")
    chat = ChatModel(model, model_dir, device, tokenizer, dict(adapters))
    if not adapters:
        return chat
    from peft import PeftModel

    (first, first_dir), *others = adapters.items()
    with no_library_progress_bars():
        peft_model = PeftModel.from_pretrained(model, first_dir, adapter_name=first)
        for name, path in others:
            peft_model.load_adapter(path, adapter_name=name)
    chat.merged = not others
    # One adapter is merged, as the evaluate stage merges it: no extra matmuls per token.
    chat.model = peft_model.merge_and_unload() if chat.merged else peft_model
    chat.model.eval()
    chat.tokenizers = {name: _tokenizer_for(path, tokenizer) for name, path in adapters.items()}
    return chat
