"""A leaderboard snapshot: everything metrics/leaderboard.md is built from, committed beside it, so that
the board can be rebuilt byte for byte without the experiments (DVC keeps them in refs/exps, which a
clone does not fetch) and without git or dvc.

A snapshot is a folder (metrics/leaderboard/ by default; not a DVC output) holding:

    snapshot.json            the manifest: format, the baseline commit's rev, the pipeline's summary and
                             fine-tuned predictions paths, and each run with results: name, rev, file
    exp_show.json            the whole `dvc exp show --json` payload the board was built from
    params.yaml              params.yaml as the baseline commit holds it (the bootstrap's settings)
    predictions/REV.jsonl    each run's fine-tuned predictions as its commit holds them, by full rev

The baseline is a fact of the manifest, not a guess: the commit the board was built against.
The files are written in a fixed order and form (the payload's order, the runs' order), so the same
inputs give the same bytes. Reading checks every file and names the one that is missing or malformed.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lab.core.errors import LabError
from lab.core.io import atomic_dir, write_json, write_text
from lab.leaderboard.board import PARAMS_FILE, Leaderboard, baseline_entry, build, flatten, parse_exp_show

SNAPSHOT_DIR = Path("metrics/leaderboard")
MANIFEST, EXP_SHOW, PREDICTIONS_DIR = "snapshot.json", "exp_show.json", "predictions"
FORMAT = 1
# The baseline's params the board is computed under, and the types they must have.
BOOTSTRAP_PARAMS = {"seed": int, "compare.headline_metric": str, "compare.bootstrap_resamples": int,
                    "compare.confidence": float}
_KINDS = {int: "an integer", str: "a string", float: "a number", list: "an array", dict: "an object"}
_REV = re.compile(r"[0-9a-f]{7,64}")


@dataclass(frozen=True)
class Inputs:
    """What the leaderboard is built from, read live (git and dvc) or from a snapshot."""

    payload: list[dict[str, Any]]  # `dvc exp show --json`
    baseline: str  # the baseline commit's full rev, as the payload lists it
    params: str  # params.yaml as the baseline commit holds it
    summary_file: str  # the pipeline's metrics file (each run's summary, in the payload)
    predictions_file: str  # the fine-tuned predictions path dvc.yaml declares
    predictions: dict[str, str | None]  # rev -> that file as the run's commit holds it; None: the commit has none


def bootstrap_settings(params_text: str, source: str) -> tuple[str, int, float, int]:
    """The headline metric, resamples, confidence and seed of a params.yaml's text (read as they are, not
    through today's LabConfig: an older commit's params.yaml need not match today's schema)."""
    try:
        tree = yaml.safe_load(params_text)
    except yaml.YAMLError as error:
        raise LabError(f"{source}: not valid YAML ({error})") from None
    flat = flatten(tree) if isinstance(tree, Mapping) else {}
    for key, kind in BOOTSTRAP_PARAMS.items():
        value = flat.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else kind):
            raise LabError(f"{source}: `{key}` is {value!r}, expected {_KINDS[kind]}")
    return (flat["compare.headline_metric"], flat["compare.bootstrap_resamples"], float(flat["compare.confidence"]),
            flat["seed"])


def parse_rows(text: str, source: str) -> list[dict[str, Any]]:
    """A JSON-lines file's rows."""
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise LabError(f"{source}:{number}: invalid JSON ({error.msg})") from None
    return rows


def build_board(inputs: Inputs) -> Leaderboard:
    """The leaderboard of `inputs`, under the bootstrap settings of the baseline's params.yaml."""
    runs = parse_exp_show(inputs.payload, inputs.summary_file, inputs.baseline)
    lacking = [f"{run.name} ({run.rev[:7]})" for run in runs
               if run.problem is None and run.rev not in inputs.predictions]
    if lacking:
        raise LabError(f"no {inputs.predictions_file} recorded for run(s) with results: {', '.join(lacking)}")
    metric, resamples, confidence, seed = bootstrap_settings(inputs.params, f"{PARAMS_FILE} of {inputs.baseline[:7]}")
    rows = {rev: None if text is None else parse_rows(text, f"{inputs.predictions_file} of {rev[:7]}")
            for rev, text in inputs.predictions.items()}
    return build(runs, rows, metric, resamples, confidence, seed)


def prediction_name(rev: str) -> str:
    """A run's predictions file in the snapshot, relative to it."""
    if not _REV.fullmatch(rev):
        raise LabError(f"run rev {rev!r} is not a commit sha: its predictions cannot be named by it")
    return f"{PREDICTIONS_DIR}/{rev}.jsonl"


def manifest(inputs: Inputs) -> dict[str, Any]:
    """snapshot.json: the baseline and the paths, and each run with results in the board's input order."""
    runs = parse_exp_show(inputs.payload, inputs.summary_file, inputs.baseline)
    listed = [{"name": run.name, "rev": run.rev,
               "predictions": None if inputs.predictions[run.rev] is None else prediction_name(run.rev)}
              for run in runs if run.rev in inputs.predictions]
    return {"format": FORMAT, "baseline": inputs.baseline, "summary_file": inputs.summary_file,
            "predictions_file": inputs.predictions_file, "exp_show": EXP_SHOW, "params": PARAMS_FILE, "runs": listed}


def portable_payload(payload: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The payload less each queued run's `executor.local` (the queue worker's log path under the checkout, its pid
    and task id): where and how one machine ran the task, nothing the board reads (it reads `executor.state`)."""
    portable = copy.deepcopy(payload)
    for commit in portable:
        for group in commit.get("experiments") or []:
            if isinstance(group.get("executor"), dict):
                group["executor"].pop("local", None)
    return portable


def save(inputs: Inputs, folder: Path) -> None:
    """Write the snapshot of `inputs` to `folder`, replacing a previous snapshot there as a whole (atomically:
    a failed write leaves the old one); a folder that holds anything but a snapshot is left alone."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())) and not (folder / MANIFEST).is_file():
        raise LabError(f"{folder}: exists and is not a leaderboard snapshot (no {MANIFEST}); not replacing it")
    described = manifest(inputs)
    with atomic_dir(folder) as staging:
        write_json(staging / EXP_SHOW, portable_payload(inputs.payload))
        write_text(staging / PARAMS_FILE, inputs.params)
        for run in described["runs"]:
            if run["predictions"] is not None:
                write_text(staging / run["predictions"], inputs.predictions[run["rev"]])
        write_json(staging / MANIFEST, described)


def _read(path: Path, folder: Path) -> str:
    if not path.is_file():
        raise LabError(f"{path}: missing from the leaderboard snapshot {folder}")
    return path.read_text(encoding="utf-8")


def _read_json(path: Path, folder: Path, kind: type) -> Any:
    try:
        value = json.loads(_read(path, folder))
    except json.JSONDecodeError as error:
        raise LabError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None
    if not isinstance(value, kind):
        raise LabError(f"{path}: expected {_KINDS[kind]} (JSON)")
    return value


def _run_file(run: Any, path: Path) -> tuple[str, str | None]:
    """A manifest run's rev and predictions file, checked: the file is the one its rev names."""
    if not isinstance(run, Mapping) or not isinstance(run.get("rev"), str) or "predictions" not in run:
        raise LabError(f"{path}: malformed run entry {run!r} (expected name, rev and predictions)")
    if run["predictions"] not in (None, prediction_name(run["rev"])):
        raise LabError(f"{path}: run {run['rev'][:7]}'s predictions must be {prediction_name(run['rev'])} or null")
    return run["rev"], run["predictions"]


def load(folder: Path) -> Inputs:
    """The inputs a snapshot folder holds (no git, no dvc)."""
    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        raise LabError(f"{folder}: no leaderboard snapshot there (no {MANIFEST}); write one after a sweep with "
                       f"`python tools/leaderboard.py --save-snapshot {folder}`")
    path = folder / MANIFEST
    described = _read_json(path, folder, dict)
    for key, kind in (("format", int), ("baseline", str), ("summary_file", str), ("predictions_file", str),
                      ("runs", list)):
        if not isinstance(described.get(key), kind):
            raise LabError(f"{path}: malformed manifest: `{key}` is {described.get(key)!r}, expected {_KINDS[kind]}")
    if described["format"] != FORMAT:
        raise LabError(f"{path}: snapshot format {described['format']}, this lab reads format {FORMAT}")
    payload = _read_json(folder / EXP_SHOW, folder, list)
    if not all(isinstance(entry, Mapping) for entry in payload):
        raise LabError(f"{folder / EXP_SHOW}: expected `dvc exp show --json`'s array of objects")
    files = dict(_run_file(run, path) for run in described["runs"])
    predictions = {rev: None if name is None else _read(folder / name, folder) for rev, name in files.items()}
    return Inputs(payload, described["baseline"], _read(folder / PARAMS_FILE, folder), described["summary_file"],
                  described["predictions_file"], predictions)


def check_baseline(inputs: Inputs, wanted: str) -> None:
    """A snapshot holds one baseline's params: `wanted` must name that commit."""
    rev = str(baseline_entry([e for e in inputs.payload if e.get("rev") != "workspace"], wanted).get("rev"))
    if rev != inputs.baseline:
        raise LabError(f"baseline {wanted!r} is {rev[:7]}, but the snapshot was built against {inputs.baseline[:7]} "
                       f"and holds only that commit's {PARAMS_FILE}")
