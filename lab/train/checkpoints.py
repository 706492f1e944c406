"""Resumable training: the train stage's checkpoints live in a folder that DVC keeps between runs
(dvc.yaml: `persist: true`), stamped with a fingerprint of everything that defines the run.

A rerun with the same fingerprint resumes from the latest complete checkpoint (transformers restores
the adapter, optimizer, scheduler, RNG states and data position); any other rerun empties the folder
and starts fresh. A finished run (completed or early-stopped) also starts fresh when rerun (only
`dvc repro --force` reruns an unchanged stage): resuming an early-stopped run would train past its
stop, since the trainer's stop flag is reset on every `train()`.

The loss curve continues too: DVC deletes the dvclive folder before a rerun, so the resumed run
replays the checkpoint's log history (transformers restores it into `state.log_history`) into dvclive
before its first step.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

from lab.core.config import LabConfig, as_dict
from lab.core.io import read_json, write_json
from lab.core.pipeline_files import param_value, stage_params
from lab.model.runtime import Runtime

FINGERPRINT_FILE = "fingerprint.json"
# The train stage's params come from where DVC reads them, the stage's `params:` in the root dvc.yaml (beside lab/),
# so a param added there is fingerprinted too.
PIPELINE_FILE = Path(__file__).resolve().parents[2] / "dvc.yaml"
TRAIN_STAGE = "train"
# transformers' rotation always keeps the latest checkpoint (to resume from) and the best one
# (load_best_model_at_end); 2 keeps exactly those, or the last two when the latest is the best.
SAVE_TOTAL_LIMIT = 2
# Weight files are fingerprinted by their size and their first and last bytes: hashing a 3B model
# in full would take a minute per run, and a different model of the same size differs in both ends
# (the safetensors header lists every tensor's dtype and offsets; the data follows it).
_SAMPLE_BYTES = 1 << 20
_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


def save_args(eval_steps: int, validate: bool, resumable: bool) -> dict[str, Any]:
    """The trainer's checkpoint arguments. Saves are aligned with validations (load_best_model_at_end
    loads a saved step); `resumable` saves every `eval_steps` with or without validation, and full
    checkpoints: a resume needs the optimizer, scheduler and RNG states, not only the adapter."""
    return {
        "save_strategy": "steps" if validate or resumable else "no",
        "save_steps": eval_steps,
        "save_only_model": not resumable,
        "save_total_limit": SAVE_TOTAL_LIMIT if resumable else None,
        # Early stopping's patience counter continues across a resume (transformers' default: reset).
        "restore_callback_states_from_checkpoint": resumable,
    }


def run_fingerprint(config: LabConfig, runtime: Runtime, base_dir: Path, conversations: list[dict[str, Any]],
                    validation: list[dict[str, Any]]) -> str:
    """A hash of what defines a training run: the params the train stage reads (its dvc.yaml `params:`),
    what they resolved to on this machine, the training and validation rows, and the base model."""
    params = as_dict(config)
    payload = {
        "params": {key: param_value(params, key) for key in stage_params(TRAIN_STAGE, PIPELINE_FILE)},
        # A checkpoint of another backend, device or precision holds other optimizer state and weights.
        "runtime": runtime.as_dict(),
        "train_rows": _rows_digest(conversations),
        "validation_rows": _rows_digest(validation),
        "base_model": _directory_digest(base_dir),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _rows_digest(rows: list[dict[str, Any]]) -> str:
    """The rows' content, in order (the order is part of a curriculum)."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _directory_digest(directory: Path) -> dict[str, str]:
    """Every file's relative path with the hash of its size and content (small files in full, large
    ones by their first and last `_SAMPLE_BYTES`)."""
    listing = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        size = path.stat().st_size
        digest = hashlib.sha256(str(size).encode())
        with path.open("rb") as handle:
            digest.update(handle.read(_SAMPLE_BYTES))
            if size > 2 * _SAMPLE_BYTES:
                handle.seek(-_SAMPLE_BYTES, 2)
            digest.update(handle.read())
        listing[path.relative_to(directory).as_posix()] = digest.hexdigest()
    return listing


def checkpoint_step(checkpoint: Path) -> int:
    """The optimizer step a transformers checkpoint folder (checkpoint-N) was saved at."""
    match = _CHECKPOINT.fullmatch(checkpoint.name)
    if match is None:
        raise ValueError(f"{checkpoint}: not a checkpoint-N folder")
    return int(match.group(1))


def _checkpoints(checkpoint_dir: Path) -> list[Path]:
    """The checkpoint-N folders, by step."""
    if not checkpoint_dir.is_dir():
        return []
    found = [p for p in checkpoint_dir.iterdir() if p.is_dir() and _CHECKPOINT.fullmatch(p.name)]
    return sorted(found, key=checkpoint_step)


def _is_complete(checkpoint: Path) -> bool:
    """The trainer writes trainer_state.json after the weights, optimizer and RNG states: a folder
    without a readable one was cut off mid-save."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def prepare_checkpoints(checkpoint_dir: Path, fingerprint: str) -> Path | None:
    """The checkpoint to resume from, or None to start fresh; prints one line saying which.

    Resumes from the latest complete checkpoint when the folder's fingerprint is `fingerprint` and its
    run did not finish (incomplete checkpoints are removed first, so the trainer's rotation never sees
    them). Otherwise removes every checkpoint and stamps the folder with `fingerprint`. Only
    checkpoint-N folders and the fingerprint file are ever deleted, whatever else the folder holds."""
    stamp = read_json(checkpoint_dir / FINGERPRINT_FILE) if (checkpoint_dir / FINGERPRINT_FILE).is_file() else {}
    complete = [c for c in _checkpoints(checkpoint_dir) if _is_complete(c)]
    if stamp.get("fingerprint") == fingerprint and not stamp.get("finished") and complete:
        for partial in set(_checkpoints(checkpoint_dir)) - set(complete):
            shutil.rmtree(partial)
        print(f"train: resuming from {complete[-1]} (step {checkpoint_step(complete[-1])}): same params, data "
              "and base model")
        return complete[-1]
    if not stamp:
        reason = "no earlier run"
    elif stamp.get("fingerprint") != fingerprint:
        reason = "params, data or base model changed"
    else:
        reason = "the earlier run finished" if stamp.get("finished") else "no complete checkpoint"
    for checkpoint in _checkpoints(checkpoint_dir):
        shutil.rmtree(checkpoint)
    write_json(checkpoint_dir / FINGERPRINT_FILE, {"fingerprint": fingerprint, "finished": False})
    print(f"train: starting fresh in {checkpoint_dir} ({reason})")
    return None


def resume_point(checkpoint_dir: Path, fingerprint: str) -> Path | None:
    """What prepare_checkpoints chose, read without changing anything: the data-parallel peers of
    the first process read the folder once it has cleaned it (two writers would race)."""
    stamp = read_json(checkpoint_dir / FINGERPRINT_FILE) if (checkpoint_dir / FINGERPRINT_FILE).is_file() else {}
    complete = [c for c in _checkpoints(checkpoint_dir) if _is_complete(c)]
    if stamp.get("fingerprint") == fingerprint and not stamp.get("finished") and complete:
        return complete[-1]
    return None


def mark_finished(checkpoint_dir: Path, fingerprint: str) -> None:
    """Record that the run of `fingerprint` finished, so that a rerun starts fresh."""
    write_json(checkpoint_dir / FINGERPRINT_FILE, {"fingerprint": fingerprint, "finished": True})


def loss_before(log_history: list[dict[str, Any]], step: int) -> float:
    """The sum of the training loss over steps 1..`step`, from the logged (interval mean) losses.

    After a resume, the trainer's `training_loss` sums this session's steps only (divided by all
    steps); adding this brings back the whole run's mean."""
    total, previous = 0.0, 0
    for entry in log_history:
        if "loss" in entry and entry["step"] <= step:
            total += entry["loss"] * (entry["step"] - previous)
            previous = entry["step"]
    return total


def live_callback(live: Any) -> Any:
    """transformers' DVCLiveCallback, logging at the trainer's optimizer step (dvclive's own step
    counts log calls, so a validation used to shift every later point) and replaying, on resume, the
    checkpoint's log history so that the curves hold every step once."""
    from dvclive.utils import standardize_metric_name
    from transformers.integrations import DVCLiveCallback

    from dvclive.plots import Metric

    class ResumableDVCLive(DVCLiveCallback):
        """Logs each entry at its optimizer step; replays the restored history first."""

        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            """Set up dvclive, then log what the checkpoint's history holds (nothing on a fresh run)."""
            super().on_train_begin(args, state, control, model=model, **kwargs)
            for entry in state.log_history:
                self._log_at(entry["step"], {k: v for k, v in entry.items() if k != "step"})

        def on_log(self, args: Any, state: Any, control: Any, model: Any = None, logs: dict | None = None,
                   **kwargs: Any) -> None:
            """Log this entry at the trainer's current step."""
            if not self._initialized:
                self.setup(args, state, model)
            if state.is_world_process_zero:
                self._log_at(state.global_step, logs or {})

        def _log_at(self, step: int, logs: dict[str, Any]) -> None:
            """What DVCLiveCallback.on_log logs, at `step`."""
            self.live.step = step
            for key, value in logs.items():
                if Metric.could_log(value):
                    self.live.log_metric(standardize_metric_name(key, "dvclive.huggingface"), value)
            self.live.next_step()

    return ResumableDVCLive(live=live)
