"""Time every scoring step of one base-vs-fine-tuned comparison of 100 examples on CPU.

usage: python benchmarks/scoring_cpu.py [--examples 100] [--out benchmarks/results/scoring_cpu.json]

The examples are built from numpy's own docstrings, shaped like the lab's eval rows: the
reference is a docstring's summary (capped at 60 words, as the eval references run 10-60), the
"fine-tuned" prediction a short paraphrase-like edit of it, the "base" prediction a longer answer
that mixes it with unrelated docstring text (the base model runs about twice as long). Steps:
ROUGE for both models, semantic similarity (model load timed apart), length-matched ROUGE, and the
paired bootstrap (1000 and 10000 resamples) on every ROUGE type and semantic similarity, and the
compare stage's whole computation (every statistic the report shows), all with params.yaml's settings.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lab.core.config import LabConfig
from lab.core.io import write_json
from lab.core.params import load_config
from lab.core.provenance import result_header
from lab.eval import stats
from lab.eval.comparison import compare
from lab.eval.scoring import metric_label, rouge_scores
from lab.eval.semantic import load_embedding_model, semantic_similarity

SECTION = re.compile(r"\n\s*(Parameters|Returns|See Also|Notes|Examples)\s*\n\s*-{3,}")


def numpy_docstrings() -> list[tuple[str, str, str]]:
    """(name, kind, docstring) for numpy's public callables with a real docstring, sorted by name."""
    seen, found = set(), []
    for name in sorted(np.__dict__):
        obj = np.__dict__[name]
        doc = getattr(obj, "__doc__", None)
        if name.startswith("_") or not callable(obj) or not isinstance(doc, str) or doc in seen:
            continue
        if len(doc.split()) >= 60:
            seen.add(doc)
            found.append((name, type(obj).__name__, doc))
    return found


def build_rows(count: int, seed: int = 0) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """Eval-like rows (id, source, input, reference) and the two models' predictions."""
    docs = numpy_docstrings()
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(docs), size=count, replace=False)
    rows, base, finetuned = [], [], []
    for position, index in enumerate(picked):
        name, kind, doc = docs[index]
        summary = SECTION.split(doc)[0].split()
        reference = " ".join(summary[:60])
        words = reference.split()
        # Fine-tuned: the reference with ~25% of words dropped and a few swapped for other words.
        kept = [w for w in words if rng.random() > 0.25] or words[:3]
        other = docs[(index + 7) % len(docs)][2].split()
        for slot in rng.choice(len(kept), size=min(3, len(kept)), replace=False):
            kept[slot] = other[int(rng.integers(len(other)))]
        # Base: the gist of the reference, then verbose unrelated docstring text, ~2x as long.
        start = int(rng.integers(0, max(1, len(other) - 60)))
        verbose = words[: len(words) // 2] + other[start:start + len(words) + 10]
        rows.append({"id": f"numpy.{name}", "source": kind,
                     "input": [{"role": "user", "content": f"What does `numpy.{name}` do?"}], "reference": reference})
        finetuned.append(" ".join(kept))
        base.append(" ".join(verbose) if position % 10 else "")  # an empty answer now and then, as real runs have
    return rows, base, finetuned


def timed(seconds: dict[str, float], step: str, call: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = call()
    seconds[step] = round(time.perf_counter() - started, 3)
    print(f"{step}: {seconds[step]} s", flush=True)
    return result


def time_bootstraps(seconds: dict[str, float], values: dict[str, dict[str, list[float]]],
                    confidence: float) -> dict[int, dict[str, Any]]:
    """The paired bootstrap of every metric at 1,000 and 10,000 resamples, each timed."""
    metrics = list(values["base"])
    return {resamples: timed(seconds, f"bootstrap_{resamples}x{len(metrics)}_metrics", lambda r=resamples: {
        name: stats.paired_bootstrap(values["base"][name], values["finetuned"][name], r, 0, confidence)
        for name in metrics}) for resamples in (1000, 10000)}


def score_all(rows: list[dict[str, Any]], base: list[str], finetuned: list[str], config: LabConfig) -> dict[str, Any]:
    """Run and time every step with params.yaml's scoring settings; returns the timings and a few
    computed figures as a sanity check."""
    ev, compare_config = config.evaluate, config.compare
    references, sides = [r["reference"] for r in rows], {"base": base, "finetuned": finetuned}
    rouge_settings = (ev.rouge_use_stemmer, ev.rouge_types, ev.rouge_tokenizer)
    seconds: dict[str, float] = {}
    # rouge-score (and NLTK's stemmer) is imported on first use: time that apart from scoring.
    timed(seconds, "import_rouge_score", lambda: __import__("rouge_score.rouge_scorer"))
    plain = {side: timed(seconds, f"rouge_{side}", lambda p=predictions: rouge_scores(p, references, *rouge_settings))
             for side, predictions in sides.items()}
    timed(seconds, "semantic_model_load", lambda: load_embedding_model())
    semantic = {side: timed(seconds, f"semantic_{side}", lambda p=predictions: semantic_similarity(p, references))
                for side, predictions in sides.items()}
    matched = timed(seconds, "length_matched_rouge",
                    lambda: stats.length_matched_scores(base, finetuned, references, *rouge_settings))
    values = {side: {**{name: [s[name]["fmeasure"] for s in plain[side]] for name in ev.rouge_types},
                     "semantic": semantic[side]} for side in sides}
    bootstrap = time_bootstraps(seconds, values, compare_config.confidence)
    scored = {side: [{**r, "prediction": p, "hit_max_new_tokens": False, "scores": {**s, "semantic": semantic[side][i]}}
                     for i, (r, p, s) in enumerate(zip(rows, predictions, plain[side], strict=True))]
              for side, predictions in sides.items()}
    timed(seconds, "per_source_length_gallery", lambda: (
        stats.per_source([r["source"] for r in rows], values["base"], values["finetuned"]),
        stats.length_ratio(base, references), stats.length_ratio(finetuned, references),
        stats.gallery(scored["base"], scored["finetuned"], compare_config.headline_metric,
                      compare_config.gallery_examples)))
    # What `dvc repro` runs: the compare stage's own computation, with params.yaml as committed.
    timed(seconds, "compare_stage_all_statistics",
          lambda: compare(config.comparison, scored["base"], scored["finetuned"]))
    headline = compare_config.headline_metric if compare_config.headline_metric in matched["base"] else "rougeL"
    matched_gain = float(np.mean(matched["finetuned"][headline]) - np.mean(matched["base"][headline]))
    sentence = stats.describe_length_effect(bootstrap[10000][headline]["difference"], matched_gain,
                                            stats.length_ratio(base, references)["median"],
                                            stats.length_ratio(finetuned, references)["median"],
                                            metric_label(headline))
    return {"seconds": seconds, "bootstrap_10000": bootstrap[10000], "length_effect": sentence}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/scoring_cpu.json"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load_before = os.getloadavg()
    started = time.perf_counter()
    rows, base, finetuned = timed({}, "build_examples", lambda: build_rows(args.examples))
    measured = score_all(rows, base, finetuned, load_config())
    seconds = measured["seconds"]
    result = {
        **result_header(__file__, f"score {args.examples} numpy-docstring examples for two models with every metric"),
        "load_average_1_5_15min": {"before": [round(v, 2) for v in load_before],
                                   "after": [round(v, 2) for v in os.getloadavg()]},
        "examples": args.examples,
        "mean_words": {"reference": round(float(np.mean([len(r["reference"].split()) for r in rows])), 1),
                       "base": round(float(np.mean([len(p.split()) for p in base])), 1),
                       "finetuned": round(float(np.mean([len(p.split()) for p in finetuned])), 1)},
        "step_seconds": seconds,
        "total_seconds": round(sum(seconds.values()), 2),
        "total_seconds_without_model_load": round(sum(v for k, v in seconds.items() if k != "semantic_model_load"), 2),
        "wall_seconds_including_imports_after_start": round(time.perf_counter() - started, 2),
        "bootstrap_10000": measured["bootstrap_10000"],
        "length_effect": measured["length_effect"],
    }
    write_json(args.out, result)
    print(json.dumps({k: result[k] for k in ("step_seconds", "total_seconds", "load_average_1_5_15min")}, indent=2))


if __name__ == "__main__":
    main()
