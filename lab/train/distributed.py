"""Data-parallel training (DDP) through `accelerate launch`: how many processes, how the batch and
the learning rate follow them, and the train stage's relaunch of itself.

`accelerate launch --multi_gpu` starts one process per GPU through torch.distributed (NCCL on
GPUs; on CPU the same launcher runs gloo processes, which is how the tests run two). transformers'
Trainer then wraps the model in DistributedDataParallel and gives each process its own shard of
every optimizer step's examples: the seeded sampler orders all examples once, and process r takes
micro-batches r, r + N, ... of that order, so the shards are distinct and reproducible, and with
fixed_global scaling an optimizer step sees the same examples as one process would.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from lab.core.checks import check_batch_split
from lab.core.config import TrainConfig
from lab.core.errors import ConfigError
from lab.model.runtime import world_size

# The launcher's defaults spelled out, so that it prints no warning about them: one machine, and
# precision and compilation left to the Trainer (train.precision), not to accelerate.
_LAUNCH_DEFAULTS = ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]


def is_main_process() -> bool:
    """The first process, the only one that writes outputs."""
    return int(os.environ.get("RANK", "0")) == 0


def launched() -> bool:
    """Whether this process was started by a distributed launcher (torchrun, accelerate launch)."""
    return "LOCAL_RANK" in os.environ


def pin_one_gpu() -> None:
    """A one-process run trains on one GPU, the first visible one. Left to itself, transformers'
    Trainer spreads one process over every visible GPU with torch.nn.DataParallel, each micro-batch
    split among them: on a 4-GPU host that runs 4 x train.batch_size per micro-batch and a quarter of
    the optimizer steps, not the run params.yaml describes. Call it before CUDA is first used."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if not launched() and visible != "":
        os.environ["CUDA_VISIBLE_DEVICES"] = visible.split(",")[0] if visible else "0"


def resolve_processes(train: TrainConfig, cuda_devices: int | None = None) -> int:
    """train.processes on this machine: auto is every visible GPU (1 on CPU); a count above the
    visible GPUs is refused, since two processes on one GPU would only contend for it."""
    if cuda_devices is None:
        import torch

        cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    processes = max(cuda_devices, 1) if train.processes == "auto" else train.processes
    if cuda_devices and processes > cuda_devices:
        raise ConfigError(f"train.processes: {processes} processes but {cuda_devices} visible GPU(s); "
                          "use at most one process per GPU, or auto")
    check_batch_split(train, processes)
    return processes


@dataclass(frozen=True)
class BatchPlan:
    """What each process runs and what one optimizer step adds up to; recorded in the metrics."""

    processes: int
    batch_scaling: str
    micro_batch: int
    grad_accum_per_process: int
    global_batch: int
    lr_scaling: str
    lr: float

    def as_dict(self) -> dict[str, Any]:
        """Plain-dict view, for the metrics."""
        return asdict(self)


def batch_plan(train: TrainConfig, lr: float, processes: int) -> BatchPlan:
    """The per-process accumulation and the learning rate for `processes` processes.

    fixed_global divides train.grad_accum among the processes (the global batch stays batch_size x
    grad_accum); per_device keeps each process's batch_size x grad_accum, multiplying the global
    batch, with lr scaled by train.lr_scaling (none, linear or sqrt in the number of processes)."""
    check_batch_split(train, processes)
    grad_accum = train.grad_accum // processes if train.batch_scaling == "fixed_global" else train.grad_accum
    factor = {"none": 1.0, "linear": float(processes), "sqrt": math.sqrt(processes)}[train.lr_scaling]
    return BatchPlan(processes=processes, batch_scaling=train.batch_scaling, micro_batch=train.batch_size,
                     grad_accum_per_process=grad_accum, global_batch=train.batch_size * grad_accum * processes,
                     lr_scaling=train.lr_scaling, lr=lr * factor)


def launch_command(processes: int, argv: list[str], port: int) -> list[str]:
    """`accelerate launch` running this script (argv as given) in `processes` processes on this machine."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            *_LAUNCH_DEFAULTS, "--main_process_port", str(port), *argv]


def _free_port() -> int:
    """A port nothing listens on now: two runs on one machine (two experiments) must not share one."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def relaunch(processes: int) -> int:
    """Run this script again under `accelerate launch` with `processes` processes; its exit code.

    A stop request (Ctrl-C, SIGTERM: lab.core.cli raises them here) is passed on to the launcher, which
    passes it to every process, so each one's staged outputs are cleaned up before this returns."""
    child = subprocess.Popen(launch_command(processes, sys.argv, _free_port()))
    try:
        return child.wait()
    except BaseException:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=120)
        except subprocess.TimeoutExpired:
            child.kill()
        raise


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """The first process runs the block before the others do (e.g. cleaning the checkpoint folder
    that all of them then read); a plain block in a single process."""
    if world_size() == 1:
        yield
        return
    import torch
    from accelerate import PartialState

    # The state is shared with the Trainer's, which is built as here (use_cpu on CPU, so gloo).
    with PartialState(cpu=not torch.cuda.is_available()).main_process_first():
        yield
