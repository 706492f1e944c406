"""Run the whole pipeline for real through DVC, every stage forced, and time each stage.

usage: python benchmarks/pipeline.py --out benchmarks/results/pipeline_cpu.json [--set KEY=VALUE ...]

One `dvc exp run --force` (with `-S KEY=VALUE` for each --set), exactly what a user runs: the
figures are the cost of a full run from a fresh clone (install time aside), and dvc.lock and the
metrics of that real run stay in the workspace. Stage times come from DVC's own "Running stage"
lines, each timestamped as it is printed. The result also records what the run measured (rows,
training speed, generation times, the headline scores), read from the files dvc.yaml names.
Run it from the repository root.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lab.core.io import read_json, write_json
from lab.core.pipeline_files import stage_flag_path
from lab.core.provenance import result_header
from lab.core.summary import TEST_KEYS

STAGE_LINE = re.compile(r"^Running stage '([\w@.-]+)'")


def stage_seconds(events: list[tuple[float, str]], finished: float) -> dict[str, float]:
    """Seconds per stage from (time, stage) start events: each stage runs until the next starts."""
    ends = [started for started, _ in events[1:]] + [finished]
    return {stage: round(end - started, 1) for (started, stage), end in zip(events, ends, strict=True)}


def run_pipeline(settings: list[str], force: bool = True) -> dict[str, float]:
    """`dvc exp run [--force] -S ...`, echoing its output, and the seconds each stage that ran took."""
    # `python -m dvc`: the dvc of this interpreter, wherever its console script was installed.
    command = [sys.executable, "-m", "dvc", "exp", "run", *(["--force"] if force else []),
               *[arg for setting in settings for arg in ("-S", setting)]]
    events: list[tuple[float, str]] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, bufsize=1) as process:
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", flush=True)
            if match := STAGE_LINE.match(line):
                events.append((time.perf_counter(), match[1]))
    finished = time.perf_counter()
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed with exit code {process.returncode}")
    return stage_seconds(events, finished)


def measured(stages: dict[str, float]) -> dict[str, Any]:
    """What the run produced, from the metrics files dvc.yaml declares."""
    data, train = (read_json(stage_flag_path(stage, "--metrics")) for stage in ("prepare", "train"))
    evaluations = {side: read_json(stage_flag_path(f"evaluate_{side}", "--metrics")) for side in ("base", "finetuned")}
    comparison = read_json(stage_flag_path("compare", "--metrics"))
    return {
        "rows": data["rows"],
        "train": {key: train[key] for key in ("steps", "tokens_seen", "tokens_per_s", "runtime_s", "peak_memory_gib")}
        | {"ran": train["ran"]},
        "generation": {side: metrics["generation"] for side, metrics in evaluations.items()},
        "scores": {name: {key: test[key] for key in TEST_KEYS}
                   for name, test in comparison["metrics"].items()},
        "confidence": comparison["bootstrap"]["confidence"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the result JSON, under benchmarks/results/")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="a param for this run, passed to `dvc exp run -S` (repeatable)")
    args = parser.parse_args()
    # Before the run, which rewrites dvc.lock and metrics/: the revision is the code that ran.
    header = result_header(__file__, "the pipeline through `dvc exp run --force`, each stage timed")
    seconds = run_pipeline(args.settings)
    result: dict[str, Any] = {
        **header,
        "params_set": args.settings,
        "stage_seconds": seconds,
        "total_seconds": round(sum(seconds.values()), 1),
        **measured(seconds),
    }
    write_json(args.out, result)
    print(f"wrote {args.out}: {result['total_seconds']} s in all")


if __name__ == "__main__":
    main()
