"""The figures of the README and docs/ are the result files' own, and render what the scripts write."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import readme_figures as rf  # noqa: E402

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def header(script: str, gpu: str | None = None) -> dict[str, Any]:
    """A result file's provenance header, as lab.core.provenance.result_header writes it."""
    machine = {"cpu": "Test CPU 9000", "vector_extensions": ["avx2", "avx512f"], "cores": 2, "memory_gib": 8.0,
               "python": "3.11.7", "platform": "Linux", "torch": "2.13.0+cpu", "torch_threads": 2}
    if gpu:
        machine |= {"gpu": gpu, "cuda": "13.0"}
    return {"script": script, "arguments": [], "benchmark": "test", "date": "2026-01-02T03:04:05+00:00",
            "git_revision": {"commit": COMMIT, "uncommitted_changes": False}, "machine": machine,
            "versions": {"torch": "2.13.0"}}


def pipeline_result() -> dict[str, Any]:
    ran = {"backend": "hf", "device": "cpu", "dtype": "float32", "quantization": "none"}
    generation = {"decoder": "generate", "seconds": 101.5}
    return {**header("benchmarks/pipeline.py"), "params_set": ["lr=1e-4"],
            "stage_seconds": {"base_model": 33.7, "prepare": 3.4, "train": 167.5}, "total_seconds": 204.6,
            "rows": {"train": 192, "eval": 64},
            "train": {"steps": 24, "tokens_per_s": 229.8, "peak_memory_gib": 1.5, "ran": ran},
            "generation": {"base": generation, "finetuned": {**generation, "seconds": 99.0}}}


def write(path: Path, payload: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))
    return path


def test_the_readme_and_docs_quote_the_result_files_as_they_are() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "readme_figures.py"), "--check"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_a_missing_result_file_says_how_to_measure_it(tmp_path: Path) -> None:
    for name, (command, _) in rf.BLOCKS.items():
        assert command.startswith("python benchmarks/")
        assert rf.render_block(name, tmp_path) == f"Not measured yet: run `{command}`.\n"


def test_pipeline_block_shows_stages_total_speed_cpu_and_revision(tmp_path: Path) -> None:
    write(tmp_path / "pipeline_cpu.json", pipeline_result())
    body = rf.render_block("pipeline", tmp_path)
    assert "| `train` | 167.5 |" in body and "| **all stages** | **204.6** |" in body
    assert "24 steps at 229.8 tokens/s" in body and "Params set: `lr=1e-4`" in body
    assert "101.5 s for the base model, 99.0 s for the fine-tuned one" in body
    assert "Test CPU 9000 (avx2, avx512f), 2 cores" in body
    assert "`python benchmarks/pipeline.py` at commit `0123456789`" in body
    assert "uncommitted" not in body


def test_a_capped_instruction_set_is_named_beside_the_cpu(tmp_path: Path) -> None:
    result = pipeline_result()
    result["machine"] |= {"torch_cpu_capability": "AVX2", "isa_limits": {"ATEN_CPU_CAPABILITY": "avx2"}}
    write(tmp_path / "pipeline_cpu.json", result)
    body = rf.render_block("pipeline", tmp_path)
    assert "Test CPU 9000 (avx2, avx512f) capped to AVX2 kernels (ATEN_CPU_CAPABILITY=avx2), 2 cores" in body


def test_another_machines_file_is_rendered_beside(tmp_path: Path) -> None:
    write(tmp_path / "pipeline_cpu.json", pipeline_result())
    write(tmp_path / "pipeline_gpu.json", {**pipeline_result(), "total_seconds": 99.5})
    body = rf.render_block("pipeline", tmp_path)
    assert body.index("`pipeline_cpu.json`") < body.index("`pipeline_gpu.json`")
    assert "**99.5**" in body


def test_scoring_block(tmp_path: Path) -> None:
    steps = {"rouge_base": 0.151, "semantic_model_load": 6.604, "compare_stage_all_statistics": 0.214}
    write(tmp_path / "scoring_cpu.json", {**header("benchmarks/scoring_cpu.py"), "examples": 100,
                                          "step_seconds": steps, "total_seconds": 6.97,
                                          "load_average_1_5_15min": {"before": [0.1, 0.2, 0.3]}})
    body = rf.render_block("scoring_cpu", tmp_path)
    assert "**6.97 s** in all, 6.60 s of it loading the embedding model" in body
    assert "statistics take 0.21 s" in body and "| `rouge_base` | 0.151 |" in body


def train_run(backend: str, variant: str, tokens_per_s: float, peak: float) -> dict[str, Any]:
    """One variant's figures, shaped as train_throughput.run_variant returns them."""
    import train_throughput as tt

    return {"backend": backend, "variant": variant, **tt.VARIANTS[variant],
            "checkpointing_mode": "unsloth" if backend == "unsloth" else None, "tokens_per_s": tokens_per_s,
            "peak_allocated_gib": peak}


def test_train_block_renders_what_the_script_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import llama_arch
    import train_throughput as tt

    monkeypatch.setattr(sys, "argv", ["train_throughput.py", "--steps", "20"])

    results = {"unsloth/padding_free_no_ckpt": train_run("unsloth", "padding_free_no_ckpt", 4766.8, 9.22),
               "unsloth/padding_free": train_run("unsloth", "padding_free", 3061.7, 2.86),
               "hf/padding_free_no_ckpt": train_run("hf", "padding_free_no_ckpt", 3620.3, 19.87),
               "hf/padded": {"backend": "hf", "variant": "padded", **tt.VARIANTS["padded"], "error": "exit 1"}}
    for run in results.values():
        if "tokens_per_s" in run:
            run["mfu_4n"] = llama_arch.mfu(3_212_749_824, run["tokens_per_s"], 989.0)
            run["mfu_6n"] = llama_arch.mfu(3_212_749_824, run["tokens_per_s"], 989.0, flops_per_parameter=6)
    args = argparse.Namespace(batch_size=2, grad_accum=4, steps=20, seed=3407)
    payload = tt.payload_for(args, 989.0, 3_212_749_824, results)
    payload["machine"] |= {"gpu": "NVIDIA H200", "cuda": "13.0"}
    write(tmp_path / "train_throughput.json", payload)
    body = rf.render_block("train_throughput", tmp_path)
    assert payload["script"] == "benchmarks/train_throughput.py" and "NVIDIA H200 (CUDA 13.0)" in body
    assert "`python benchmarks/train_throughput.py --steps 20` at commit" in body
    assert "| Unsloth, padding-free, no checkpointing | 4,766.8 | 9.22 | 6.2% | 9.3% |" in body
    assert "| Unsloth, padding-free, checkpointing (unsloth) | 3,061.7 | 2.86 |" in body
    assert "| baseline, padded, checkpointing | failed: exit 1 |" in body
    assert "MFU (4·N)" in body and "3,212,749,824 parameters" in body
    # Ratios only between runs with the same checkpointing setting.
    assert ("Unsloth, padding-free, no checkpointing over baseline, padding-free, no checkpointing: 1.32×"
            in body)
    assert "Unsloth, padding-free, checkpointing (unsloth) over" not in body


def test_eval_block_renders_what_the_script_writes(tmp_path: Path) -> None:
    import eval_throughput as ev

    variants = {"static_graph_b100": {"seconds": 3.09, "sequences": 100, "new_tokens": 25600, "tokens_per_s": 8296.8,
                                      "first_call_s": 3.12, "peak_allocated_gib": 15.29},
                "hf_dynamic_b100": {"seconds": 10.06, "sequences": 100, "new_tokens": 25600, "tokens_per_s": 2543.5,
                                    "first_call_s": 10.16, "peak_allocated_gib": 13.8},
                "prefill_only_b100": {"seconds": 0.507},
                "decode_step_ms": {"static_graph_b100": 10.13, "static_eager_b100": 22.52},
                "agreement": {"static_graph_vs_hf_dynamic_b100": {"identical": 1.0, "mean_prefix": 256}}}
    fresh = {"static_graph_b100": [{"first_call_s": 3.67}, {"first_call_s": 3.49}]}
    write(tmp_path / "eval_throughput.json", ev.payload_for(variants, fresh, 3_212_749_824))
    body = rf.render_block("eval_throughput", tmp_path)
    assert "| lab decoder, CUDA graph, batch 100 | 100 | 3.09 | 8,296.8 | 3.12 | 15.29 |" in body
    assert "| transformers `generate`, dynamic cache, batch 100 | 100 | 10.06 |" in body
    assert "**7.2 s** (3.67 + 3.49)" in body and "10.13 ms with the CUDA graph" in body
    assert "100.0% of prompts" in body


def readme_with(body: str) -> str:
    names = [*rf.BLOCKS, *rf.METRICS_BLOCKS]
    blocks = "".join(f"<!-- figures:{name} -->\n{body}<!-- /figures:{name} -->\n" for name in names)
    return f"# Title\n\nProse.\n\n{blocks}\nMore prose.\n"


def test_check_names_the_stale_block_and_write_fixes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    write(results / "pipeline_cpu.json", pipeline_result())
    readme = tmp_path / "README.md"
    readme.write_text(readme_with("Not measured yet.\n"))

    def run(*flags: str) -> int:
        monkeypatch.setattr(sys, "argv", ["readme_figures.py", *flags, "--files", str(readme),
                                          "--results", str(results)])
        return rf.main()

    before = readme.read_text()
    assert run("--check") == 1
    assert f"{readme}: figures:pipeline is stale" in capsys.readouterr().err
    assert readme.read_text() == before  # --check never writes
    assert run("--write") == 0
    assert run("--check") == 0
    text = readme.read_text()
    assert "| `train` | 167.5 |" in text and text.startswith("# Title\n\nProse.") and text.endswith("More prose.\n")


def test_blocks_are_rendered_and_checked_in_every_file_that_holds_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Blocks spread over the README and docs/*.md, one of them in two files: each is rendered where it is,
    and --check names the file of a stale one."""
    results = tmp_path / "results"
    write(results / "pipeline_cpu.json", pipeline_result())
    names = [*rf.BLOCKS, *rf.METRICS_BLOCKS]
    readme, docs = tmp_path / "README.md", tmp_path / "docs"
    docs.mkdir()
    block = "<!-- figures:{0} -->\nold\n<!-- /figures:{0} -->\n"
    readme.write_text("# Title\n\n" + block.format("pipeline"))
    (docs / "a.md").write_text("# A\n\n" + "".join(block.format(name) for name in names[: len(names) // 2]))
    (docs / "b.md").write_text("# B\n\n" + "".join(block.format(name) for name in names[len(names) // 2:])
                               + block.format("pipeline"))
    files = [readme, docs / "a.md", docs / "b.md"]

    def run(*flags: str) -> int:
        monkeypatch.setattr(sys, "argv", ["readme_figures.py", *flags, "--files", *map(str, files),
                                          "--results", str(results)])
        return rf.main()

    assert run("--check") == 1
    err = capsys.readouterr().err
    assert f"{readme}: figures:pipeline is stale" in err and f"{docs / 'b.md'}: figures:pipeline is stale" in err
    assert run("--write") == 0 and run("--check") == 0
    for path in (readme, docs / "b.md"):
        assert "| `train` | 167.5 |" in path.read_text()
    # Links are written relative to the file that holds the block.
    holder = next(path for path in files if "figures:leaderboard" in path.read_text())
    assert "![Leaderboard](../metrics/leaderboard.png)" in holder.read_text()


def test_unknown_blocks_and_blocks_in_no_file_are_reported(tmp_path: Path) -> None:
    text = "<!-- figures:nope -->\nx\n<!-- /figures:nope -->\n"
    rendered, problems, found = rf.render_text(text, tmp_path)
    assert rendered == text and found == {"nope"}
    assert problems[0].startswith("figures:nope names no benchmark")
    doc = tmp_path / "docs" / "x.md"
    doc.parent.mkdir()
    doc.write_text(text + "<!-- figures:dedup -->\n<!-- /figures:dedup -->\n")
    _, problems = rf.render_files([doc], tmp_path)
    assert (doc, "figures:dedup is stale") in problems
    assert all(f"figures:{name} appears in no file" in " ".join(p for _, p in problems)
               for name in rf.BLOCKS if name != "dedup")
    assert not any("figures:dedup appears in no file" in p for _, p in problems)


def test_links_are_made_relative_to_the_file(tmp_path: Path) -> None:
    body = "![Plot](metrics/leaderboard.png) [site](https://dvc.org) [here](#anchor)\n"
    assert rf.relink(body, rf.REPO_ROOT) == body
    assert rf.relink(body, rf.REPO_ROOT / "docs") == (
        "![Plot](../metrics/leaderboard.png) [site](https://dvc.org) [here](#anchor)\n")


def test_a_command_run_outside_the_checkout_names_no_folder_of_that_machine(tmp_path: Path) -> None:
    """An older result file that names its script and arguments by absolute paths is shown relative
    to the repository root, and a path outside the checkout as <outside>/NAME."""
    slash = "/"  # built at run time, so that this file's text holds no machine path
    result = {**pipeline_result(), "script": f"{slash}ckout/lab/benchmarks/pipeline.py",
              "arguments": ["--out", f"{slash}ckout/lab/benchmarks/results/pipeline_cpu.json", "--base",
                            f"{slash}scratch/rehearsal/base", "--set", f"model.base={slash}scratch/m", "--set", "x=1"]}
    write(tmp_path / "pipeline_cpu.json", result)
    body = rf.render_block("pipeline", tmp_path)
    assert ("`python benchmarks/pipeline.py --out benchmarks/results/pipeline_cpu.json --base <outside>/base "
            "--set model.base=<outside>/m --set x=1` at commit") in body
    assert not rf.provenance_problems(tmp_path)


def test_a_line_quoting_a_machine_path_is_reported(tmp_path: Path) -> None:
    slash = "/"
    doc = tmp_path / "x.md"
    doc.write_text(f"Run `python {slash}work/main/benchmarks/x.py`.\nmetrics/data/x.json and ~/tmp/y are fine.\n")
    _, problems = rf.render_files([doc], tmp_path)
    quoted = [p for path, p in problems if path == doc and "absolute path" in p]
    assert len(quoted) == 1 and quoted[0].startswith("quotes an absolute path, line 1:")


def test_result_files_must_name_their_script_and_revision(tmp_path: Path) -> None:
    write(tmp_path / "good.json", pipeline_result())
    write(tmp_path / "no_script.json", {"stage_seconds": {}})
    write(tmp_path / "gone.json", {**pipeline_result(), "script": "benchmarks/no_such_script.py"})
    write(tmp_path / "no_revision.json", {**pipeline_result(), "git_revision": None})
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "report.md").write_text("# hand-written\n")
    problems = rf.provenance_problems(tmp_path)
    assert len(problems) == 4 and not any("good.json" in p for p in problems)
    assert any("report.md: not a JSON result file" in p for p in problems)


def test_experiment_block_shows_the_metrics_diff_and_the_paired_gain(tmp_path: Path) -> None:
    diff = {"metrics/summary.json": {"validation_loss": {"old": 1.7458, "new": 1.71, "diff": -0.0358},
                                     "rougeL.finetuned": {"old": 0.2847, "new": 0.3, "diff": 0.0153},
                                     "rougeL.difference": {"old": 0.0395, "new": 0.0548, "diff": 0.0153},
                                     "train_seconds": {"old": 340.6, "new": 330.0, "diff": -10.6}}}
    gain = {"difference": 0.0153, "ci_low": -0.01, "ci_high": 0.04, "p_value": 0.25, "p_value_at_floor": False,
            "confidence": 0.95}
    write(tmp_path / "data_experiment.json",
          {**header("benchmarks/experiment_vs_baseline.py"), "baseline_commit": COMMIT,
           "params_set": ["data.filters.min_answer_words=12"], "stage_seconds": {"prepare": 9.0, "train": 300.0},
           "metrics_diff": diff, "gain_over_baseline": {"rougeL": gain}})
    body = rf.render_block("data_experiment", tmp_path)
    assert "`dvc exp run -S data.filters.min_answer_words=12` against the baseline `0123456789`" in body
    assert "reran prepare (9 s), train (300 s), **309 s** in all." in body
    assert "| `validation_loss` | 1.7458 | 1.7100 | -0.0358 |" in body
    assert "| `rougeL.difference` | 0.0395 | 0.0548 | +0.0153 |" in body and "train_seconds" not in body
    assert "| rougeL | +0.0153 [-0.0100, +0.0400] | 0.250 |" in body and "(95% bootstrap interval" in body
    assert "No metric's interval excludes zero" in body


def test_eval_cpu_block_shows_each_variant_per_batch_size_and_whether_predictions_matched(tmp_path: Path) -> None:
    seconds = {"spans@16": [70.0, 72.0], "whole_cache@16": [75.0, 77.0], "spans@64": [40.0, 42.0],
               "whole_cache@64": [50.0, 52.0]}
    result = {**header("benchmarks/eval_cpu.py"), "examples": 64, "new_tokens": 3671, "max_new_tokens": 96,
              "seconds": seconds, "median_seconds": {key: sum(v) / 2 for key, v in seconds.items()},
              "identical_predictions": True}
    write(tmp_path / "eval_cpu.json", result)
    body = rf.render_block("eval_cpu", tmp_path)
    assert "| Decode attention over | batch 64 | batch 16 |" in body
    assert "| each row's span (the lab's) | 41.0 | 71.0 |" in body and "| the whole cache | 51.0 | 76.0 |" in body
    assert "identical in every run" in body and "over 2 alternating rounds" in body
    write(tmp_path / "eval_cpu.json", {**result, "identical_predictions": False})
    assert "**The predictions differed between runs.**" in rf.render_block("eval_cpu", tmp_path)
