"""The train stage's progress bar, which also clocks the optimizer steps that the steady tokens/s
figure of metrics/train.json comes from."""

from __future__ import annotations

import sys
import time
from typing import Any

# Optimizer steps left out of the steady tokens/s figure (metrics/train.json `steady_tokens_per_s`).
UNTIMED_STEPS = 5


def progress_callback() -> Any:
    """A TrainerCallback drawing one tqdm bar on stderr: steps, ETA, the last logged loss and the
    tokens/s so far (from trl's running `num_tokens`). Like every lab bar, it shows on a terminal
    only (tqdm's disable=None), so logs and captured output stay clean."""
    from tqdm import tqdm
    from transformers import TrainerCallback

    class TrainingProgress(TrainerCallback):
        """One bar for the whole run, instead of a printed dict per logging step."""

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            """Open the bar at the run's optimizer-step count; tokens/s counts from here."""
            self.started = time.perf_counter()
            self.step_ends: list[tuple[int, float]] = []  # (optimizer step, seconds since the start)
            self.bar = tqdm(total=state.max_steps, desc="train", unit="step", file=sys.stderr, disable=None,
                            dynamic_ncols=True)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            """Advance to the trainer's step count (one optimizer step, all accumulation included)."""
            self.bar.update(state.global_step - self.bar.n)
            self.step_ends.append((state.global_step, time.perf_counter() - self.started))

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
            """Show the loss just logged (and the last validation loss), and the tokens/s so far."""
            if logs and "eval_loss" in logs:
                self.validation_loss = logs["eval_loss"]
            if not logs or "loss" not in logs:
                return  # an evaluation, or the end-of-run summary: the stage prints its own line
            postfix = {"loss": f"{logs['loss']:.4f}"}
            if getattr(self, "validation_loss", None) is not None:
                postfix["val"] = f"{self.validation_loss:.4f}"
            if "num_tokens" in logs:
                postfix["tokens/s"] = f"{logs['num_tokens'] / (time.perf_counter() - self.started):,.0f}"
            self.bar.set_postfix(postfix)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            """Close the bar, leaving its final state on screen."""
            self.bar.close()

        def steady_steps_per_s(self) -> float | None:
            """Optimizer steps per second after the first UNTIMED_STEPS (kernel autotuning, compiles
            and allocator growth happen there); None for a run too short to leave as many timed steps.
            Not every trainer logs a token count (Unsloth's does not), so tokens/s is this times the
            run's mean tokens per step."""
            timed = [mark for mark in self.step_ends if mark[0] >= UNTIMED_STEPS]
            if len(timed) < 2 or timed[-1][0] - timed[0][0] < UNTIMED_STEPS:
                return None
            (start_step, start_s), (end_step, end_s) = timed[0], timed[-1]
            return (end_step - start_step) / (end_s - start_s)

    return TrainingProgress()
