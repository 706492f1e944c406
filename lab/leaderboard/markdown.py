"""The leaderboard rendered as markdown: the ranked table, the seed-noise table and the sentence
computed from them (lab.leaderboard.board builds what they show)."""

from __future__ import annotations

from pathlib import Path

from lab.core.summary import TRAIN_SECONDS, VALIDATION_LOSS
from lab.eval.scoring import metric_label
from lab.leaderboard.board import (
    MISSING,
    TABLE_METRICS,
    Entry,
    Leaderboard,
    Run,
    format_params,
    headline,
)
from lab.report.tables import confidence_percent, interval, p_value

# Where tools/leaderboard.py writes by default, and docs/experiments.md quotes from.
MARKDOWN_FILE = Path("metrics/leaderboard.md")
PLOT_FILE = Path("metrics/leaderboard.png")


def survives(board: Leaderboard, entry: Entry) -> bool:
    """Whether this run's difference from the baseline survives Holm's correction at 1 - confidence."""
    return entry.holm_p is not None and entry.holm_p <= 1.0 - board.confidence


def adjusted_p(entry: Entry) -> str:
    """The Holm-adjusted p as printed: a p at the bootstrap's floor is an upper bound, and so is the
    adjusted p built on it ("<0.002")."""
    return f"{'<' if entry.gain and entry.gain['p_value_at_floor'] else ''}{entry.holm_p:.3f}"


def _rouge_cell(run: Run, metric: str) -> str:
    test = headline(run, metric)
    if test is None:
        return MISSING
    return f"{test['finetuned']:.4f} ({test['difference']:+.3f} {interval(test['ci_low'], test['ci_high'], True)})"


def _name_cell(entry: Entry) -> str:
    run = entry.run
    name = f"**{run.name}** (baseline)" if run.is_baseline else run.name
    if entry.seed_replicate:
        name += " (seed replicate)"
    return f"{name}: {run.problem}" if run.problem else name


def _gain_cells(board: Leaderboard, entry: Entry) -> list[str]:
    """Gain over the baseline [CI], p, Holm-adjusted p, and whether the difference survives."""
    if entry.gain is None:
        return [entry.gain_note or MISSING, "", "", ""]
    gain = entry.gain
    verdict = "no"
    if survives(board, entry):
        verdict = "**yes**, a gain" if gain["difference"] > 0 else "yes, a loss"
    return [f"{gain['difference']:+.3f} {interval(gain['ci_low'], gain['ci_high'], True)}", p_value(gain),
            adjusted_p(entry), verdict]


def table(board: Leaderboard) -> str:
    """The leaderboard's main table, one row per run, in rank order."""
    ci, label = confidence_percent(board.confidence), metric_label(board.metric)
    alpha = f"{1 - board.confidence:.3g}"
    header = (["Rank", "Experiment", "Params vs baseline", "Validation loss"]
              + [f"{metric_label(m)} [{ci} CI vs base]" for m in TABLE_METRICS]
              + ["Train time", f"{label} gain over baseline [{ci} CI]", "p", "Holm p", f"Survives Holm at {alpha}"])
    lines = ["| " + " | ".join(header) + " |", "|---|---|---|" + "---:|" * (len(header) - 3)]
    rank = 0
    for entry in board.entries:
        rank += entry.validation_loss is not None
        runtime = (entry.run.summary or {}).get(TRAIN_SECONDS) if entry.run.problem is None else None
        cells = [str(rank) if entry.validation_loss is not None else MISSING, _name_cell(entry),
                 format_params(entry.changed) or MISSING,
                 MISSING if entry.validation_loss is None else f"{entry.validation_loss:.4f}",
                 *[_rouge_cell(entry.run, m) for m in TABLE_METRICS],
                 MISSING if runtime is None else f"{runtime:,.0f} s", *_gain_cells(board, entry)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def seed_table(board: Leaderboard) -> str:
    """The baseline's seed noise: spread of the headline metric over the baseline and its seed replicates."""
    spread, label = board.spread, metric_label(board.metric)
    if spread is None:
        return ("No seed replicates of the baseline have results, so seed noise is unknown: "
                "`dvc exp run --queue -S train.seed=1,2` and `dvc queue start` measure it.")
    runs = ", ".join(f"{name} (training seed {seed})" for name, seed in spread["runs"])
    # In this lab the seed also draws the eval sample: say when the spread includes that noise too.
    resampled = any(e.seed_replicate and e.gain_note.startswith("not comparable") for e in board.entries)
    note = " Their eval samples differ, so the spread holds eval-sample noise as well as training noise." \
        if resampled else ""
    lines = [f"{len(spread['runs'])} runs: {runs}.{note}", "",
             "| Over the seed replicates | Min | Max | Max − min | SD |", "|---|---:|---:|---:|---:|"]
    for key, what in (("finetuned", f"{label}, fine-tuned"), ("difference", f"{label}, fine-tuned − base")):
        s = spread[key]
        lines.append(f"| {what} | {s['min']:.4f} | {s['max']:.4f} | {s['max'] - s['min']:.4f} | {s['sd']:.4f} |")
    return "\n".join(lines)


def _seed_clause(board: Leaderboard, value: float) -> str:
    spread = board.spread
    if spread is None:
        return " Seed noise is unknown: no seed replicates of the baseline have results."
    low, high = spread["finetuned"]["min"], spread["finetuned"]["max"]
    where = "above" if value > high else "below" if value < low else "within"
    return (f" Its fine-tuned {metric_label(board.metric)}, {value:.4f}, lies {where} the range of the baseline's "
            f"{len(spread['runs'])} seed replicates [{low:.4f}, {high:.4f}] (SD {spread['finetuned']['sd']:.4f}).")


def summary(board: Leaderboard) -> str:
    """The sentence on which run is best (lowest validation loss) and whether its gain is real, from the table."""
    label, ranked = metric_label(board.metric), [e for e in board.entries if e.validation_loss is not None]
    if not ranked:
        return (f"No run records a validation loss (`{VALIDATION_LOSS}` in its summary), so none is picked; "
                "the eval sample's scores are not used to pick one.")
    best = ranked[0]
    if best.run.is_baseline:
        return (f"The baseline `{best.run.name}` has the lowest validation loss ({best.validation_loss:.4f}): "
                "no experiment improves on it by the selection criterion.")
    baseline = next(e for e in board.entries if e.run.is_baseline)
    base_loss = MISSING if baseline.validation_loss is None else f"{baseline.validation_loss:.4f}"
    text = (f"`{best.run.name}` ({format_params(best.changed)}) has the lowest validation loss "
            f"({best.validation_loss:.4f}; baseline {base_loss}).")
    if best.seed_replicate:
        text += " It differs from the baseline only in its seed: that is seed noise, not a better setting."
    if best.gain is None:
        text += f" Its {label} cannot be compared with the baseline's: {best.gain_note}."
    else:
        gain, alpha = best.gain, f"{1 - board.confidence:.3g}"
        verdict = "survives" if survives(board, best) else "does not survive"
        change = "gain over" if gain["difference"] >= 0 else "loss against"
        text += (f" Its {label} {change} the baseline, {gain['difference']:+.3f} "
                 f"{interval(gain['ci_low'], gain['ci_high'], True)}, {verdict} Holm's correction over "
                 f"{len(board.compared)} compared experiment(s) at {alpha} (adjusted p {adjusted_p(best)}).")
    test = headline(best.run, board.metric)
    return text + (_seed_clause(board, test["finetuned"]) if test else "")


def markdown(board: Leaderboard) -> str:
    """metrics/leaderboard.md: the computed summary, the table, how to read it, and the seed noise."""
    ci, label = confidence_percent(board.confidence), metric_label(board.metric)
    baseline = next(e for e in board.entries if e.run.is_baseline).run
    experiments = len(board.entries) - 1
    return "\n".join([
        "# Leaderboard of experiments", "",
        f"Baseline: `{baseline.name}` (`{baseline.rev[:7]}`) and {experiments} experiment(s). Runs are ranked by "
        "validation loss, lowest first (none recorded: last): model selection never looks at the eval sample, "
        "whose scores are shown only to measure the run selected.", "",
        summary(board), "", table(board), "",
        f"ROUGE columns: the fine-tuned model's score on the eval sample, then its difference from the base model "
        f"with the {ci} paired-bootstrap interval (the compare stage's). Gain over baseline: paired bootstrap "
        f"({board.resamples:,} resamples, seed {board.seed}) of each experiment's per-example {label} minus the "
        f"baseline's on the same eval examples; {len(board.compared)} experiment(s) compared, their p-values "
        "corrected together with Holm–Bonferroni. \"Not comparable\": the experiment's eval sample is not the "
        "baseline's.", "",
        "## Seed noise", "", seed_table(board), "",
    ])
