"""The experiment leaderboard: Holm's correction, param diffs, `dvc exp show --json` parsing, ranking,
gains over the baseline, seed noise, the computed sentence, snapshots (lab/leaderboard/snapshot.py), and
the CLI on a real git + DVC repository."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import runpy
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lab.eval.stats import paired_bootstrap
from lab.leaderboard import board as lb
from lab.leaderboard import markdown as report
from lab.leaderboard import snapshot as snap
from lab.report.tables import interval

from .conftest import REPO, make_config

COMPARE = make_config().compare
SEED = make_config().seed
BASE_PARAMS = {"seed": 3407, "lr": 2e-4, "train": {"lora": {"r": 16, "target_modules": ["q_proj", "v_proj"]}},
               "compare": {"headline_metric": "rougeL"}}


# --- Holm ---------------------------------------------------------------------------------------

# statsmodels.stats.multitest.multipletests(p, method="holm") (statsmodels 0.14), typed in.
STATSMODELS_HOLM = [
    ([0.01, 0.04, 0.03, 0.005], [0.03, 0.06, 0.06, 0.02]),
    ([0.002, 0.2, 0.012, 0.04, 0.011, 0.5], [0.012, 0.4, 0.055, 0.12, 0.055, 0.5]),
    ([0.02, 0.02, 0.03], [0.06, 0.06, 0.06]),
]


@pytest.mark.parametrize(("p_values", "expected"), STATSMODELS_HOLM)
def test_holm_equals_statsmodels(p_values: list[float], expected: list[float]) -> None:
    assert lb.holm(p_values) == pytest.approx(expected)


def test_holm_by_hand() -> None:
    # Sorted 0.01, 0.02, 0.2 of m=3 -> 3*0.01, max(0.03, 2*0.02), max(0.04, 1*0.2); capped at 1.
    assert lb.holm([0.2, 0.01, 0.02]) == pytest.approx([0.2, 0.03, 0.04])
    assert lb.holm([0.6, 0.9]) == [1.0, 1.0]
    assert lb.holm([0.04]) == [0.04] and lb.holm([]) == []


# --- params ---------------------------------------------------------------------------------------

def test_flatten_keeps_lists_as_values() -> None:
    assert lb.flatten(BASE_PARAMS) == {"seed": 3407, "lr": 2e-4, "train.lora.r": 16,
                                       "train.lora.target_modules": ["q_proj", "v_proj"],
                                       "compare.headline_metric": "rougeL"}


def test_param_diff_lists_only_what_changed() -> None:
    base = lb.flatten(BASE_PARAMS)
    run = {**base, "lr": 1e-4, "train.lora.r": 32, "train.lora.target_modules": ["q_proj"], "extra": True}
    del run["compare.headline_metric"]
    changed = lb.param_diff(run, base)
    assert changed == {"compare.headline_metric": None, "extra": True, "lr": 1e-4, "train.lora.r": 32,
                       "train.lora.target_modules": ["q_proj"]}
    assert lb.format_params({"lr": 1e-4, "train.lora.r": 32, "model.base": "embedded", "x": None}) == \
        'lr=0.0001, train.lora.r=32, model.base=embedded, x=null'
    assert lb.param_diff(base, dict(base)) == {}


# --- a fabricated `dvc exp show --json` ------------------------------------------------------------

def params(**changes: Any) -> dict[str, Any]:
    tree = json.loads(json.dumps(BASE_PARAMS))
    for key, value in changes.items():
        tree[key] = value
    return tree


SUMMARY = "metrics/summary.json"


def compare_json(finetuned: float, difference: float) -> dict[str, Any]:
    """The summary's tests (lab.core.summary.headline's per-metric part)."""
    return {m: {"base": round(finetuned - difference, 6), "finetuned": finetuned, "difference": difference,
                "ci_low": round(difference - 0.02, 6), "ci_high": round(difference + 0.02, 6), "p_value": 0.01}
            for m in ("rouge1", "rouge2", "rougeL", "semantic")}


def rev_entry(rev: str, name: str | None, tree: dict, compare: dict | None, train: dict | None,
              error: dict | None = None) -> dict[str, Any]:
    """One entry as dvc 3.67 writes it; a missing metrics file shows as its error."""
    missing = {"error": {"type": "FileNotFoundError", "msg": "[Errno 2] No such file or directory"}}
    summary = None if compare is None else {
        **compare, "validation_loss": train["best_validation_loss"], "train_seconds": train["runtime_s"]}
    metrics = {SUMMARY: missing if summary is None else {"data": summary}}
    data = {"rev": rev, "timestamp": "2026-11-27T10:57:46", "params": {"params.yaml": {"data": tree}},
            "metrics": metrics, "deps": {}, "outs": {}, "meta": {}}
    return {"rev": rev, "name": name, "data": data, "error": error, "experiments": None}


def experiment(entry: dict[str, Any], state: str | None = None) -> dict[str, Any]:
    executor = None if state is None else {"state": state, "name": "dvc-task", "local": {}}
    return {"revs": [entry], "executor": executor, "name": entry["name"]}


def exp_show_payload() -> list[dict[str, Any]]:
    """Workspace, the baseline `main` and 4 experiments: a better lr, 2 seed replicates, a failed run."""
    workspace = rev_entry("workspace", None, params(lr=5), None, None)
    baseline = rev_entry("a" * 40, "main", params(), compare_json(0.30, 0.04),
                         {"runtime_s": 268.7, "best_validation_loss": 1.30})
    baseline["experiments"] = [
        experiment(rev_entry("b" * 40, "low-lr", params(lr=1e-4), compare_json(0.34, 0.08),
                             {"runtime_s": 270.2, "best_validation_loss": 1.10}), "success"),
        experiment(rev_entry("c" * 40, "seed-1", params(seed=1), compare_json(0.29, 0.035),
                             {"runtime_s": 266.0, "best_validation_loss": 1.32})),
        experiment(rev_entry("d" * 40, "seed-2", params(seed=2), compare_json(0.296, 0.05),
                             {"runtime_s": 265.0, "best_validation_loss": 1.29})),
        experiment(rev_entry("e" * 40, "broken", params(lr=5), None, None,
                             {"msg": "Experiment run failed", "type": ""}), "failed"),
    ]
    return [workspace, baseline]


def rows(ids: list[str], values: np.ndarray) -> list[dict[str, Any]]:
    return [{"id": i, "scores": {"rouge1": {"fmeasure": float(v)}, "rougeL": {"fmeasure": float(v)}, "semantic": 0.5}}
            for i, v in zip(ids, values, strict=True)]


IDS = [f"ex{i}" for i in range(30)]
BASELINE_VALUES = np.random.default_rng(0).uniform(0.1, 0.5, 30)


def predictions() -> dict[str, list[dict[str, Any]]]:
    """Per-example rows: low-lr gains ~0.04 (listed in another order), seed-1 is noise on the same
    examples, seed-2 was scored on another eval sample."""
    noise = np.random.default_rng(1).normal(0.0, 0.02, 30)
    low_lr = rows(IDS, BASELINE_VALUES + 0.04 + noise)
    return {"a" * 40: rows(IDS, BASELINE_VALUES), "b" * 40: low_lr[::-1],
            "c" * 40: rows(IDS, BASELINE_VALUES + noise), "d" * 40: rows([f"other{i}" for i in range(30)],
                                                                        BASELINE_VALUES)}


def board(payload: list[dict[str, Any]] | None = None) -> lb.Leaderboard:
    runs = lb.parse_exp_show(payload or exp_show_payload(), SUMMARY)
    return lb.build(runs, predictions(), "rougeL", COMPARE.bootstrap_resamples, COMPARE.confidence, SEED)


def test_parse_skips_the_workspace_and_keeps_the_baseline_first() -> None:
    runs = lb.parse_exp_show(exp_show_payload(), SUMMARY)
    assert [r.name for r in runs] == ["main", "low-lr", "seed-1", "seed-2", "broken"]
    assert runs[0].is_baseline and not any(r.is_baseline for r in runs[1:])
    assert runs[1].params["lr"] == 1e-4 and runs[1].params["train.lora.r"] == 16
    assert runs[1].summary["rougeL"]["finetuned"] == 0.34 and runs[1].summary["train_seconds"] == 270.2
    broken = runs[4]
    assert broken.problem == "failed: Experiment run failed" and broken.summary is None
    assert all(r.problem is None for r in runs[:4])


def test_parse_marks_queued_runs_and_needs_a_commit() -> None:
    payload = exp_show_payload()
    queued = rev_entry("f" * 40, None, params(seed=9), None, None)
    queued["data"]["metrics"] = {}
    payload[1]["experiments"].append(experiment(queued, "queued"))
    last = lb.parse_exp_show(payload, SUMMARY)[-1]
    assert (last.name, last.problem, last.summary) == ("fffffff", "queued", None)
    with pytest.raises(lb.LabError, match="no commit"):
        lb.parse_exp_show(payload[:1], SUMMARY)


def test_runs_rank_by_validation_loss_with_the_missing_last() -> None:
    result = board()
    assert [e.run.name for e in result.entries] == ["low-lr", "seed-2", "main", "seed-1", "broken"]
    assert [e.seed_replicate for e in result.entries] == [False, True, False, True, False]
    table = report.table(result).splitlines()
    assert table[2].startswith("| 1 | low-lr | lr=0.0001 | 1.1000 | 0.3400 (+0.080 [+0.060, +0.100])")
    assert "| 3 | **main** (baseline) | – | 1.3000 |" in table[4] and "| 269 s | baseline |" in table[4]
    assert "| 2 | seed-2 (seed replicate) | seed=2 | 1.2900 |" in table[3]
    assert table[6].startswith("| – | broken: failed: Experiment run failed | lr=5 | – | – | – | – | – |")


def test_gains_are_paired_on_the_baselines_examples_and_holm_corrected() -> None:
    result = board()
    by_name = {e.run.name: e for e in result.entries}
    rows_by_rev = predictions()
    values = [[row["scores"]["rougeL"]["fmeasure"] for row in side]
              for side in (rows_by_rev["a" * 40], rows_by_rev["b" * 40][::-1])]
    expected = paired_bootstrap(values[0], values[1], COMPARE.bootstrap_resamples, SEED, COMPARE.confidence)
    assert by_name["low-lr"].gain == expected  # realigned to the baseline's order before pairing
    assert by_name["seed-2"].gain is None and by_name["seed-2"].gain_note == "not comparable (different eval sample)"
    assert by_name["broken"].gain is None and by_name["main"].gain_note == "baseline"
    assert [e.run.name for e in result.compared] == ["low-lr", "seed-1"]
    raw = [by_name["low-lr"].gain["p_value"], by_name["seed-1"].gain["p_value"]]
    assert [by_name["low-lr"].holm_p, by_name["seed-1"].holm_p] == pytest.approx(lb.holm(raw))
    assert report.survives(result, by_name["low-lr"]) and not report.survives(result, by_name["seed-1"])
    cells = {line.split(" | ")[1]: line for line in report.table(result).splitlines()[2:]}
    assert by_name["low-lr"].gain["p_value_at_floor"]  # so its adjusted p is an upper bound
    assert cells["low-lr"].endswith(f"| <0.001 | <{by_name['low-lr'].holm_p:.3f} | **yes**, a gain |")
    assert cells["seed-1 (seed replicate)"].endswith("| no |")
    assert "not comparable (different eval sample) |" in cells["seed-2 (seed replicate)"]


def test_seed_noise_table_covers_the_baseline_and_its_replicates() -> None:
    result = board()
    spread = result.spread
    assert [name for name, _ in spread["runs"]] == ["seed-2", "main", "seed-1"]
    assert [seed for _, seed in spread["runs"]] == [2, 3407, 1]
    assert spread["finetuned"]["min"] == 0.29 and spread["finetuned"]["max"] == 0.30
    assert spread["finetuned"]["sd"] == pytest.approx(statistics.stdev([0.296, 0.30, 0.29]))
    assert spread["difference"]["min"] == 0.035 and spread["difference"]["max"] == 0.05
    text = report.seed_table(result)
    assert ("3 runs: seed-2 (training seed 2), main (training seed 3407), seed-1 (training seed 1). "
            "Their eval samples differ") in text
    sd = statistics.stdev([0.296, 0.30, 0.29])
    assert f"| ROUGE-L, fine-tuned | 0.2900 | 0.3000 | 0.0100 | {sd:.4f} |" in text
    payload = exp_show_payload()
    del payload[1]["experiments"][1:3]
    assert board(payload).spread is None and "seed noise is unknown" in report.seed_table(board(payload))


def test_the_summary_is_computed_from_the_table() -> None:
    result = board()
    best = result.entries[0]
    text = report.summary(result)
    assert text.startswith("`low-lr` (lr=0.0001) has the lowest validation loss (1.1000; baseline 1.3000).")
    gain = best.gain
    assert (f"gain over the baseline, {gain['difference']:+.3f} {interval(gain['ci_low'], gain['ci_high'], True)}, "
            f"survives Holm's correction over 2 compared experiment(s) at 0.05 (adjusted p <{best.holm_p:.3f})") in text
    assert "ROUGE-L, 0.3400, lies above the range of the baseline's 3 seed replicates [0.2900, 0.3000]" in text
    markdown = report.markdown(result)
    assert text in markdown and "2 experiment(s) compared" in markdown and "4 experiment(s)" in markdown
    assert "model selection never looks at the eval sample" in markdown


def with_losses(losses: dict[str, float | None]) -> list[dict[str, Any]]:
    payload = exp_show_payload()
    entries = [payload[1]] + [group["revs"][0] for group in payload[1]["experiments"]]
    for entry in entries:
        if entry["name"] in losses:
            entry["data"]["metrics"][SUMMARY]["data"]["validation_loss"] = losses[entry["name"]]
    return payload


def test_the_summary_follows_the_numbers() -> None:
    baseline_best = report.summary(board(with_losses({"low-lr": 1.4, "seed-2": 1.5})))
    assert baseline_best == ("The baseline `main` has the lowest validation loss (1.3000): no experiment "
                             "improves on it by the selection criterion.")
    replicate_best = report.summary(board(with_losses({"low-lr": 1.4, "seed-2": 1.0})))
    assert "`seed-2` (seed=2) has the lowest" in replicate_best and "that is seed noise" in replicate_best
    assert "cannot be compared with the baseline's: not comparable (different eval sample)" in replicate_best
    assert "lies within the range" in replicate_best
    nothing = report.summary(board(with_losses(dict.fromkeys(["main", "low-lr", "seed-1", "seed-2"]))))
    assert nothing.startswith("No run records a validation loss")


# --- the CLI on a real git + DVC repository ------------------------------------------------------

FAKE_STAGE = '''"""Stands in for the pipeline: a summary and predictions made up from the params, no model."""
import dataclasses
import json
import os

import yaml

EXAMPLES = 24


def outputs(seed, lr, r):
    """The summary (lab/core/summary.py's shape) and the fine-tuned predictions' rows for these params."""
    ids = [f"{seed}-{i}" for i in range(EXAMPLES)]  # the eval sample depends on the seed, as prepare's does
    rows = []
    for i, example in enumerate(ids):
        value = 0.2 + 0.01 * (i % 7) + lr * 200 + 0.005 * ((3 * i + seed + int(lr * 3e4)) % 5)
        scores = {"rouge1": value + 0.05, "rouge2": value - 0.1, "rougeL": value}
        rows.append({"id": example, "scores": {m: {"fmeasure": round(v, 6)} for m, v in scores.items()}})
    tests = {}
    for metric in ("rouge1", "rouge2", "rougeL"):
        finetuned = round(sum(row["scores"][metric]["fmeasure"] for row in rows) / EXAMPLES, 6)
        difference = round(0.01 + lr * 100 + 0.002 * (seed % 3), 6)
        tests[metric] = {"base": round(finetuned - difference, 6), "finetuned": finetuned, "difference": difference,
                         "ci_low": round(difference - 0.02, 6), "ci_high": round(difference + 0.01, 6),
                         "p_value": 0.004}
    summary = {**tests, "train_seconds": 10.0 + r, "train_tokens_per_s": 100.0,
               "validation_loss": round(1.0 + lr * 1000 + (seed % 7) * 0.001, 6)}
    return summary, rows


if __name__ == "__main__":
    with open("params.yaml") as handle:
        params = yaml.safe_load(handle)
    summary, rows = outputs(int(params["seed"]), float(params["lr"]), int(params["train"]["lora"]["r"]))
    os.makedirs("metrics/predictions", exist_ok=True)
    with open("metrics/summary.json", "w") as handle:
        json.dump(summary, handle)
    with open("metrics/predictions/finetuned.jsonl", "w") as handle:
        handle.writelines(json.dumps(row) + "\\n" for row in rows)
'''

FAKE_PIPELINE = """stages:
  evaluate_finetuned:
    cmd: python fake_stage.py --predictions metrics/predictions/finetuned.jsonl
    deps: [fake_stage.py]
    params: [seed, lr, train.lora.r]
    outs:
      - metrics/predictions/finetuned.jsonl: {cache: false}
    metrics:
      - metrics/summary.json: {cache: false}
"""


def run(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def dvc(*args: str, cwd: Path) -> str:
    return run([sys.executable, "-m", "dvc", *args], cwd)


def test_cli_ranks_real_dvc_experiments(tmp_path: Path) -> None:
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "fake_stage.py").write_text(FAKE_STAGE)
    (tmp_path / "dvc.yaml").write_text(FAKE_PIPELINE)
    run(["git", "init", "-q", "-b", "main"], tmp_path)
    dvc("init", "-q", cwd=tmp_path)
    dvc("repro", "-q", cwd=tmp_path)
    run(["git", "add", "-A"], tmp_path)
    run(["git", "commit", "-qm", "baseline"], tmp_path)
    for name, change in (("low-lr", "lr=0.0001"), ("seed-1", "seed=1"), ("seed-2", "seed=2")):
        dvc("exp", "run", "-q", "-n", name, "-S", change, cwd=tmp_path)
        # `dvc exp run` leaves its params in the workspace; the next run starts from the baseline's.
        run(["git", "checkout", "-q", "--", "params.yaml"], tmp_path)
    # The workspace's params differ from the baseline's: the bootstrap still uses the baseline commit's.
    dvc("exp", "apply", "seed-2", cwd=tmp_path)
    run([sys.executable, str(REPO / "tools" / "leaderboard.py"), "--save-snapshot", "metrics/leaderboard"], tmp_path)
    markdown = (tmp_path / "metrics" / "leaderboard.md").read_text()
    check_snapshot_round_trip(tmp_path, markdown)
    assert (tmp_path / "metrics" / "leaderboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    outputs = runpy.run_path(str(tmp_path / "fake_stage.py"))["outputs"]
    config = make_config()
    results = {name: outputs(seed, lr, 16) for name, seed, lr in
               (("main", config.seed, config.lr), ("low-lr", config.seed, 1e-4), ("seed-1", 1, config.lr),
                ("seed-2", 2, config.lr))}
    all_lines = markdown.splitlines()
    header = next(i for i, line in enumerate(all_lines) if line.startswith("| Rank |"))
    lines = all_lines[header + 2:header + 6]
    assert [line.split(" | ")[1] for line in lines] == ["low-lr", "seed-1 (seed replicate)",
                                                        "seed-2 (seed replicate)", "**main** (baseline)"]
    for line, name in zip(lines, ("low-lr", "seed-1", "seed-2", "main"), strict=True):
        summary, _ = results[name]
        assert f"| {summary['validation_loss']:.4f} |" in line
        test = summary["rouge2"]
        assert (f"| {test['finetuned']:.4f} ({test['difference']:+.3f} "
                f"{interval(test['ci_low'], test['ci_high'], True)}) |") in line
    gain = paired_bootstrap(*[[row["scores"]["rougeL"]["fmeasure"] for row in results[name][1]]
                              for name in ("main", "low-lr")], COMPARE.bootstrap_resamples, SEED, COMPARE.confidence)
    change = f"{gain['difference']:+.3f} {interval(gain['ci_low'], gain['ci_high'], True)}"
    assert f"| {change} |" in lines[0] and gain["difference"] < 0
    assert f"Its ROUGE-L loss against the baseline, {change}, survives Holm's correction" in markdown
    assert markdown.count("not comparable (different eval sample)") == 2
    assert "over 1 compared experiment(s)" in markdown and "and 3 experiment(s)" in markdown
    assert f"({COMPARE.bootstrap_resamples:,} resamples, seed {SEED})" in markdown  # the baseline's, not seed-2's
    finetuned = [results[name][0]["rougeL"]["finetuned"] for name in ("main", "seed-1", "seed-2")]
    assert (f"| ROUGE-L, fine-tuned | {min(finetuned):.4f} | {max(finetuned):.4f} | "
            f"{max(finetuned) - min(finetuned):.4f} | {statistics.stdev(finetuned):.4f} |") in markdown


def test_a_train_seed_replicate_keeps_the_eval_sample_and_is_compared() -> None:
    """`-S train.seed=N` reseeds training only: the run is a seed replicate whose eval sample is the
    baseline's, so its gain is paired like any experiment's."""
    payload = exp_show_payload()
    replicate = params()
    replicate["train"] = {**replicate["train"], "seed": 1}
    payload[1]["experiments"][1] = experiment(rev_entry("b" * 40, "train-seed-1", replicate, compare_json(0.31, 0.05),
                                                        {"runtime_s": 266.0, "best_validation_loss": 1.31}))
    by_name = {e.run.name: e for e in board(payload).entries}
    entry = by_name["train-seed-1"]
    assert entry.seed_replicate and entry.changed == {"train.seed": 1} and entry.gain is not None
    assert lb.training_seed(entry.run.params) == 1 and lb.training_seed(by_name["main"].run.params) == SEED


# --- snapshots -------------------------------------------------------------------------------------

TOOL = REPO / "tools" / "leaderboard.py"
FINETUNED = "metrics/predictions/finetuned.jsonl"


def jsonl(rows_: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows_)


def fake_inputs() -> snap.Inputs:
    """The fabricated payload and predictions above, with the repository's params.yaml as the baseline's."""
    return snap.Inputs(exp_show_payload(), "a" * 40, (REPO / "params.yaml").read_text(), SUMMARY, FINETUNED,
                       {rev: jsonl(rows_) for rev, rows_ in predictions().items()})


def run_tool(monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    """tools/leaderboard.py's main() in this process, with git and dvc out of reach (any subprocess fails)."""
    def no_subprocess(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("a snapshot build ran a subprocess (git or dvc)")

    main = runpy.run_path(str(TOOL))["main"]
    monkeypatch.setattr(subprocess, "run", no_subprocess)
    monkeypatch.setattr(sys, "argv", ["leaderboard.py", *args])
    main()


def snapshot_files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def check_snapshot_round_trip(repo: Path, markdown: str) -> None:
    """The snapshot a live build saved rebuilds its markdown byte for byte from another folder, with no
    repository there; and an explicit --baseline gives the same board once HEAD has moved on."""
    elsewhere = repo.parent / "elsewhere"
    elsewhere.mkdir()
    folder = repo / "metrics" / "leaderboard"
    run([sys.executable, str(TOOL), "--snapshot", str(folder), "--markdown", "rebuilt.md", "--plot", "rebuilt.png"],
        elsewhere)
    assert (elsewhere / "rebuilt.md").read_text() == markdown
    manifest = json.loads((folder / snap.MANIFEST).read_text())
    baseline = run(["git", "rev-parse", "HEAD"], repo).strip()
    assert manifest["baseline"] == baseline and manifest["predictions_file"] == FINETUNED
    assert [r["name"] for r in manifest["runs"]][0] == "main" and len(manifest["runs"]) == 4
    assert sorted(snapshot_files(folder)) == sorted(
        [snap.MANIFEST, snap.EXP_SHOW, "params.yaml"] + [f"predictions/{r['rev']}.jsonl" for r in manifest["runs"]])
    assert (folder / "params.yaml").read_text() == run(["git", "show", "HEAD:params.yaml"], repo)
    (repo / "notes.txt").write_text("a later commit: HEAD is no longer the sweep's baseline\n")
    run(["git", "add", "notes.txt"], repo)
    run(["git", "commit", "-qm", "later"], repo)
    run([sys.executable, str(TOOL), "--markdown", "head.md", "--plot", "head.png"], repo)
    assert "and 0 experiment(s)" in (repo / "head.md").read_text()  # HEAD has none
    run([sys.executable, str(TOOL), "--baseline", "HEAD~1", "--markdown", "later.md", "--plot", "later.png"], repo)
    # The same board; dvc names the baseline by its sha now that no branch points at it.
    assert (repo / "later.md").read_text() == re.sub(r"\bmain\b", baseline[:7], markdown)


def test_a_snapshot_builds_the_board_of_its_live_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snap.save(fake_inputs(), tmp_path / "snapshot")
    monkeypatch.chdir(tmp_path)  # no repository, no dvc.yaml, no params.yaml: the snapshot alone
    run_tool(monkeypatch, "--snapshot", "snapshot", "--markdown", "out.md", "--plot", "out.png")
    assert (tmp_path / "out.md").read_text() == report.markdown(board())
    files = snapshot_files(tmp_path / "snapshot")
    assert sorted(files) == ["exp_show.json", "params.yaml"] + [f"predictions/{c * 40}.jsonl" for c in "abcd"] + [
        "snapshot.json"]
    assert json.loads(files["exp_show.json"]) == snap.portable_payload(exp_show_payload())
    manifest = json.loads(files["snapshot.json"])
    assert manifest["baseline"] == "a" * 40 and manifest["summary_file"] == SUMMARY
    assert [(r["name"], r["rev"][0]) for r in manifest["runs"]] == [("main", "a"), ("low-lr", "b"), ("seed-1", "c"),
                                                                   ("seed-2", "d")]
    # Deterministic: the same inputs give the same bytes; a snapshot saved from a snapshot is the same.
    run_tool(monkeypatch, "--snapshot", "snapshot", "--save-snapshot", "again", "--markdown", "out.md",
             "--plot", "out.png")
    assert snapshot_files(tmp_path / "again") == files
    expected = fake_inputs()
    portable = dataclasses.replace(expected, payload=snap.portable_payload(expected.payload))
    assert snap.load(tmp_path / "again") == portable
    run_tool(monkeypatch, "--snapshot", "again", "--baseline", "main", "--markdown", "again.md", "--plot", "out.png")
    assert (tmp_path / "again.md").read_bytes() == (tmp_path / "out.md").read_bytes()


def test_the_bootstrap_settings_are_the_baseline_params_as_labconfig_reads_them() -> None:
    config = make_config()
    assert snap.bootstrap_settings((REPO / "params.yaml").read_text(), "params.yaml") == (
        config.compare.headline_metric, config.compare.bootstrap_resamples, config.compare.confidence, config.seed)
    with pytest.raises(lb.LabError, match=r"params.yaml of abc: `compare.confidence` is None, expected a number"):
        snap.bootstrap_settings("seed: 1\ncompare: {headline_metric: rougeL, bootstrap_resamples: 10}\n",
                                "params.yaml of abc")
    with pytest.raises(lb.LabError, match="`seed` is True, expected an integer"):
        snap.bootstrap_settings("seed: true\n", "p")


def test_the_baseline_is_chosen_by_name_or_rev() -> None:
    payload = exp_show_payload()
    older = rev_entry("ab" + "0" * 38, None, params(lr=3), compare_json(0.2, 0.01),
                      {"runtime_s": 1.0, "best_validation_loss": 2.0})
    payload.append(older)
    assert [r.name for r in lb.parse_exp_show(payload, SUMMARY, "ab00")] == ["ab00000"]
    assert lb.parse_exp_show(payload, SUMMARY, "main")[0].rev == "a" * 40
    assert len(lb.parse_exp_show(payload, SUMMARY, "a" * 40)) == 5
    with pytest.raises(lb.LabError, match="baseline 'aaa' is not a commit .*aaaaaaa \\(main\\), ab00000 \\(no name\\)"):
        lb.parse_exp_show(payload, SUMMARY, "aaa")  # under 4 hex digits: a name only
    with pytest.raises(lb.LabError, match="baseline 'abc1' is not a commit"):
        lb.parse_exp_show(payload, SUMMARY, "abc1")
    payload[-1]["rev"] = "aaaa" + "1" * 36
    with pytest.raises(lb.LabError, match="baseline 'aaaa' is ambiguous"):
        lb.parse_exp_show(payload, SUMMARY, "aaaa")


def broken_snapshot(tmp_path: Path) -> Path:
    folder = tmp_path / "snapshot"
    snap.save(fake_inputs(), folder)
    return folder


def edit_manifest(folder: Path, **changes: Any) -> None:
    manifest = json.loads((folder / snap.MANIFEST).read_text())
    (folder / snap.MANIFEST).write_text(json.dumps({**manifest, **changes}))


def test_snapshot_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(lb.LabError, match="no leaderboard snapshot there .*--save-snapshot"):
        snap.load(tmp_path / "nowhere")
    folder = broken_snapshot(tmp_path)
    (folder / snap.EXP_SHOW).write_text("[{")
    with pytest.raises(lb.LabError, match="exp_show.json: not valid JSON"):
        snap.load(folder)
    folder = broken_snapshot(tmp_path)
    (folder / "params.yaml").unlink()
    with pytest.raises(lb.LabError, match="params.yaml: missing from the leaderboard snapshot"):
        snap.load(folder)
    folder = broken_snapshot(tmp_path)
    (folder / f"predictions/{'b' * 40}.jsonl").unlink()
    with pytest.raises(lb.LabError, match=f"predictions/{'b' * 40}.jsonl: missing from the leaderboard snapshot"):
        snap.load(folder)
    (folder / f"predictions/{'b' * 40}.jsonl").write_text('{"id": 1}\nnot json\n')
    with pytest.raises(lb.LabError, match=f"{FINETUNED} of bbbbbbb:2: invalid JSON"):
        snap.build_board(snap.load(folder))
    manifest = json.loads((folder / snap.MANIFEST).read_text())
    edit_manifest(folder, runs=manifest["runs"][:1] + manifest["runs"][2:])
    with pytest.raises(lb.LabError, match=f"no {FINETUNED} recorded for run\\(s\\) with results: low-lr \\(bbbbbbb\\)"):
        snap.build_board(snap.load(folder))
    edit_manifest(folder, runs=[{**manifest["runs"][0], "predictions": "../../etc/passwd"}])
    with pytest.raises(lb.LabError, match="predictions must be predictions/a+.jsonl or null"):
        snap.load(folder)
    edit_manifest(folder, baseline=None)
    with pytest.raises(lb.LabError, match="malformed manifest: `baseline` is None, expected a string"):
        snap.load(folder)
    edit_manifest(folder, baseline="f" * 40, runs=[])
    with pytest.raises(lb.LabError, match="baseline 'f+' is not a commit of the `dvc exp show` payload"):
        snap.build_board(snap.load(folder))
    edit_manifest(folder, format=2)
    with pytest.raises(lb.LabError, match="snapshot format 2"):
        snap.load(folder)


def test_a_snapshot_holds_one_baseline_and_replaces_only_a_snapshot(tmp_path: Path) -> None:
    inputs = snap.load(broken_snapshot(tmp_path))
    snap.check_baseline(inputs, "aaaaaaa")
    with pytest.raises(lb.LabError, match="baseline 'nope' is not a commit"):
        snap.check_baseline(inputs, "nope")
    payload = [*inputs.payload, rev_entry("f" * 40, "older", params(), None, None)]
    with pytest.raises(lb.LabError, match="baseline 'older' is fffffff, but the snapshot was built against aaaaaaa"):
        snap.check_baseline(dataclasses.replace(inputs, payload=payload), "older")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "summary.json").write_text("{}")
    with pytest.raises(lb.LabError, match="exists and is not a leaderboard snapshot"):
        snap.save(inputs, tmp_path / "metrics")
    assert (tmp_path / "metrics" / "summary.json").read_text() == "{}"


def test_the_committed_leaderboard_rebuilds_from_its_committed_snapshot(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """metrics/leaderboard.md byte for byte from metrics/leaderboard/, with no git and no dvc."""
    folder = REPO / snap.SNAPSHOT_DIR
    monkeypatch.chdir(tmp_path)
    run_tool(monkeypatch, "--snapshot", str(folder), "--markdown", "leaderboard.md", "--plot", "leaderboard.png")
    assert (tmp_path / "leaderboard.md").read_bytes() == (REPO / report.MARKDOWN_FILE).read_bytes()


def test_a_snapshot_keeps_no_record_of_the_machine_that_ran_the_queue() -> None:
    """dvc's queue records each task's log path under the checkout and its pid: the snapshot drops them, and keeps
    the state the board reads."""
    payload = [{"rev": "a" * 40, "experiments": [{"name": "lr-1e-4", "revs": [], "executor": {
        "state": "success", "name": "dvc-task",
        "local": {"root": None, "log": "/somewhere/.dvc/tmp/exps/run/x/x.out", "pid": 7, "task_id": "x"}}}]}]
    portable = snap.portable_payload(payload)
    assert portable[0]["experiments"][0]["executor"] == {"state": "success", "name": "dvc-task"}
    assert payload[0]["experiments"][0]["executor"]["local"]["pid"] == 7  # the input is left as it was
