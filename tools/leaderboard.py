"""Leaderboard of DVC experiments: metrics/leaderboard.md and metrics/leaderboard.png.

usage: python tools/leaderboard.py [--markdown metrics/leaderboard.md] [--plot metrics/leaderboard.png]
                                   [--exp-show-json FILE | --snapshot DIR] [--save-snapshot DIR] [--baseline REV]

Run it from the repository root after a sweep (`dvc exp run --queue -S ...`, then `dvc queue start`).
It is not a pipeline stage because it reads every experiment: it takes `dvc exp show --json` (or a
saved copy of it, --exp-show-json), reads each run's per-example predictions from git (`git show
REV:PATH`: every experiment is a commit), and ranks the runs with lab/leaderboard/board.py under the
bootstrap settings (`seed`, `compare.*`) of the baseline commit's params.yaml. The baseline is HEAD, or
the commit --baseline names (a sha, a prefix of one or a branch; live, any git revision).

--save-snapshot DIR also writes everything the board was built from to DIR (lab/leaderboard/snapshot.py;
metrics/leaderboard is the committed one), and --snapshot DIR builds from such a folder alone, with no
git and no dvc: a clone, which has none of the experiments, rebuilds the committed board byte for byte.
Every output is written atomically.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from lab.core.cli import run_stage
from lab.core.errors import LabError
from lab.core.io import atomic_open, write_text
from lab.core.params import PARAMS_FILE
from lab.core.pipeline_files import committed_text, metrics_files, stage_flag_path
from lab.eval.scoring import metric_label
from lab.leaderboard import board as leaderboard
from lab.leaderboard import markdown as leaderboard_report
from lab.leaderboard import snapshot
from lab.report.tables import confidence_percent


def exp_show(saved: Path | None, rev: str | None) -> list[dict[str, Any]]:
    """`dvc exp show --json` of the repository in the working directory, for commit `rev` (HEAD when None),
    or a saved copy of it."""
    if saved is not None:
        try:
            return json.loads(saved.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise LabError(f"{saved}: not valid JSON ({error.msg}, line {error.lineno})") from None
    # The running interpreter's dvc: the one installed beside the lab, whatever PATH says.
    command = [sys.executable, "-m", "dvc", "exp", "show", "--json", *(["--rev", rev] if rev else [])]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise LabError(f"`dvc exp show --json` failed: {result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout)


def resolve(rev: str) -> str:
    """The full sha of a git revision (a sha, a prefix, a branch, HEAD~3 ...)."""
    result = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise LabError(f"baseline {rev!r} is not a commit of this repository")
    return result.stdout.strip()


def live_inputs(saved: Path | None, baseline: str | None) -> snapshot.Inputs:
    """The board's inputs from `dvc exp show` (or its saved copy) and git: the baseline's params, and the
    fine-tuned predictions (the path dvc.yaml declares) of every run with results."""
    if baseline is not None and saved is None:
        baseline = resolve(baseline)
    payload = exp_show(saved, baseline)
    # The pipeline's paths, from dvc.yaml: its one metrics file, and the fine-tuned predictions every run commits.
    summary_file = one_metrics_file()
    predictions_file = str(stage_flag_path("evaluate_finetuned", "--predictions"))
    runs = leaderboard.parse_exp_show(payload, summary_file, baseline)
    # After `dvc exp run` the workspace holds the last experiment's params: the baseline commit's count.
    params = committed_text(runs[0].rev, str(PARAMS_FILE))
    if params is None:
        raise LabError(f"commit {runs[0].rev[:7]} has no {PARAMS_FILE}")
    # A queued or failed run's commit holds its baseline's files, not results of its own.
    predictions = {run.rev: committed_text(run.rev, predictions_file) for run in runs if run.problem is None}
    for run in runs:
        if run.rev in predictions and predictions[run.rev] is None:
            print(f"leaderboard: warning: {run.name} ({run.rev[:7]}) has no {predictions_file}", file=sys.stderr)
    return snapshot.Inputs(payload, runs[0].rev, params, summary_file, predictions_file, predictions)


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


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--markdown", type=Path, default=leaderboard_report.MARKDOWN_FILE)
    parser.add_argument("--plot", type=Path, default=leaderboard_report.PLOT_FILE)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--exp-show-json", type=Path, help="a saved `dvc exp show --json` instead of running it")
    source.add_argument("--snapshot", type=Path, help="build from this snapshot folder alone (no git, no dvc)")
    parser.add_argument("--save-snapshot", type=Path, help=f"also write the inputs as a snapshot folder "
                        f"(the committed one: {snapshot.SNAPSHOT_DIR})")
    parser.add_argument("--baseline", help="the baseline commit (sha, prefix or branch); default: HEAD, "
                        "or the snapshot's recorded baseline")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.snapshot is not None:
        inputs = snapshot.load(args.snapshot)
        if args.baseline is not None:
            snapshot.check_baseline(inputs, args.baseline)
    else:
        inputs = live_inputs(args.exp_show_json, args.baseline)
    board = snapshot.build_board(inputs)
    if args.save_snapshot is not None:
        snapshot.save(inputs, args.save_snapshot)
    write_text(args.markdown, leaderboard_report.markdown(board))
    plot(board, args.plot)
    saved = f", snapshot {args.save_snapshot}" if args.save_snapshot is not None else ""
    print(f"leaderboard: {len(board.entries) - 1} experiment(s) and the baseline -> {args.markdown}, {args.plot}"
          f"{saved}")


if __name__ == "__main__":
    run_stage(main)
