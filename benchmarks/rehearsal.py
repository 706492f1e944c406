"""The reference lab rehearsed end to end on a CUDA host without the Hub: the full-lab command of docs/gpu.md
through `dvc exp run`, on a rehearsal base and FineTome-shaped data, each stage timed, and the full
lab's time projected from what was measured.

usage: python benchmarks/rehearsal.py --base DIR --data FILE --out benchmarks/results/rehearsal.json
       [--train-examples 2000] [--full-examples 85000]

DIR comes from benchmarks/rehearsal_base.py (Llama-3.2-3B-Instruct's architecture, random weights, the
real tokenizer), FILE from benchmarks/finetome_shaped.py (100,000 rows). The command is the docs' own,
read from the "The full lab" section of docs/gpu.md so that the two cannot drift, with three params changed:
model.base, data.source and data.max_train_examples (a training slice; all 85,000 conversations would
take hours). Everything else runs at the full lab's size: prepare reads the whole file, the base model
is converted at its real size, and both evaluations generate 256 tokens for 100 examples (random weights
never say <|eot_id|>, so every sequence runs all 256 tokens: an upper bound for the real model). Stages
are timed by benchmarks/pipeline.py (`dvc exp run --force`, DVC's own stage lines).

The full lab's train stage (FULL_EXAMPLES conversations, train.epochs) is projected from the slice as
    fixed + tokenizing seconds per example x examples + tokens / (tokens/s)
tokens/s: the trainer's rate over the slice (validation every train.eval_steps and checkpoint saves
recur per step, so their share carries over; warm-up does not, so a small slice overestimates);
tokens: examples x the slice's mean tokens per example (after truncation) x epochs; tokenizing seconds
per example: timed here on the slice's rows, as the train stage tokenizes every row before training;
fixed: the slice's train stage less its training run and its tokenizing (loading, saving). Every other
stage already ran at full size and counts as measured.

Run it from the repository root of a scratch clone: like benchmarks/pipeline.py, it leaves the run's
params.yaml, dvc.lock and metrics (of random weights) in the workspace; `git checkout . && dvc checkout`
restores the committed ones.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import time
from pathlib import Path
from typing import Any

from pipeline import measured, run_pipeline  # benchmarks/, beside this script

from lab.core.errors import LabError
from lab.core.io import read_json, read_jsonl, write_json
from lab.core.params import load_config
from lab.core.pipeline_files import stage_flag_path
from lab.core.provenance import portable_argument, portable_path, repository_root, result_header
from lab.model.loading import load_tokenizer
from lab.train.masking import tokenize_for_training

# The heading of the section whose first bash block is the full-lab command (docs/gpu.md's "## The full lab",
# README.md's "## The full lab on a GPU").
FULL_LAB_SECTION = re.compile(r"^#{2,3} The full lab\b.*$", re.MULTILINE)
FULL_LAB_DOC = Path("docs/gpu.md")
# FineTome-100k's 100,000 conversations less the 15% test split (data.test_size).
FULL_EXAMPLES = 85_000
REHEARSED_KEYS = ("model.base", "data.source", "data.max_train_examples")


def full_lab_settings(doc: str) -> list[str]:
    """The KEY=VALUE of every `-S` in the full-lab command of `doc` (the first bash block of the section
    headed "The full lab", up to the next heading)."""
    heading = FULL_LAB_SECTION.search(doc)
    section = re.split(r"^#{1,3} ", doc[heading.end():], maxsplit=1, flags=re.MULTILINE)[0] if heading else ""
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    if block is None:
        raise LabError(f"no bash block under a heading {FULL_LAB_SECTION.pattern!r}")
    words = shlex.split(block[1].replace("\\\n", " "))
    return [words[index + 1] for index, word in enumerate(words[:-1]) if word == "-S"]


def rehearsal_settings(full_lab: list[str], base: Path, data: Path, train_examples: int) -> list[str]:
    """The full lab's settings with model.base, data.source and data.max_train_examples replaced."""
    values = {"model.base": str(base.resolve()), "data.source": str(data.resolve()),
              "data.max_train_examples": str(train_examples)}
    keys = [setting.partition("=")[0] for setting in full_lab]
    missing = [key for key in REHEARSED_KEYS if key not in keys]
    if missing:
        raise LabError(f"the full-lab command of {FULL_LAB_DOC} sets no {', '.join(missing)}")
    return [f"{key}={values[key]}" if key in values else setting for key, setting in zip(keys, full_lab, strict=True)]


def project_training(stage_s: float, train: dict[str, Any], tokenize_s: float, examples: int,
                     epochs: float) -> dict[str, Any]:
    """The full lab's train stage from the slice's: `train` is its metrics (metrics/train.json),
    `stage_s` its stage's wall time, `tokenize_s` the time to tokenize its rows (see the module docstring)."""
    measured_examples = train["data"]["examples"]
    tokens_per_example = train["data"]["tokens"] / measured_examples
    tokens = examples * tokens_per_example * epochs
    tokenize_total = tokenize_s / measured_examples * examples
    fixed = stage_s - train["runtime_s"] - tokenize_s
    training = tokens / train["tokens_per_s"]
    return {"examples": examples, "epochs": epochs, "tokens_per_example": round(tokens_per_example, 1),
            "tokens": round(tokens), "tokens_per_s": train["tokens_per_s"], "fixed_s": round(fixed, 1),
            "tokenize_s": round(tokenize_total, 1), "training_s": round(training, 1),
            "train_stage_s": round(fixed + tokenize_total + training, 1)}


def project_full_lab(stage_seconds: dict[str, float], training: dict[str, Any]) -> dict[str, Any]:
    """Every stage but train as measured, plus the projected train stage."""
    others = {stage: seconds for stage, seconds in stage_seconds.items() if stage != "train"}
    total = sum(others.values()) + training["train_stage_s"]
    return {"train": training, "other_stages_s": others, "total_s": round(total, 1),
            "total_h": round(total / 3600, 2)}


def tokenize_seconds(base_dir: Path, train_file: Path, max_seq_length: int, long_sequences: str) -> float:
    """Seconds lab.train.masking takes to tokenize the training rows with the base model's tokenizer."""
    tokenizer, rows = load_tokenizer(base_dir), read_jsonl(train_file)
    started = time.perf_counter()
    tokenize_for_training(tokenizer, rows, max_seq_length, long_sequences)
    return time.perf_counter() - started


def rehearsal_marker(base: Path) -> dict[str, Any] | None:
    """What the rehearsal base says of itself (config.json's lab_rehearsal); None for a real model."""
    return json.loads((base / "config.json").read_text()).get("lab_rehearsal")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True, help="model directory (benchmarks/rehearsal_base.py)")
    parser.add_argument("--data", type=Path, required=True, help="data file (benchmarks/finetome_shaped.py)")
    parser.add_argument("--out", type=Path, required=True, help="the result JSON, under benchmarks/results/")
    parser.add_argument("--train-examples", type=int, default=2000,
                        help="the training slice (data.max_train_examples): 250 optimizer steps at batch 2 x 4")
    parser.add_argument("--full-examples", type=int, default=FULL_EXAMPLES,
                        help="training conversations of the full lab, for the projection")
    parser.add_argument("--doc", "--readme", type=Path, default=FULL_LAB_DOC,
                        help="where the full-lab command is (the first bash block under \"The full lab\")")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a further -S setting the host needs (e.g. evaluate.semantic_similarity=false where "
                             "the embedding model's wheel is not installed); recorded in params_set and extra_settings")
    args = parser.parse_args(argv)
    if not (args.base / "config.json").is_file():
        parser.error(f"--base {args.base}: no model directory (no config.json)")
    if not args.data.is_file():
        parser.error(f"--data {args.data}: no such file")
    if args.train_examples < 1 or args.full_examples < 1:
        parser.error("--train-examples and --full-examples must be positive")
    if any("=" not in setting or setting.partition("=")[0] in REHEARSED_KEYS for setting in args.set):
        parser.error(f"--set takes KEY=VALUE, and not for {', '.join(REHEARSED_KEYS)} (their own options set them)")
    return args


def main() -> None:
    args = parse_args()
    settings = rehearsal_settings(full_lab_settings(args.doc.read_text()), args.base, args.data,
                                  args.train_examples) + args.set
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("the rehearsal times the full lab's GPU path: run it on a CUDA host")
    # Before the run, which rewrites dvc.lock and metrics/: the revision is the code that ran.
    header = result_header(__file__, "the full-lab command of docs/gpu.md on a rehearsal base, each stage timed, "
                                     "the full lab projected")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # whatever still asks the Hub fails at once
    seconds = run_pipeline(settings)
    config = load_config()  # params.yaml as the experiment left it
    train = read_json(stage_flag_path("train", "--metrics"))
    tokenize_s = tokenize_seconds(stage_flag_path("train", "--base"), stage_flag_path("train", "--train-file"),
                                  config.train.max_seq_length, config.train.long_sequences)
    training = project_training(seconds["train"], train, tokenize_s, args.full_examples, config.train.epochs)
    root = repository_root(__file__)  # the paths it ran with, recorded as the header's arguments are
    result = {**header, "params_set": [portable_argument(setting, root) for setting in settings],
              "extra_settings": [portable_argument(setting, root) for setting in args.set],
              "rehearsal_base": rehearsal_marker(args.base),
              "data_file": {"path": portable_path(str(args.data), root), "bytes": args.data.stat().st_size},
              "stage_seconds": seconds, "total_seconds": round(sum(seconds.values()), 1),
              "evaluate_seconds": {side: seconds.get(f"evaluate_{side}") for side in ("base", "finetuned")},
              **measured(seconds), "train_data": train["data"], "tokenize_seconds": round(tokenize_s, 2),
              "projection": project_full_lab(seconds, training)}
    write_json(args.out, result)
    print(f"wrote {args.out}: {result['total_seconds']} s measured; full lab projected at "
          f"{result['projection']['total_h']} h")


if __name__ == "__main__":
    main()
