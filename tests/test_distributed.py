"""Data-parallel training (lab.train.distributed): the batch plan and its checks, the launch command,
and a real two-process run of the train stage on CPU (gloo) against the one-process run."""

from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from lab.core.checks import check_batch_split
from lab.core.errors import ConfigError
from lab.core.io import read_jsonl, write_jsonl
from lab.train.distributed import batch_plan, launch_command, resolve_processes

from .conftest import make_config, run_stage_process


def _train(**overrides):
    return make_config({"train": overrides}).train


def test_fixed_global_splits_the_accumulation_and_keeps_the_lr():
    plan = batch_plan(_train(batch_size=2, grad_accum=4), 2e-4, processes=2)
    assert (plan.micro_batch, plan.grad_accum_per_process, plan.global_batch, plan.lr) == (2, 2, 8, 2e-4)
    single = batch_plan(_train(batch_size=2, grad_accum=4), 2e-4, processes=1)
    assert (single.grad_accum_per_process, single.global_batch) == (4, 8)


@pytest.mark.parametrize(("rule", "factor"), [("none", 1.0), ("linear", 4.0), ("sqrt", 2.0)])
def test_per_device_multiplies_the_global_batch_and_scales_the_lr_by_its_rule(rule, factor):
    plan = batch_plan(_train(batch_scaling="per_device", lr_scaling=rule), 1e-4, processes=4)
    assert (plan.grad_accum_per_process, plan.global_batch) == (4, 32)
    assert math.isclose(plan.lr, 1e-4 * factor)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"processes": 0}, "train.processes: 0 is not allowed"),
    ({"processes": "many"}, "train.processes: 'many' is not allowed; allowed: a whole number or auto"),
    ({"processes": 3}, "train.grad_accum: 4 is not allowed; it must be a multiple of the 3 processes"),
    ({"lr_scaling": "linear"}, "train.lr_scaling: 'linear' is not allowed; it must be none unless"),
])
def test_impossible_process_params_fail_at_load_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        make_config({"train": overrides})


def test_auto_is_every_visible_gpu_and_more_processes_than_gpus_are_refused():
    assert resolve_processes(_train(processes="auto"), cuda_devices=0) == 1
    assert resolve_processes(_train(processes="auto"), cuda_devices=4) == 4
    assert resolve_processes(_train(processes=2), cuda_devices=0) == 2  # CPU processes (gloo): tests
    with pytest.raises(ConfigError, match="train.processes: 4 processes but 2 visible GPU"):
        resolve_processes(_train(processes=4), cuda_devices=2)
    with pytest.raises(ConfigError, match="multiple of the 8 processes"):
        check_batch_split(_train(processes="auto"), 8)


def test_the_launch_command_is_accelerate_launch_of_the_same_script():
    command = launch_command(2, ["stages/train.py", "--base", "models/base"], port=29555)
    assert command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert command[command.index("--num_processes") + 1] == "2" and "--multi_gpu" in command
    assert command[command.index("--main_process_port") + 1] == "29555"
    assert command[-3:] == ["stages/train.py", "--base", "models/base"]


def _losses(root: Path) -> list[float]:
    lines = (root / "dvclive" / "plots" / "metrics" / "loss.tsv").read_text().splitlines()[1:]
    return [float(line.split("\t")[1]) for line in lines]


def _train_in(root: Path, tiny_lab: Path, processes: int) -> Path:
    """A copy of the tiny lab's data and base model, trained with `processes` processes at one
    global batch (1 example x 2 micro-batches per optimizer step, fixed_global)."""
    root.mkdir()
    shutil.copytree(tiny_lab / "data", root / "data")
    # The 4 shortest conversations, so that none is truncated to nothing: an odd count would top up
    # the last step's second shard with an example from the start (accelerate's even_batches), and
    # that step would then differ from the one-process run's.
    rows = read_jsonl(root / "data" / "train.jsonl") + read_jsonl(root / "data" / "test.jsonl")
    write_jsonl(root / "data" / "train.jsonl",
                sorted(rows, key=lambda row: sum(len(turn["content"]) for turn in row["messages"]))[:4])
    (root / "models").mkdir()
    (root / "models" / "base").symlink_to((tiny_lab / "models" / "base").resolve(), target_is_directory=True)
    params = yaml.safe_load((tiny_lab / "params.yaml").read_text())
    params["train"].update({"batch_size": 1, "grad_accum": 2, "processes": processes, "batch_scaling": "fixed_global",
                            "max_seq_length": 128})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = run_stage_process("train", root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root


def test_two_cpu_processes_train_the_same_steps_and_write_the_outputs_once(tiny_lab, tmp_path):
    """Two gloo processes through accelerate launch: one adapter, one metrics file and one loss
    curve, written by the first process; each optimizer step saw the same two examples as the
    one-process run, so the losses agree (up to the order of floating-point sums)."""
    one = _train_in(tmp_path / "one", tiny_lab, processes=1)
    two = _train_in(tmp_path / "two", tiny_lab, processes=2)
    metrics = yaml.safe_load((two / "metrics" / "train.json").read_text())
    assert metrics["distributed"] == {"processes": 2, "batch_scaling": "fixed_global", "micro_batch": 1,
                                      "grad_accum_per_process": 1, "global_batch": 2, "lr_scaling": "none",
                                      "lr": metrics["distributed"]["lr"]}
    single = yaml.safe_load((one / "metrics" / "train.json").read_text())
    assert single["data"]["examples"] == 4 and metrics["steps"] == single["steps"] == 2
    assert sorted(p.name for p in (two / "models" / "adapter").iterdir()) == \
        sorted(p.name for p in (one / "models" / "adapter").iterdir())
    assert not list(two.rglob("*.partial*")), "a peer process left a temporary output"
    assert _losses(two) == pytest.approx(_losses(one), rel=1e-3)
