"""Data-parallel scaling of the train stage: 1, 2, 4... processes (one per GPU) through the lab's own
`train.processes`, at a fixed per-GPU micro-batch and at the lab's fixed global batch of 8.

usage: python benchmarks/multi_gpu.py --base DIR --data FILE [--steps 20] [--processes 1 2 4]
                                      [--backend unsloth] [--fallback hf] [--out benchmarks/results/multi_gpu.json]
       python benchmarks/multi_gpu.py --plot benchmarks/results/multi_gpu.json   (the loss-curve PNG beside it)

DIR comes from benchmarks/rehearsal_base.py (Llama-3.2-3B's architecture, random weights, the real
tokenizer), FILE from benchmarks/finetome_shaped.py. prepare runs once on FILE; then each run is the
train stage itself (dvc.yaml's command, in a scratch folder with params.yaml overridden: 4-bit QLoRA,
max_seq_length 2048, batch 2 x grad-accum 4 per process, no validation) on the first rows of the
prepared split:
- fixed_global (the lab's semantics): 8 examples per optimizer step whatever the processes, each
  accumulating 4 / processes micro-batches; every run trains the same steps x 8 examples, so each
  optimizer step sees the same examples and the loss curves must agree. Less scaling is expected:
  at 4 processes each GPU runs one micro-batch per step and waits on the all-reduce every step.
- per_device: each process keeps batch 2 x grad-accum 4, so the global batch is 8 x processes and
  each run trains steps x 8 x processes examples (lr unchanged: train.lr_scaling none).
tokens/s is the trainer's count of every process's tokens after the first 5 optimizer steps
(metrics/train.json `steady_tokens_per_s`); speedups divide it by the one-process run's. If a
multi-process run of --backend fails, it is repeated with --fallback (with that backend's one-process
run), and both are recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from lab.core.io import read_json, read_jsonl, write_json, write_jsonl
from lab.core.provenance import result_header

REPO = Path(__file__).resolve().parents[1]
# The per-GPU micro-batch stays the lab's 2 x 4 (micro_batch_tokens off): what scales is the processes.
# Attention as the committed runs measured it (the library's own), so that new runs compare with them.
TRAIN = {"max_seq_length": 2048, "batch_size": 2, "grad_accum": 4, "micro_batch_tokens": None,
         "packed_attention": "library", "lr_scaling": "none", "eval_steps": 100_000, "logging_steps": 1}


def stage_argv(name: str) -> list[str]:
    """Stage `name`'s command from dvc.yaml, its script resolved in this repository."""
    words = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][name]["cmd"].split()
    return [sys.executable, str(REPO / words[1]), *words[2:]]


def scratch_lab(folder: Path, base: Path, overrides: dict[str, Any]) -> Path:
    """A folder where the lab's stages run: params.yaml with `overrides`, models/base linked to `base`."""
    folder.mkdir(parents=True)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in overrides.items():
        params[section] = {**params[section], **values} if isinstance(values, dict) else values
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (folder / "models").mkdir()
    (folder / "models" / "base").symlink_to(base.resolve(), target_is_directory=True)
    return folder


def run_stage(name: str, folder: Path, timeout_s: float) -> tuple[int | str, float, str]:
    """Run stage `name` in `folder`; its exit code (or "timeout"), seconds and the tail of its stderr."""
    started = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    try:
        done = subprocess.run(stage_argv(name), cwd=folder, env=env, capture_output=True, text=True,
                              timeout=max(timeout_s, 1))
        code, stderr = done.returncode, _errors_first(done.stderr)
    except subprocess.TimeoutExpired as error:
        code, stderr = "timeout", (error.stderr or b"").decode(errors="replace")
    return code, round(time.perf_counter() - started, 1), stderr[-4000:]


def _errors_first(stderr: str) -> str:
    """A failed run's error lines (every process's), then the tail: the launcher's summary at the end
    of stderr does not say what went wrong."""
    errors = [line for line in stderr.splitlines() if "Error" in line or "error:" in line]
    return "\n".join(errors[-15:]) + "\n...\n" + stderr[-1500:]


def prepare_rows(work: Path, base: Path, data: Path, examples: int, timeout_s: float) -> list[dict[str, Any]]:
    """The prepare stage on `data` once: its training split's first `examples` rows."""
    folder = scratch_lab(work / "prepare", base, {
        "data": {"source": str(data.resolve()), "max_train_examples": examples, "validation_examples": 0,
                 "eval_examples": 1, "test_size": 0.05}})
    code, seconds, stderr = run_stage("prepare", folder, timeout_s)
    if code != 0:
        raise SystemExit(f"prepare failed ({code}):\n{stderr}")
    print(f"prepare: {seconds} s", flush=True)
    return read_jsonl(folder / "data" / "train.jsonl")


def train_run(work: Path, base: Path, rows: list[dict[str, Any]], backend: str, quantization: str, processes: int,
              scaling: str, steps: int, timeout_s: float) -> dict[str, Any]:
    """One train stage run; its figures from metrics/train.json and the loss curve from dvclive."""
    examples = steps * 8 * (processes if scaling == "per_device" else 1)
    folder = scratch_lab(work / f"{backend}-{scaling}-{processes}", base, {
        "train": {**TRAIN, "backend": backend, "quantization": quantization, "processes": processes,
                  "batch_scaling": scaling}})
    (folder / "data").mkdir()
    write_jsonl(folder / "data" / "train.jsonl", rows[:examples])
    write_jsonl(folder / "data" / "validation.jsonl", [])
    code, seconds, stderr = run_stage("train", folder, timeout_s)
    run = {"backend": backend, "processes": processes, "batch_scaling": scaling, "examples": examples,
           "stage_s": seconds, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if code != 0:
        return {**run, "error": f"exit {code}", "stderr_tail": stderr}
    metrics = read_json(folder / "metrics" / "train.json")
    losses = [float(line.split("\t")[1]) for line in
              (folder / "dvclive" / "plots" / "metrics" / "loss.tsv").read_text().splitlines()[1:]]
    shutil.rmtree(folder / "models" / "checkpoints", ignore_errors=True)
    return {**run, **{key: metrics[key] for key in ("steps", "tokens_seen", "tokens_per_s", "steady_tokens_per_s",
                                                    "peak_memory_gib", "runtime_s", "distributed")},
            "ran": metrics["ran"], "losses": losses}


def speedups(runs: list[dict[str, Any]]) -> dict[str, float]:
    """steady tokens/s of each multi-process run over its backend's one-process run."""
    single = {run["backend"]: run["steady_tokens_per_s"] for run in runs
              if run["processes"] == 1 and run.get("steady_tokens_per_s")}
    return {f"{run['backend']}/{run['batch_scaling']}/{run['processes']}":
            round(run["steady_tokens_per_s"] / single[run["backend"]], 2)
            for run in runs if run["processes"] > 1 and run.get("steady_tokens_per_s") and run["backend"] in single}


def run_backend(work: Path, args: argparse.Namespace, rows: list[dict], backend: str, deadline: float,
                runs: list[dict[str, Any]], plan: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """The runs of one backend in `plan` (results appended to `runs` as they come); the multi-process
    ones that failed."""
    failed = []
    measured = {(run["backend"], run["processes"], run["batch_scaling"]) for run in runs if "error" not in run}
    for processes, scaling in plan:
        if (backend, processes, scaling) in measured:  # kept from an earlier call (--keep-runs)
            continue
        run = train_run(work, args.base, rows, backend, args.quantization, processes, scaling, args.steps,
                        deadline - time.time())
        runs.append(run)
        print(json.dumps({k: v for k, v in run.items() if k not in ("losses", "ran", "stderr_tail")}), flush=True)
        write_json(args.out, payload(args, runs))  # a run cut short by the deadline keeps what it measured
        if "error" in run and processes > 1:
            failed.append((processes, scaling))
    return failed


def payload(args: argparse.Namespace, runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {**result_header(__file__, "data-parallel scaling of the train stage (accelerate launch, one process "
                                      "per GPU), Llama-3.2-3B architecture (random weights), 4-bit QLoRA"),
            "workload": {"base": "benchmarks/rehearsal_base.py", "data": "benchmarks/finetome_shaped.py",
                         "steps": args.steps, "train": TRAIN, "tokens_per_s": "steady_tokens_per_s: every "
                         "process's tokens after the first 5 optimizer steps"},
            "runs": runs, "speedups": speedups(runs)}


def plot(result_file: Path) -> Path:
    """The loss curves of the fixed_global runs (same examples per step), one line per process count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result = read_json(result_file)
    figure, axis = plt.subplots(figsize=(7, 4))
    for run in result["runs"]:
        if run["batch_scaling"] == "fixed_global" and run.get("losses"):
            axis.plot(range(1, len(run["losses"]) + 1), run["losses"],
                      label=f"{run['backend']}, {run['processes']} process(es)")
    axis.set(xlabel="optimizer step (8 examples each)", ylabel="training loss",
             title="Same global batch, 1 vs several GPUs")
    axis.legend()
    target = result_file.with_suffix(".png")
    figure.savefig(target, dpi=100, bbox_inches="tight")
    return target


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/multi_gpu.json"))
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per run (the first 5 untimed)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--backend", default="unsloth")
    parser.add_argument("--quantization", default="4bit", help="train.quantization (none for a CPU smoke run)")
    parser.add_argument("--fallback", default=None, help="backend to measure too if a multi-process run fails")
    parser.add_argument("--timeout", type=int, default=3000, help="seconds for the whole benchmark")
    parser.add_argument("--work", type=Path, default=Path("/tmp/multi_gpu"))
    parser.add_argument("--keep-runs", action="store_true",
                        help="keep the measured runs already in --out (an earlier call on the same machine) and "
                             "run only the missing ones: the runs' finished_at times show when each ran")
    parser.add_argument("--plot", type=Path, help="only draw the loss curves of this result file")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.plot:
        print(plot(args.plot))
        return
    deadline = time.time() + args.timeout
    shutil.rmtree(args.work, ignore_errors=True)
    rows = prepare_rows(args.work, args.base, args.data, args.steps * 8 * max(args.processes), args.timeout / 4)
    runs: list[dict[str, Any]] = ([run for run in read_json(args.out)["runs"] if "error" not in run]
                                  if args.keep_runs and args.out.exists() else [])
    # The largest process count first: it is the likeliest to fail, and the fallback needs to know.
    plan = [(1, "fixed_global")] + [(p, s) for p in sorted(args.processes, reverse=True) if p > 1
                                    for s in ("per_device", "fixed_global")]
    failed = run_backend(args.work, args, rows, args.backend, deadline, runs, plan)
    if failed and args.fallback:
        run_backend(args.work, args, rows, args.fallback, deadline, runs, [(1, "fixed_global"), *failed])
    print(json.dumps(payload(args, runs)["speedups"]))


if __name__ == "__main__":
    main()
