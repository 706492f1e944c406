"""Leaderboard of the DVC experiments of the current commit: metrics/leaderboard.md and metrics/leaderboard.png.

usage: python tools/leaderboard.py [--markdown metrics/leaderboard.md] [--plot metrics/leaderboard.png]
                                   [--exp-show-json FILE]

Run it from the repository root after a sweep (`dvc exp run --queue -S ...`, then `dvc queue start`).
It is not a pipeline stage because it reads every experiment: it takes `dvc exp show --json` (or a
saved copy of it, --exp-show-json), reads each run's per-example predictions from git (`git show
REV:PATH`: every experiment is a commit), and ranks the runs with lab/leaderboard/board.py under the
bootstrap settings (`seed`, `compare.*`) of the baseline commit's params.yaml. Both outputs are written
atomically.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from lab.core.cli import run_stage
from lab.core.config import PARAMS_FILE, LabConfig, load_config
from lab.core.errors import LabError
from lab.core.io import atomic_open, write_text
from lab.core.pipeline_files import committed_rows, committed_text, metrics_files, stage_flag_path
from lab.eval.scoring import metric_label
from lab.leaderboard import board as leaderboard
from lab.leaderboard import markdown as leaderboard_report
from lab.report.tables import confidence_percent


def exp_show(saved: Path | None) -> list[dict[str, Any]]:
    """`dvc exp show --json` of the repository in the working directory (or a saved copy of it)."""
    if saved is not None:
        return json.loads(saved.read_text(encoding="utf-8"))
    # The running interpreter's dvc: the one installed beside the lab, whatever PATH says.
    result = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], capture_output=True, text=True)
    if result.returncode != 0:
        raise LabError(f"`dvc exp show --json` failed: {result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout)


def baseline_config(rev: str) -> LabConfig:
    """The baseline commit's params: after `dvc exp run` the workspace holds the last experiment's, and
    the bootstrap must not depend on which experiment ran last."""
    committed = committed_text(rev, str(PARAMS_FILE))
    if committed is None:
        raise LabError(f"commit {rev[:7]} has no {PARAMS_FILE}")
    return load_config(PARAMS_FILE, overrides=yaml.safe_load(committed) or {})


def one_metrics_file() -> str:
    """The pipeline's metrics file (dvc.yaml declares one: the summary the report stage writes)."""
    paths = metrics_files()
    if len(paths) != 1:
        raise LabError(f"dvc.yaml declares {len(paths)} metrics files; the leaderboard reads one summary")
    return str(paths[0])


def plot(board: leaderboard.Leaderboard, path: Path) -> None:
    """Each run's headline gain over the base model with its interval, in table order, the baseline
    highlighted and the baseline's seed-replicate range as a shaded band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [e for e in board.entries if leaderboard.headline(e.run, board.metric)]
    fig, ax = plt.subplots(figsize=(7, 1.6 + 0.35 * max(len(shown), 1)))
    if board.spread is not None:
        band = board.spread["difference"]
        ax.axvspan(band["min"], band["max"], color="tab:gray", alpha=0.25,
                   label=f"seed replicates' range ({len(board.spread['runs'])} runs)")
    ax.axvline(0.0, color="black", linewidth=0.8, linestyle=":")
    for position, entry in enumerate(shown):
        test = leaderboard.headline(entry.run, board.metric)
        low, high = test["difference"] - test["ci_low"], test["ci_high"] - test["difference"]
        color = "tab:red" if entry.run.is_baseline else "tab:blue"
        ax.errorbar(test["difference"], position, xerr=[[max(low, 0.0)], [max(high, 0.0)]], fmt="o", color=color,
                    capsize=3, markersize=8 if entry.run.is_baseline else 5,
                    label="baseline" if entry.run.is_baseline else None)
    ax.set_yticks(range(len(shown)), [e.run.name for e in shown])
    for tick, entry in zip(ax.get_yticklabels(), shown, strict=True):
        tick.set_fontweight("bold" if entry.run.is_baseline else "normal")
    ax.set_ylim(len(shown) - 0.5, -0.5)  # the table's order, top to bottom
    ax.set_xlabel(f"{metric_label(board.metric)}, fine-tuned − base model "
                  f"({confidence_percent(board.confidence)} paired-bootstrap CI)")
    ax.set_title("Experiments by validation loss (lowest at the top)", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--markdown", type=Path, default=leaderboard_report.MARKDOWN_FILE)
    parser.add_argument("--plot", type=Path, default=leaderboard_report.PLOT_FILE)
    parser.add_argument("--exp-show-json", type=Path, help="a saved `dvc exp show --json` instead of running it")
    args = parser.parse_args()
    # The pipeline's paths, from dvc.yaml: its one metrics file, and the fine-tuned predictions every run commits.
    summary_file = one_metrics_file()
    predictions_file = str(stage_flag_path("evaluate_finetuned", "--predictions"))
    runs = leaderboard.parse_exp_show(exp_show(args.exp_show_json), summary_file)
    config = baseline_config(runs[0].rev)
    # A queued or failed run's commit holds its baseline's files, not results of its own.
    predictions = {run.rev: committed_rows(run.rev, predictions_file) for run in runs if run.problem is None}
    compare = config.compare
    board = leaderboard.build(runs, predictions, compare.headline_metric, compare.bootstrap_resamples,
                              compare.confidence, config.seed)
    write_text(args.markdown, leaderboard_report.markdown(board))
    plot(board, args.plot)
    print(f"leaderboard: {len(runs) - 1} experiment(s) and the baseline -> {args.markdown}, {args.plot}")


if __name__ == "__main__":
    run_stage(main)
