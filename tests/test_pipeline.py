"""The whole pipeline through DVC, on a tiny config with the real embedded model:
`dvc repro`, then `dvc exp run -S lr=1e-4`, `dvc metrics diff` and `dvc exp show`."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from lab.core.io import PARTIAL_SUFFIX

from .pipeline_copy import dvc, make_lab_copy, run

TINY = {
    "data": {"builtin": {"packages": ["json", "collections", "statistics", "textwrap", "string"]}, "eval_examples": 4,
             "max_train_examples": 16, "test_size": 0.2, "validation_examples": 4},
    "train": {"max_seq_length": 256, "eval_steps": 1},
    "evaluate": {"max_new_tokens": 16, "batch_size": 4},
}


def read_rows(metrics: Path, model: str) -> list[dict]:
    return [json.loads(line) for line in (metrics / "predictions" / f"{model}.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def lab_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git + DVC repository holding the lab's code and a tiny params.yaml."""
    return make_lab_copy(tmp_path_factory.mktemp("lab"), TINY)


def test_repro_then_experiment_reruns_only_what_lr_touches(lab_copy: Path):
    # 1. The full pipeline.
    dvc("repro", cwd=lab_copy)
    metrics = lab_copy / "metrics"
    for name in ("data.json", "train.json", "eval_base.json", "eval_finetuned.json", "compare.json", "gallery.json",
                 "summary.json", "report.md"):
        assert (metrics / name).is_file(), name
    base = json.loads((metrics / "eval_base.json").read_text())
    train = json.loads((metrics / "train.json").read_text())
    assert base["examples"] == 4 and 0.0 <= base["rougeL"] <= 1.0
    assert train["ran"] == {**train["ran"], "backend": "hf", "device": "cpu", "quantization": "none"}
    assert train["steps"] == 2  # 16 examples / (batch 2 x grad-accum 4)
    assert [v["step"] for v in train["validation_losses"]] == [1, 2] and train["best_step"] in (1, 2)
    assert train["best_validation_loss"] == min(v["loss"] for v in train["validation_losses"])
    assert 0.0 <= base["semantic"] <= 1.0 and all("semantic" in row["scores"] for row in read_rows(metrics, "base"))
    comparison = json.loads((metrics / "compare.json").read_text())
    rouge_l = comparison["metrics"]["rougeL"]
    assert rouge_l["base"] == pytest.approx(base["rougeL"], abs=1e-4) and rouge_l["ci_low"] <= rouge_l["difference"]
    summary = json.loads((metrics / "summary.json").read_text())
    assert summary["validation_loss"] == train["best_validation_loss"] and summary["rougeL"] == {
        key: rouge_l[key] for key in ("base", "finetuned", "difference", "ci_low", "ci_high", "p_value")}
    report = (metrics / "report.md").read_text()
    ci = f"[{rouge_l['base_ci_low']:.3f}, {rouge_l['base_ci_high']:.3f}]"
    assert f"| ROUGE-L | {rouge_l['base']:.4f} {ci} |" in report
    assert comparison["length"]["summary"] in report and "## Per source" in report
    assert all((metrics / "plots" / f"{p}.png").stat().st_size > 0 for p in ("scores", "lengths", "loss"))
    # The report's loss curve (the file dvc.yaml hands it) has one point per optimizer step.
    loss_curve = yaml.safe_load((lab_copy / "dvc.yaml").read_text())["plots"][0]
    assert len((lab_copy / next(iter(loss_curve))).read_text().splitlines()) == 1 + train["steps"]
    assert len((metrics / "predictions" / "finetuned.jsonl").read_text().splitlines()) == 4
    run(["git", "add", "-A"], lab_copy)
    run(["git", "commit", "-qm", "baseline"], lab_copy)

    # 2. An experiment with another learning rate: prepare and the base evaluation come from the cache.
    result = dvc("exp", "run", "-S", "lr=1e-4", cwd=lab_copy)
    assert "Stage 'prepare' didn't change, skipping" in result.stdout
    assert "Stage 'evaluate_base' didn't change, skipping" in result.stdout
    for stage in ("train", "evaluate_finetuned", "report"):
        assert f"Running stage '{stage}'" in result.stdout
    assert yaml.safe_load((lab_copy / "params.yaml").read_text())["lr"] == pytest.approx(1e-4)
    # No temporary output is left, nor committed with the experiment.
    refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], lab_copy).stdout.split()
    committed = [run(["git", "ls-tree", "-r", "--name-only", ref], lab_copy).stdout for ref in refs]
    assert refs and not any(PARTIAL_SUFFIX in files for files in committed)
    assert not list(lab_copy.rglob(f"*{PARTIAL_SUFFIX}"))

    # 3. Comparing the runs: DVC lists one metrics file, the summary, so both commands stay short.
    diff = json.loads(dvc("metrics", "diff", "--all", "--json", cwd=lab_copy).stdout)
    assert list(diff) == ["metrics/summary.json"]
    assert {"validation_loss", "rougeL.finetuned", "rougeL.difference", "rougeL.ci_low", "rougeL.p_value"} \
        <= set(diff["metrics/summary.json"])
    # One metrics file, so dvc names its columns without the file and no dataset statistics appear;
    # --only-changed leaves out the params (and metrics) that are the same in every run.
    header = dvc("exp", "show", "--csv", cwd=lab_copy).stdout.splitlines()[0].split(",")
    assert "rougeL.difference" in header and "rougeL.ci_low" in header and "rows.raw" not in header, header
    changed = dvc("exp", "show", "--csv", "--only-changed", cwd=lab_copy).stdout.splitlines()[0].split(",")
    assert "lr" in changed and "validation_loss" in changed and "train.batch_size" not in changed, changed


def test_bad_data_fails_prepare_clearly_and_leaves_outputs_untouched(lab_copy: Path, tmp_path: Path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"conversations": [{"from": "human", "value": "hi"}]}) + "\n")
    before = {p: p.read_bytes() for p in (lab_copy / "data").glob("*.jsonl")}
    params = yaml.safe_load((lab_copy / "params.yaml").read_text())
    params["data"]["source"] = str(bad)
    config = tmp_path / "params.yaml"
    config.write_text(yaml.safe_dump(params))
    shutil.copy(config, lab_copy / "params.yaml")
    # The stage's own command, as dvc.yaml gives it (the scripts have no default paths).
    command = yaml.safe_load((lab_copy / "dvc.yaml").read_text())["stages"]["prepare"]["cmd"].split()
    result = run([sys.executable, *command[1:]], lab_copy, check=False)
    assert result.returncode != 0
    assert "invalid row(s)" in result.stderr and "no_assistant_turn: 1 row(s), e.g. row 0" in result.stderr
    assert "Traceback" not in result.stderr
    assert before and before == {p: p.read_bytes() for p in (lab_copy / "data").glob("*.jsonl")}
