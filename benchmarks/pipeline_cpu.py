"""Time each stage of the default pipeline, run for real through DVC, in dependency order.

usage: python benchmarks/pipeline_cpu.py [--out benchmarks/results/pipeline_cpu.json]

Forces every stage to run (`dvc repro --force --single-item STAGE`), so the figures are the
cost of a `dvc repro` from a fresh clone (install time aside), and leaves dvc.lock and the
metrics of that real run behind.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402


def pipeline_stages(dvc_yaml: Path = Path("dvc.yaml")) -> list[str]:
    """The stages as dvc.yaml lists them, which is their dependency order."""
    import yaml

    return list(yaml.safe_load(dvc_yaml.read_text())["stages"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/pipeline_cpu.json"))
    args = parser.parse_args()
    dvc = str(Path(sys.executable).with_name("dvc"))
    seconds = {}
    for stage in pipeline_stages():
        started = time.perf_counter()
        subprocess.run([dvc, "repro", "--force", "--single-item", stage], check=True)
        seconds[stage] = round(time.perf_counter() - started, 1)
        print(f"{stage}: {seconds[stage]} s", flush=True)
    result = {
        "benchmark": "default `dvc repro`, every stage forced, timed one by one",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "stage_seconds": seconds,
        "total_seconds": round(sum(seconds.values()), 1),
        "train": json.loads(Path("metrics/train.json").read_text())["tokens_per_s"],
    }
    result["train_tokens_per_s"] = result.pop("train")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
