"""The leaderboard of DVC experiments: every run of a sweep beside the baseline commit, ranked honestly.

Pure logic over `dvc exp show --json` and the runs' per-example predictions (tools/leaderboard.py does
the reading and writing). What keeps it honest:

- Runs are ranked by validation loss (the summary's validation_loss, lab/core/summary.py), never by the eval
  sample's scores, so the eval sample stays a fair measure of the run that gets picked.
- A run's gain over the baseline is a paired bootstrap of its per-example headline metric against
  the baseline's on the same eval examples (a run whose eval sample differs is "not comparable"),
  and all those p-values get a Holm-Bonferroni correction: among many runs, some win by luck.
- Runs that differ from the baseline only in `seed` are its seed replicates: how far the headline
  metric moves with nothing changed is the yardstick for any gain.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lab.core.errors import LabError
from lab.core.summary import VALIDATION_LOSS
from lab.eval.scoring import metric_value
from lab.eval.stats import paired_bootstrap

PARAMS_FILE = "params.yaml"
# A run that changes only these is a seed replicate of the baseline. train.seed keeps the split and the
# eval sample (training noise only); the top-level seed also redraws them.
SEED_PARAMS = ("seed", "train.seed")
TABLE_METRICS = ("rouge1", "rouge2", "rougeL")
MISSING = "–"


@dataclass(frozen=True)
class Run:
    """The baseline commit or one of its experiments, as `dvc exp show --json` lists it."""

    name: str
    rev: str
    params: dict[str, Any]  # flattened: {"train.lora.r": 16, ...}
    summary: dict[str, Any] | None  # the run's metrics/summary.json (lab/core/summary.py); None when it has none
    is_baseline: bool = False
    problem: str | None = None  # why the run has no results: failed, queued, running, a missing file


@dataclass
class Entry:
    """One row of the leaderboard: a run, how it differs from the baseline, and its gain over it."""

    run: Run
    changed: dict[str, Any]
    validation_loss: float | None
    seed_replicate: bool
    gain: dict[str, Any] | None = None  # lab.eval.stats.paired_bootstrap of this run minus the baseline
    gain_note: str = ""  # why there is no gain: "baseline", "not comparable (...)", ...
    holm_p: float | None = None


@dataclass
class Leaderboard:
    """The rows in rank order, with the settings every number was computed under."""

    entries: list[Entry]
    metric: str
    resamples: int
    confidence: float
    seed: int
    spread: dict[str, Any] | None = None  # seed_spread of the entries

    @property
    def compared(self) -> list[Entry]:
        return [e for e in self.entries if e.gain is not None]


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested params as dotted keys: {"train": {"lora": {"r": 16}}} -> {"train.lora.r": 16}. Lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def param_diff(params: Mapping[str, Any], baseline: Mapping[str, Any]) -> dict[str, Any]:
    """The flattened params of a run that differ from the baseline's, sorted by key (a key the run
    lacks shows as None)."""
    return {key: params.get(key) for key in sorted(set(params) | set(baseline))
            if key not in params or key not in baseline or params[key] != baseline[key]}


def format_params(changed: Mapping[str, Any]) -> str:
    """`key=value` pairs as `dvc exp run -S` takes them; values in JSON (0.0001, true, null, [...])."""
    return ", ".join(f"{key}={value if isinstance(value, str) else json.dumps(value)}"
                     for key, value in changed.items())


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order: the k-th smallest of m is multiplied by
    m - k + 1, capped at 1, and made non-decreasing; a test is rejected at alpha when its adjusted p <= alpha."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [0.0] * len(p_values)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def _file_data(data: Mapping[str, Any], path: str) -> tuple[dict[str, Any] | None, str]:
    """One metrics file's content from an exp show entry, or None and why not."""
    entry = (data.get("metrics") or {}).get(path) or {}
    if "data" in entry:
        return entry["data"], ""
    error = entry.get("error") or {}
    return None, f"{path}: {error.get('type') or 'error'}" if error else f"no {path}"


def _run(entry: Mapping[str, Any], name: str | None, is_baseline: bool, summary_file: str,
         state: str | None = None) -> Run:
    data = entry.get("data") or {}
    params: dict[str, Any] = {}
    for path, content in (data.get("params") or {}).items():
        # params.yaml keys are shown as `dvc exp run -S` takes them; other files' keys keep the file name.
        params.update(flatten((content or {}).get("data") or {}, "" if path == PARAMS_FILE else f"{path}:"))
    summary, summary_problem = _file_data(data, summary_file)
    error = entry.get("error")
    if error:
        problem: str | None = f"failed: {error.get('msg') or error.get('type') or 'error'}"
    elif state in ("queued", "running"):
        problem = state
    else:
        problem = None if summary is not None else summary_problem
    return Run(name=name or str(entry["rev"])[:7], rev=str(entry["rev"]), params=params,
               summary=None if problem else summary, is_baseline=is_baseline, problem=problem)


def baseline_entry(commits: Sequence[Mapping[str, Any]], wanted: str | None) -> Mapping[str, Any]:
    """The commit entry of `dvc exp show --json` that is the baseline: the first listed (HEAD, unless dvc was
    asked for another) when `wanted` is None, else the one named `wanted` (a branch or tag) or whose rev
    starts with it (a sha or a prefix of one, at least 4 hex digits)."""
    if wanted is None:
        return commits[0]
    found = [c for c in commits if c.get("name") == wanted]
    if not found and len(wanted) >= 4 and all(ch in "0123456789abcdef" for ch in wanted.lower()):
        found = [c for c in commits if str(c.get("rev", "")).startswith(wanted.lower())]
    listed = ", ".join(f"{str(c.get('rev'))[:7]} ({c.get('name') or 'no name'})" for c in commits)
    if not found:
        raise LabError(f"baseline {wanted!r} is not a commit of the `dvc exp show` payload (its commits: {listed})")
    if len(found) > 1:
        raise LabError(f"baseline {wanted!r} is ambiguous in the `dvc exp show` payload (its commits: {listed})")
    return found[0]


def parse_exp_show(payload: Sequence[Mapping[str, Any]], summary_file: str, baseline: str | None = None) -> list[Run]:
    """The baseline commit and its experiments from `dvc exp show --json`, baseline first; each run's
    results are its `summary_file` (the pipeline's metrics file, lab/core/summary.py).

    The workspace entry is skipped (its results are in no commit). The baseline is the first commit
    listed (HEAD, unless dvc was asked for more), or the commit `baseline` names (baseline_entry); only
    its experiments are kept: another commit's experiments have another baseline.
    """
    commits = [entry for entry in payload if entry.get("rev") != "workspace"]
    if not commits:
        raise LabError("`dvc exp show` lists no commit: commit the pipeline and run experiments first")
    head = baseline_entry(commits, baseline)
    runs = [_run(head, head.get("name"), True, summary_file)]
    for group in head.get("experiments") or []:
        revs = group.get("revs") or []
        if revs:
            state = (group.get("executor") or {}).get("state")
            runs.append(_run(revs[0], revs[0].get("name") or group.get("name"), False, summary_file, state))
    return runs


def align(reference_ids: Sequence[Any], rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]] | None:
    """`rows` in the order of `reference_ids` (the baseline's eval examples), or None when the two
    eval samples are not the same examples."""
    by_id = {row.get("id"): row for row in rows}
    if len(by_id) != len(rows) or len(set(reference_ids)) != len(reference_ids) or set(by_id) != set(reference_ids):
        return None
    return [by_id[i] for i in reference_ids]


def headline(run: Run, metric: str) -> dict[str, Any] | None:
    """The summary's test of fine-tuned vs base on `metric` for this run, if it has one."""
    return (run.summary or {}).get(metric)


def _gain(baseline_rows: Sequence[Mapping[str, Any]] | None, rows: Sequence[Mapping[str, Any]] | None,
          metric: str, resamples: int, confidence: float, seed: int) -> tuple[dict[str, Any] | None, str]:
    """The paired bootstrap of a run's per-example `metric` minus the baseline's, or None and why not."""
    if not baseline_rows:
        return None, "baseline has no predictions"
    if not rows:
        return None, "no predictions"
    aligned = align([row.get("id") for row in baseline_rows], rows)
    if aligned is None:
        return None, "not comparable (different eval sample)"
    try:
        values = [[metric_value(row, metric) for row in side] for side in (baseline_rows, aligned)]
    except KeyError:
        return None, f"no per-example {metric}"
    return paired_bootstrap(values[0], values[1], resamples, seed, confidence), ""


def training_seed(params: Mapping[str, Any]) -> Any:
    """The seed a run trained with: train.seed, else the top-level seed (lab.core.config.LabConfig.train_seed)."""
    return params.get("train.seed") if params.get("train.seed") is not None else params.get("seed")


def seed_spread(entries: Sequence[Entry], metric: str) -> dict[str, Any] | None:
    """Min, max and sample SD of the baseline's and its seed replicates' fine-tuned `metric` and of its
    difference from the base model; None with fewer than two such runs."""
    members = [e for e in entries if (e.run.is_baseline or e.seed_replicate) and headline(e.run, metric)]
    if len(members) < 2:
        return None
    spread: dict[str, Any] = {"runs": [(e.run.name, training_seed(e.run.params)) for e in members]}
    for key in ("finetuned", "difference"):
        values = np.array([headline(e.run, metric)[key] for e in members], dtype=np.float64)
        spread[key] = {"min": float(values.min()), "max": float(values.max()), "sd": float(values.std(ddof=1))}
    return spread


def build(runs: Sequence[Run], predictions: Mapping[str, Sequence[Mapping[str, Any]] | None], metric: str,
          resamples: int, confidence: float, seed: int) -> Leaderboard:
    """Rank the runs (baseline first in `runs`) by validation loss and test each one's gain over the baseline.

    `predictions` maps a run's rev to its fine-tuned per-example rows (metrics/predictions/finetuned.jsonl).
    """
    baseline = runs[0]
    if not baseline.is_baseline:
        raise ValueError("the first run must be the baseline")
    entries = []
    for run in runs:
        changed = {} if run.is_baseline else param_diff(run.params, baseline.params)
        loss = (run.summary or {}).get(VALIDATION_LOSS) if run.problem is None else None
        replicate = bool(changed) and set(changed) <= set(SEED_PARAMS)
        entry = Entry(run, changed, None if loss is None else float(loss), replicate)
        if run.is_baseline:
            entry.gain_note = "baseline"
        elif run.problem is None:
            entry.gain, entry.gain_note = _gain(predictions.get(baseline.rev), predictions.get(run.rev), metric,
                                                resamples, confidence, seed)
        entries.append(entry)
    tested = [e for e in entries if e.gain is not None]
    for entry, adjusted in zip(tested, holm([e.gain["p_value"] for e in tested]), strict=True):
        entry.holm_p = adjusted
    # Stable: runs without a validation loss keep dvc's order (baseline first), after the others.
    entries.sort(key=lambda e: (e.validation_loss is None, e.validation_loss or 0.0))
    board = Leaderboard(entries, metric, resamples, confidence, seed)
    board.spread = seed_spread(entries, metric)
    return board
