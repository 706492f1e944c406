"""How each benchmark's result file reads in the README and docs/: one renderer per result, and the number
formats they share (benchmarks/readme_figures.py puts them into the figure blocks of README.md and docs/*.md)."""

from __future__ import annotations

from typing import Any


def number(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def percent(share: float | None) -> str:
    return "–" if share is None else f"{100 * share:.1f}%"


def machine_text(machine: dict[str, Any]) -> str:
    """One line: GPU (if any), CPU with its vector extensions (and the cap on them, if one was set),
    cores, memory, Python and torch."""
    parts = []
    if machine.get("gpu"):
        parts.append(machine["gpu"] + (f" (CUDA {machine['cuda']})" if machine.get("cuda") else ""))
    extensions = ", ".join(machine.get("vector_extensions", []))
    cpu = f"{machine['cpu']}{f' ({extensions})' if extensions else ''}"
    if machine.get("isa_limits"):
        limits = ", ".join(f"{name}={value}" for name, value in machine["isa_limits"].items())
        cpu += f" capped to {machine.get('torch_cpu_capability', 'fewer')} kernels ({limits})"
    parts += [f"{cpu}, {machine['cores']} cores, {machine['memory_gib']} GiB", f"Python {machine['python']}",
              f"torch {machine.get('torch', 'not installed')}"]
    return "; ".join(parts)



def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def render_pipeline(result: dict[str, Any]) -> str:
    """Stage times of one forced `dvc exp run`, and what that run trained and generated."""
    rows = [[f"`{stage}`", number(seconds)] for stage, seconds in result["stage_seconds"].items()]
    rows.append(["**all stages**", f"**{number(result['total_seconds'])}**"])
    train, ran = result["train"], result["train"]["ran"]
    generation = result["generation"]
    settings = ", ".join(f"`{setting}`" for setting in result["params_set"]) or "none (params.yaml as committed)"
    return (f"Params set: {settings}. {result['rows']['train']} training conversations, "
            f"{result['rows']['eval']} eval examples.\n\n"
            + table(["Stage (`dvc exp run --force`)", "Seconds"], rows)
            + f"\n\nTraining: backend `{ran['backend']}` on `{ran['device']}` ({ran['dtype']}, quantization "
            f"`{ran['quantization']}`), {train['steps']} steps at {number(train['tokens_per_s'])} tokens/s, peak "
            f"memory {number(train['peak_memory_gib'], 2)} GiB. Generation ({generation['base']['decoder']}): "
            f"{number(generation['base']['seconds'])} s for the base model, "
            f"{number(generation['finetuned']['seconds'])} s for the fine-tuned one.")


def render_scoring_cpu(result: dict[str, Any]) -> str:
    steps = result["step_seconds"]
    sentence = (f"{result['examples']} examples, two models, every metric and the bootstrap: "
                f"**{number(result['total_seconds'], 2)} s** in all, {number(steps['semantic_model_load'], 2)} s of it "
                f"loading the embedding model; the compare stage's statistics take "
                f"{number(steps['compare_stage_all_statistics'], 2)} s. Load average (1 min) before: "
                f"{result['load_average_1_5_15min']['before'][0]}.")
    rows = [[f"`{step}`", number(seconds, 3)] for step, seconds in steps.items()]
    return sentence + "\n\n" + table(["Step", "Seconds"], rows)


def train_label(run: dict[str, Any]) -> str:
    """'Unsloth, padding-free, checkpointing (unsloth)' from what a run records."""
    backend = {"unsloth": "Unsloth", "hf": "baseline"}.get(run["backend"], run["backend"])
    batching = "padding-free" if run.get("padding_free") else "padded"
    if run.get("group_by_length"):
        batching += ", length-grouped"
    checkpointing = "no checkpointing"
    if run.get("checkpointing"):
        mode = run.get("checkpointing_mode")
        checkpointing = f"checkpointing ({mode})" if mode else "checkpointing"
    split = f", passes of up to {run['micro_batch_tokens']:,} tokens (auto)" if run.get("micro_batch_tokens") else ""
    varlen = ", varlen attention" if "varlen" in (run.get("attention") or "") else ""
    return f"{backend}, {batching}, {checkpointing}{split}{varlen}"


def _step_spike(step_s: list[float] | None, untimed: int) -> str | None:
    """'4.28 s against a median of 0.47 s' where one timed step took over 3x the median (step_s[i] is
    step i + 2's duration, so the timed steps start at index untimed - 1)."""
    timed = sorted(step_s[untimed - 1:]) if step_s else []
    if not timed or timed[-1] <= 3 * timed[len(timed) // 2]:
        return None
    return f"{timed[-1]:.2f} s against a median of {timed[len(timed) // 2]:.2f} s"


def render_train_profile(result: dict[str, Any]) -> str:
    """torch.profiler's view of a training step: kernels launched, GPU-busy time against wall time."""
    rows = [[train_label({**run, "padding_free": True}), number(run["kernels_per_step"], 0),
             number(run["gpu_busy_s_per_step"], 3), number(run["wall_s_per_step"], 3),
             percent(run["gpu_busy_fraction"]), number(run["peak_allocated_gib"], 2)]
            for run in result["results"].values() if "kernels_per_step" in run]
    return (f"{result['profiled_steps']} optimizer steps profiled after {result['warmup_steps']} untimed, 8 examples "
            "each; the kernel tables (by GPU time and by host time) are in `benchmarks/results/profiles/`. The "
            "profiler's tracing slows the host, so wall time here is longer, and the busy share lower, than "
            "without it.\n\n"
            + table(["Variant", "Kernels per step", "GPU busy per step (s)", "Wall per step, profiled (s)",
                     "GPU busy share", "Peak GPU memory (GiB)"], rows))


def render_train_throughput(result: dict[str, Any]) -> str:
    training, runs = result["training"], result["results"]
    rows = []
    for run in runs.values():
        if "tokens_per_s" in run:
            rows.append([train_label(run), number(run["tokens_per_s"]), number(run["peak_allocated_gib"], 2),
                         percent(run.get("mfu_4n")), percent(run.get("mfu_6n"))])
        else:
            rows.append([train_label(run) if "backend" in run else run.get("variant", "?"),
                         f"failed: {str(run.get('error'))[:60]}", "", "", ""])
    context = (f"{result['model']['parameters']:,} parameters; "
               f"{training['steps']} optimizer steps per variant, the first {training['warmup_steps_untimed']} "
               f"untimed; {training['batch_size'] * training['grad_accum']} examples per optimizer step (batch "
               f"{training['batch_size']} × grad-accum {training['grad_accum']}, or token-budget passes); "
               "example lengths "
               f"{result['data']['distribution']}; bf16 peak assumed {result['peak_bf16_tflops_assumed']} TFLOP/s.")
    text = context + "\n\n" + table(
        ["Variant", "tokens/s", "peak GPU memory (GiB)", "MFU (4·N)", "MFU (6·N, full fine-tuning's convention)"],
        rows)
    ratios = [f"{train_label(runs[pair[0]])} over {train_label(runs[pair[1]])}: {ratio}×"
              for key, ratio in result.get("speedups", {}).items() if (pair := key.split("_vs_")) and len(pair) == 2
              and pair[0] in runs and pair[1] in runs]
    if ratios:
        text += "\n\nSame checkpointing setting on both sides:\n\n" + "\n".join(f"- {line}" for line in ratios)
    spikes = [f"{train_label(run)}: {spike}" for run in runs.values()
              if (spike := _step_spike(run.get("step_s"), training["warmup_steps_untimed"]))]
    if spikes:
        text += ("\n\nOne timed step far above the others (a one-off cost such as a recompile for a new shape, "
                 "counted in tokens/s above):\n\n" + "\n".join(f"- {line}" for line in spikes))
    return text


EVAL_LABELS = {
    "hf_dynamic_b100": "transformers `generate`, dynamic cache, batch 100",
    "static_graph_b100": "lab decoder, CUDA graph, batch 100",
    "static_graph_b50": "lab decoder, CUDA graph, batch 50",
    "static_eager_b100": "lab decoder without the CUDA graph, batch 100",
    "one_at_a_time_static_graph": "lab decoder, one prompt at a time",
    "one_at_a_time_hf_dynamic": "transformers `generate`, one prompt at a time",
}

DECODE_STEP_LABELS = {"static_graph_b100": "with the CUDA graph", "static_eager_b100": "without it"}


def render_eval_throughput(result: dict[str, Any]) -> str:
    variants = result["variants"]
    rows = [[EVAL_LABELS.get(name, f"`{name}`"), str(run["sequences"]), number(run["seconds"], 2),
             number(run["tokens_per_s"]), number(run["first_call_s"], 2) if "first_call_s" in run else "–",
             number(run["peak_allocated_gib"], 2) if "peak_allocated_gib" in run else "–"]
            for name, run in variants.items() if isinstance(run, dict) and "tokens_per_s" in run]
    text = f"{result['parameters']:,} parameters.\n\n" + table(
        ["Variant", "Sequences", "Seconds (steady)", "new tokens/s", "First call (s)", "Peak GPU memory (GiB)"], rows)
    fresh = [run["first_call_s"] for run in result.get("fresh_process", {}).get("static_graph_b100", [])
             if "first_call_s" in run]
    if len(fresh) >= 2:
        text += (f"\n\nBase + fine-tuned evaluation (200 generations) as two fresh evaluate processes, first call "
                 f"each: **{number(fresh[0] + fresh[1])} s** ({number(fresh[0], 2)} + {number(fresh[1], 2)}).")
    if "decode_step_ms" in variants:
        steps = ", ".join(f"{ms} ms {DECODE_STEP_LABELS.get(name, name)}"
                          for name, ms in variants["decode_step_ms"].items())
        text += f" One decode step at batch 100 (steady time less the prefill's, per new token): {steps}."
    agreement = variants.get("agreement", {}).get("static_graph_vs_hf_dynamic_b100")
    if agreement:
        text += (f" The lab decoder's continuations equal `generate`'s in {percent(agreement['identical'])} of "
                 f"prompts (mean common prefix {agreement['mean_prefix']} tokens).")
    return text


def render_dedup(result: dict[str, Any]) -> str:
    """Near-dedup at FineTome's scale: time, memory, and recall and precision on planted copies."""
    parameters, seconds, memory = result["parameters"], result["seconds"], result["peak_memory_mib"]
    return (f"{result['rows']:,} conversations with {result['planted']['exact']:,} exact and "
            f"{result['planted']['near']:,} near copies planted (Jaccard threshold {parameters['threshold']}, "
            f"{parameters['num_perm']} permutations, {parameters['shingle_words']}-word shingles): "
            f"**{number(seconds['total'])} s** ({number(seconds['exact'])} exact, {number(seconds['near'])} near), "
            f"{number(memory['dedup_added'], 0)} MiB added to a peak of {number(memory['process_peak'], 0)} MiB; "
            f"recall {result['recall']:.4f}, precision {result['precision']:.4f} (load average "
            f"{result['load_average']['before']} before).")


def render_experiment(result: dict[str, Any]) -> str:
    """One experiment against the committed baseline: `dvc metrics diff`'s headline rows, and the
    paired gain of the experiment's fine-tuned model over the baseline's on the same eval examples."""
    diff = next(iter(result["metrics_diff"].values()), {})
    keys = ["validation_loss"] + [f"{m}.{part}" for m in result["gain_over_baseline"]
                                  for part in ("finetuned", "difference")]
    rows = [[f"`{key}`", number(diff[key]["old"], 4), number(diff[key]["new"], 4), f"{diff[key]['diff']:+.4f}"]
            for key in keys if key in diff]
    gains = [[metric, f"{test['difference']:+.4f} [{test['ci_low']:+.4f}, {test['ci_high']:+.4f}]",
              f"{'<' if test['p_value_at_floor'] else ''}{test['p_value']:.3f}"]
             for metric, test in result["gain_over_baseline"].items()]
    confidence = round(100 * next(iter(result["gain_over_baseline"].values()))["confidence"])
    clear = [metric for metric, test in result["gain_over_baseline"].items()
             if test["ci_low"] > 0 or test["ci_high"] < 0]
    verdict = (f"The interval excludes zero for {', '.join(clear)}." if clear else
               "No metric's interval excludes zero: the two runs cannot be told apart on this eval sample.")
    return (f"`dvc exp run {' '.join('-S ' + s for s in result['params_set'])}` against the baseline "
            f"`{str(result['baseline_commit'])[:10]}`; reran "
            f"{', '.join(f'{stage} ({number(seconds, 0)} s)' for stage, seconds in result['stage_seconds'].items())}, "
            f"**{number(sum(result['stage_seconds'].values()), 0)} s** in all.\n\n"
            f"`dvc metrics diff` (baseline → experiment):\n\n"
            f"{table(['Metric', 'Baseline', 'Experiment', 'Change'], rows)}"
            f"\n\nExperiment minus baseline, both fine-tuned, paired over the same eval examples ({confidence}% "
            f"bootstrap interval, two-sided p):\n\n{table(['Metric', 'Gain', 'p'], gains)}\n\n{verdict}")


def render_rehearsal(result: dict[str, Any]) -> str:
    """The full lab rehearsed on a random-weight base: per-stage times of the slice that ran, and the
    full lab's time projected from them (benchmarks/rehearsal.py)."""
    projection, train, stages = result["projection"], result["train"], result["stage_seconds"]
    base = result.get("rehearsal_base") or {}
    rows = [[f"`{stage}`", number(seconds, 1),
             number(projection["train"]["train_stage_s"], 0) if stage == "train" else number(seconds, 1)]
            for stage, seconds in stages.items()]
    stage_table = table(["Stage", "Measured (s)", "Full lab, projected (s)"], rows)
    extra = result.get("extra_settings") or []
    return (f"{base.get('architecture', 'the model')} with **random weights** ({base.get('parameters', 0):,} "
            f"parameters; its answers are noise, so its ROUGE means nothing) on "
            f"{result['rows']['raw']:,} FineTome-shaped conversations, the full-lab command of docs/gpu.md with a "
            f"training slice of {result['rows']['train']:,} conversations ({train['steps']} optimizer steps)"
            + (f" and {', '.join(f'`{s}`' for s in extra)}" if extra else "") + ". "
            f"Training ran at **{number(train['tokens_per_s'], 0)} tokens/s**, peak GPU memory "
            f"**{number(train['peak_memory_gib'], 1)} GiB** ({train['ran']['backend']}, "
            f"{train['ran']['quantization']}, {train['ran']['dtype']}); each evaluation (100 examples x 256 "
            f"new tokens, batch 100) took {number(stages['evaluate_base'], 1)} s and "
            f"{number(stages['evaluate_finetuned'], 1)} s as stages. Projected full lab "
            f"({projection['train']['examples']:,} training conversations, {number(projection['train']['epochs'], 0)} "
            f"epoch, {number(projection['train']['tokens'] / 1e6, 1)}M tokens at the slice's rate): "
            f"**{number(projection['total_h'], 2)} h**, of which training "
            f"{number(projection['train']['train_stage_s'] / 3600, 2)} h.\n\n" + stage_table)


def render_multi_gpu(result: dict[str, Any]) -> str:
    """Data-parallel runs of the train stage: steady tokens/s, speedup over one process, the global
    batch, peak memory and how far each loss curve strays from the one-process curve at that batch."""
    runs = [run for run in result["runs"] if "error" not in run]
    single = {run["backend"]: run for run in runs if run["processes"] == 1}
    rows = []
    for run in sorted(runs, key=lambda r: (r["backend"], r["batch_scaling"] != "fixed_global", r["processes"])):
        base = single.get(run["backend"])
        speedup = f"{run['steady_tokens_per_s'] / base['steady_tokens_per_s']:.2f}×" if base else "–"
        same_batch = base and run["distributed"]["global_batch"] == base["distributed"]["global_batch"]
        stray = (f"{max(abs(a - b) for a, b in zip(run['losses'], base['losses'], strict=False)):.4f}"
                 if same_batch and run is not base else "–")
        rows.append([run["backend"], str(run["processes"]), run["batch_scaling"],
                     f"{run['distributed']['micro_batch']} × {run['distributed']['grad_accum_per_process']}",
                     str(run["distributed"]["global_batch"]), number(run["steady_tokens_per_s"], 0), speedup,
                     number(run["peak_memory_gib"], 2), stray])
    missing = [f"{run['backend']} {run['processes']} process(es) {run['batch_scaling']} ({run['error']})"
               for run in result["runs"] if "error" in run]
    note = f"\n\nNot measured in this run: {'; '.join(missing)}." if missing else ""
    return (f"{result['workload']['steps']} optimizer steps per run, steady tokens/s after the first 5; "
            "the loss column is the largest step-by-step difference from the one-process curve at the same "
            "global batch.\n\n"
            + table(["Backend", "Processes", "Scaling", "Micro-batch × accumulation per process", "Global batch",
                     "Steady tokens/s", "Speedup", "Peak GPU memory of the first process (GiB)",
                     "Max loss difference"], rows) + note)


def render_cpu_allocator(result: dict[str, Any]) -> str:
    """Each run's timed steps and page faults, and the medians' ratio."""
    labels = {"default": "glibc's default", "keep_freed": "freed memory kept mapped"}
    rows = [[labels[run["policy"]], number(run["timed_s"]), f"{run['minor_page_faults']:,}",
             number(run["system_cpu_s"]), number(run["peak_rss_gib"], 2)] for run in result["runs"]]
    medians = result["summary"]["median"]
    return (f"{result['timed_steps']} timed optimizer steps of the embedded default per run, fresh processes "
            f"alternating. Median: {number(medians['default']['timed_s'])} s with glibc's default, "
            f"{number(medians['keep_freed']['timed_s'])} s with freed memory kept mapped, "
            f"**{result['summary']['speedup_keep_freed']:.2f}×**.\n\n"
            + table(["Allocator policy", "Timed steps (s)", "Minor page faults", "System CPU (s)", "Peak RSS (GiB)"],
                    rows))


def render_eval_cpu(result: dict[str, Any]) -> str:
    """Median generation seconds per decode-attention variant and batch size, and whether every run
    produced the same predictions."""
    labels = {"spans": "each row's span (the lab's)", "whole_cache": "the whole cache"}
    medians = result["median_seconds"]
    batch_sizes = sorted({int(key.split("@")[1]) for key in medians}, reverse=True)
    rows = [[labels[name], *[number(medians[f"{name}@{size}"]) for size in batch_sizes]] for name in labels]
    same = ("The predictions were identical in every run." if result["identical_predictions"] else
            "**The predictions differed between runs.**")
    return (f"{result['examples']} eval prompts, {result['new_tokens']:,} new tokens (at most "
            f"{result['max_new_tokens']} each), median seconds over {len(next(iter(result['seconds'].values())))} "
            f"alternating rounds. {same}\n\n"
            + table(["Decode attention over", *[f"batch {size}" for size in batch_sizes]], rows))
