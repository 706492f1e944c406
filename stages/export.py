"""Stage export (pipelines/export/dvc.yaml): the LoRA adapter merged into the base model as one standalone
model that plain transformers loads, in export.dtype, with its tokenizer, chat template, generation config
and lab_export.json (what it was made from); with export.gguf, GGUF files too. Paths come from the
pipeline file; run it with `dvc repro pipelines/export/dvc.yaml`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lab.core.cli import run_stage
from lab.core.io import atomic_dir
from lab.core.params import load_config
from lab.export.gguf import check_gguf_support
from lab.export.merged import export_merged


def main() -> None:
    """Check what the export needs, merge into a staging folder, swap it in, print one line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", type=Path, required=True, help="base model directory")
    parser.add_argument("--adapter", type=Path, required=True, help="LoRA adapter directory")
    parser.add_argument("--out", type=Path, required=True, help="output: the merged model directory")
    args = parser.parse_args()
    config = load_config()
    check_gguf_support(config.export)
    with atomic_dir(args.out) as staging:
        record = export_merged(args.base, args.adapter, staging, config.export, config.model.trust_remote_code)
    gguf = f", GGUF {record['gguf']['quantization']}" if record["gguf"] else ""
    print(f"export: {args.adapter} merged into {args.base}, {record['parameters']:,} parameters in "
          f"{record['dtype']}{gguf} -> {args.out}")


if __name__ == "__main__":
    run_stage(main)
