"""One DVC experiment against the committed baseline: what reran, `dvc metrics diff`, and the paired
gain of the experiment's fine-tuned model over the baseline's on the same eval examples.

usage: python benchmarks/experiment_vs_baseline.py --set KEY=VALUE [--set ...] --out benchmarks/results/NAME.json

Runs `dvc exp run -S ...` (no --force: only the stages the change touches rerun, as for a user),
then `dvc metrics diff --json` (the experiment in the workspace against HEAD), and a paired bootstrap
of each ROUGE type over the eval examples: the experiment's per-example scores minus the committed
baseline's (`git show HEAD:...`). That last test is the honest one for a data or training change,
since both runs are scored on the same examples; it needs the eval sample to be unchanged, which
holds for the filters, the mix, the order and every training param. The workspace is left holding
the experiment; `git checkout . && dvc checkout` returns to the baseline. Run from the repository root.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from pipeline import run_pipeline  # benchmarks/, beside this script

from lab.core.errors import LabError
from lab.core.io import read_jsonl, write_json
from lab.core.params import load_config
from lab.core.pipeline_files import committed_rows, stage_flag_path
from lab.core.provenance import git_revision, result_header
from lab.eval.scoring import metric_value
from lab.eval.stats import paired_bootstrap
from lab.leaderboard.board import align


def gains_over_baseline(metrics: list[str]) -> dict[str, Any]:
    """Paired bootstrap of the experiment's fine-tuned per-example `metrics` minus the baseline's."""
    predictions = stage_flag_path("evaluate_finetuned", "--predictions")
    baseline = committed_rows("HEAD", predictions.as_posix())
    if baseline is None:
        raise LabError(f"HEAD has no {predictions}: commit a run of the pipeline first")
    experiment = align([row["id"] for row in baseline], read_jsonl(predictions))
    if experiment is None:
        raise LabError("the experiment's eval sample is not the baseline's: its scores cannot be paired")
    config = load_config()
    compare = config.compare
    return {metric: paired_bootstrap([metric_value(row, metric) for row in baseline],
                                     [metric_value(row, metric) for row in experiment],
                                     compare.bootstrap_resamples, config.seed, compare.confidence)
            for metric in metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the result JSON, under benchmarks/results/")
    parser.add_argument("--set", dest="settings", action="append", required=True, metavar="KEY=VALUE",
                        help="a param of the experiment, passed to `dvc exp run -S` (repeatable)")
    args = parser.parse_args()
    header = result_header(__file__, "one `dvc exp run -S` against the committed baseline, paired")
    baseline_commit = (git_revision() or {}).get("commit")
    seconds = run_pipeline(args.settings, force=False)
    diff = subprocess.run([sys.executable, "-m", "dvc", "metrics", "diff", "--json"], capture_output=True, text=True,
                          check=True).stdout
    result = {**header, "baseline_commit": baseline_commit, "params_set": args.settings, "stage_seconds": seconds,
              "metrics_diff": json.loads(diff),
              "gain_over_baseline": gains_over_baseline(load_config().evaluate.rouge_types)}
    write_json(args.out, result)
    print(f"wrote {args.out}: stages {', '.join(seconds)} reran in {sum(seconds.values()):.0f} s")


if __name__ == "__main__":
    main()
