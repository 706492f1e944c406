"""Resumable training (lab.train.checkpoints): the run fingerprint, the resume-or-start-fresh decision, and
real (tiny) runs on the embedded model: a training killed mid-run resumes from its last checkpoint and
ends where an uninterrupted run ends, with the same losses; a changed param starts fresh."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lab.core.io import read_json
from lab.core.pipeline_files import stage_params
from lab.model.runtime import resolve_runtime
from lab.train.checkpoints import (
    FINGERPRINT_FILE,
    PIPELINE_FILE,
    TRAIN_STAGE,
    checkpoint_step,
    loss_before,
    mark_finished,
    prepare_checkpoints,
    run_fingerprint,
)

from .conftest import REPO, make_config
from .helpers import CONVERSATION, SHORT

# 10 optimizer steps of one short example each; a validation (and a checkpoint) every 2 steps.
TINY = {"data": {"validation_examples": 2},
        "train": {"batch_size": 1, "grad_accum": 1, "epochs": 1, "max_seq_length": 64, "logging_steps": 1,
                  "eval_steps": 2, "warmup_steps": 0}}
TRAIN = [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                       {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."}]} for i in range(10)]
VALIDATION = [{"messages": CONVERSATION}, {"messages": SHORT}]
KILL_AT_STEP = 5  # one step past checkpoint-4: the resumed run redoes step 5
KILLED_EXIT = 77

# Run in a subprocess: fine_tune as the stage calls it, with the process killed (no cleanup, as by
# SIGKILL) at the end of step KILL_AT_STEP. The kill is patched into transformers' own flow callback
# here, so the product code carries no test hook.
KILLED_SCRIPT = """
import json, os, sys
from pathlib import Path
from transformers.trainer_callback import DefaultFlowCallback
from lab.core.params import load_config
from lab.train.fine_tune import fine_tune

spec = json.loads(Path(sys.argv[1]).read_text())
original = DefaultFlowCallback.on_step_end

def on_step_end(self, args, state, control, **kwargs):
    if state.global_step == spec["kill_at"]:
        os._exit(spec["exit_code"])
    return original(self, args, state, control, **kwargs)

DefaultFlowCallback.on_step_end = on_step_end
fine_tune(load_config(spec["params"], spec["overrides"]), Path(spec["base"]), spec["train"], spec["validation"],
          Path(spec["live"]), Path(spec["checkpoints"]))
"""


def _fingerprint(overrides: dict | None = None, train: list | None = None, validation: list | None = None,
                 base: Path | None = None) -> str:
    config = make_config(overrides)
    runtime = resolve_runtime(config.train, cuda_available=False)
    return run_fingerprint(config, runtime, base, TRAIN if train is None else train,
                           VALIDATION if validation is None else validation)


@pytest.fixture
def fake_base(tmp_path: Path) -> Path:
    """A model folder with a small config and a weights file large enough to be sampled."""
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text('{"hidden_size": 8}')
    (base / "model.safetensors").write_bytes(bytes(range(256)) * (3 * 4096 + 7))
    return base


def test_fingerprint_is_stable_and_changes_with_what_defines_the_run(fake_base: Path):
    reference = _fingerprint(base=fake_base)
    assert _fingerprint(base=fake_base) == reference
    # Params the train stage does not read leave it alone.
    assert _fingerprint({"evaluate": {"max_new_tokens": 7}, "compare": {"gallery_examples": 1}},
                        base=fake_base) == reference
    changed = {
        "lr": _fingerprint({"lr": 1e-4}, base=fake_base),
        "seed": _fingerprint({"seed": 1}, base=fake_base),
        "train.eval_steps": _fingerprint({"train": {"eval_steps": 3}}, base=fake_base),
        "train.lora.r": _fingerprint({"train": {"lora": {"r": 8}}}, base=fake_base),
        "data.order": _fingerprint({"data": {"order": "curriculum"}}, base=fake_base),
        "model.chat_template": _fingerprint({"model": {"chat_template": "chatml"}}, base=fake_base),
        "model.trust_remote_code": _fingerprint({"model": {"trust_remote_code": True}}, base=fake_base),
        "a training row": _fingerprint(train=[*TRAIN[:-1], TRAIN[0]], base=fake_base),
        "the training order": _fingerprint(train=TRAIN[::-1], base=fake_base),
        "a validation row": _fingerprint(validation=VALIDATION[:1], base=fake_base),
    }
    weights = fake_base / "model.safetensors"
    data = bytearray(weights.read_bytes())
    for where, offset in (("the weights' start", 10), ("the weights' end", -10)):
        edited = bytearray(data)
        edited[offset] ^= 0xFF
        weights.write_bytes(bytes(edited))
        changed[where] = _fingerprint(base=fake_base)
    weights.write_bytes(bytes(data))
    (fake_base / "config.json").write_text('{"hidden_size": 9}')
    changed["the model config"] = _fingerprint(base=fake_base)
    assert [name for name, value in changed.items() if value == reference] == []
    assert len(set(changed.values())) == len(changed)


def test_the_fingerprinted_params_are_the_train_stage_params_of_dvc_yaml():
    listed = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["train"]["params"]
    assert PIPELINE_FILE == REPO / "dvc.yaml"
    assert stage_params(TRAIN_STAGE, PIPELINE_FILE) == listed and "model.trust_remote_code" in listed


def _fake_checkpoint(folder: Path, step: int, complete: bool = True) -> Path:
    checkpoint = folder / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    (checkpoint / "adapter_model.safetensors").write_bytes(b"weights")
    if complete:
        (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return checkpoint


def test_same_fingerprint_resumes_from_the_latest_complete_checkpoint(tmp_path: Path, capsys):
    folder = tmp_path / "checkpoints"
    assert prepare_checkpoints(folder, "abc") is None  # nothing yet: fresh, and the folder is stamped
    assert read_json(folder / FINGERPRINT_FILE) == {"fingerprint": "abc", "finished": False}
    for step in (4, 10):
        _fake_checkpoint(folder, step)
    _fake_checkpoint(folder, 12, complete=False)  # killed mid-save
    assert prepare_checkpoints(folder, "abc") == folder / "checkpoint-10"
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint-10", "checkpoint-4", FINGERPRINT_FILE]
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"train: starting fresh in {folder} (no earlier run)"
    assert out[1] == f"train: resuming from {folder / 'checkpoint-10'} (step 10): same params, data and base model"
    assert checkpoint_step(folder / "checkpoint-10") == 10


@pytest.mark.parametrize(("stamp", "finished", "reason"), [
    ("other", False, "params, data or base model changed"),
    ("abc", True, "the earlier run finished"),
])
def test_another_fingerprint_or_a_finished_run_starts_fresh(tmp_path: Path, capsys, stamp, finished, reason):
    folder = tmp_path / "checkpoints"
    prepare_checkpoints(folder, stamp)
    _fake_checkpoint(folder, 4)
    if finished:
        mark_finished(folder, stamp)
    (folder / "notes.txt").write_text("not ours")  # a mistyped path never loses files the lab did not write
    assert prepare_checkpoints(folder, "abc") is None
    assert sorted(p.name for p in folder.iterdir()) == [FINGERPRINT_FILE, "notes.txt"]
    assert read_json(folder / FINGERPRINT_FILE) == {"fingerprint": "abc", "finished": False}
    assert capsys.readouterr().out.splitlines()[-1] == f"train: starting fresh in {folder} ({reason})"


def test_loss_before_sums_the_logged_interval_means_up_to_a_step():
    history = [{"loss": 2.0, "step": 2}, {"eval_loss": 9.0, "step": 2}, {"loss": 1.0, "step": 3},
               {"loss": 0.5, "step": 5}]
    assert loss_before(history, 3) == 2.0 * 2 + 1.0
    assert loss_before(history, 5) == 2.0 * 2 + 1.0 + 0.5 * 2
    assert loss_before(history, 0) == 0.0


def _curve(live: Path, name: str) -> list[tuple[int, float]]:
    with (live / "plots" / "metrics" / name).open() as handle:
        return [(int(row["step"]), float(row["loss"])) for row in csv.DictReader(handle, delimiter="\t")]


def _lora_weights(model) -> dict:
    return {name: value.detach().clone() for name, value in model.named_parameters() if "lora_" in name}


@pytest.fixture(scope="module")
def killed_checkpoints(embedded_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkpoint folder of a run killed at step KILL_AT_STEP (a fresh copy per test)."""
    work = tmp_path_factory.mktemp("killed")
    spec = {"params": str(REPO / "params.yaml"), "overrides": TINY, "base": str(embedded_model_dir),
            "train": TRAIN, "validation": VALIDATION, "live": str(work / "live"),
            "checkpoints": str(work / "checkpoints"), "kill_at": KILL_AT_STEP, "exit_code": KILLED_EXIT}
    (work / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", KILLED_SCRIPT, str(work / "spec.json")], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == KILLED_EXIT, result.stderr[-3000:]
    # Checkpoints of steps 2 and 4 (the limit keeps two), nothing of step 5, the run not finished.
    assert sorted(p.name for p in (work / "checkpoints").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert read_json(work / "checkpoints" / FINGERPRINT_FILE)["finished"] is False
    return work / "checkpoints"


def test_a_killed_training_resumes_and_ends_like_an_uninterrupted_run(
        embedded_model_dir, killed_checkpoints, tmp_path, capsys):
    from lab.train.fine_tune import fine_tune

    config = make_config(TINY)
    model, _, expected = fine_tune(config, embedded_model_dir, TRAIN, VALIDATION, tmp_path / "ref-live",
                                   tmp_path / "ref-checkpoints")
    expected_weights = _lora_weights(model)
    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(killed_checkpoints, checkpoints)
    capsys.readouterr()
    # A fresh live folder: DVC deletes the (not persisted) dvclive output before it reruns the stage.
    model, _, metrics = fine_tune(config, embedded_model_dir, TRAIN, VALIDATION, tmp_path / "live", checkpoints)
    assert f"train: resuming from {checkpoints / 'checkpoint-4'} (step 4)" in capsys.readouterr().out
    assert (expected["resumed_from_step"], metrics["resumed_from_step"]) == (None, 4)
    assert metrics["steps"] == expected["steps"] == 10 and metrics["stop_reason"] == "completed"
    # Every step once on both curves, the steps before the resume rebuilt from the checkpoint.
    losses, expected_losses = _curve(tmp_path / "live", "loss.tsv"), _curve(tmp_path / "ref-live", "loss.tsv")
    assert [step for step, _ in losses] == [step for step, _ in expected_losses] == list(range(1, 11))
    validation, expected_validation = (_curve(tmp_path / folder, "eval/loss.tsv") for folder in ("live", "ref-live"))
    assert [step for step, _ in validation] == [step for step, _ in expected_validation] == [2, 4, 6, 8, 10]
    # transformers restores the optimizer, scheduler, RNG states and data position: on CPU in float32 the
    # resumed steps repeat the uninterrupted run's losses bit for bit (a GPU may differ in the last bits).
    assert losses == expected_losses and validation == expected_validation
    for key in ("validation_losses", "best_step", "best_validation_loss", "train_loss", "loss_first_quarter",
                "loss_last_quarter"):
        assert metrics[key] == expected[key], key
    # The model returned holds the same best step's adapter.
    weights = _lora_weights(model)
    assert weights.keys() == expected_weights.keys()
    assert all(weights[name].equal(expected_weights[name]) for name in weights)
    assert read_json(checkpoints / FINGERPRINT_FILE)["finished"] is True


def test_a_changed_param_starts_fresh_over_an_old_checkpoint(embedded_model_dir, killed_checkpoints, tmp_path,
                                                             capsys):
    from lab.train.fine_tune import fine_tune

    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(killed_checkpoints, checkpoints)
    for old in checkpoints.glob("checkpoint-*"):
        (old / "old-run").write_text("")
    capsys.readouterr()
    _, _, metrics = fine_tune(make_config({**TINY, "lr": 1e-4}), embedded_model_dir, TRAIN, VALIDATION,
                              tmp_path / "live", checkpoints)
    assert f"train: starting fresh in {checkpoints} (params, data or base model changed)" in capsys.readouterr().out
    assert metrics["resumed_from_step"] is None and metrics["steps"] == 10
    assert [step for step, _ in _curve(tmp_path / "live", "loss.tsv")] == list(range(1, 11))
    assert sorted(checkpoint_step(p) for p in checkpoints.glob("checkpoint-*")) in ([8, 10], [6, 10], [4, 10], [2, 10])
    assert not list(checkpoints.glob("checkpoint-*/old-run"))  # nothing of the old run is left
