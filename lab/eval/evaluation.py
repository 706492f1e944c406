"""One model's evaluation: greedy generation on the eval sample, scored against the references
with ROUGE (precision, recall, F-measure) and, with evaluate.semantic_similarity, the cosine
similarity of sentence embeddings, and on the format metrics of data.answer_format (lab.eval.format_metrics);
then the aggregates the metrics file holds."""

from __future__ import annotations

from typing import Any

from lab.core.config import EvaluationSetup
from lab.eval.format_metrics import aggregate_format, format_scores
from lab.eval.generation import generate
from lab.eval.scoring import aggregate, rouge_scores
from lab.eval.semantic import EMBEDDING_MODEL, semantic_similarity
from lab.model.loading import no_library_progress_bars
from lab.model.runtime import resolve_device, resolve_quantization


def base_quantization(setup: EvaluationSetup, finetuned: bool) -> str:
    """The quantization of the base the evaluated model runs on: "none" (16-bit) for the base model and,
    with evaluate.finetuned_base: full, for the fine-tuned one; with as_trained, the fine-tuned
    model's base is quantized as training resolved train.quantization on this machine (which fails,
    naming the param, where that quantization cannot run)."""
    if not finetuned or setup.evaluate.finetuned_base == "full":
        return "none"
    return resolve_quantization(setup.train_quantization, resolve_device() == "cuda")


def score(setup: EvaluationSetup, predictions: list[str], references: list[str]) -> list[dict[str, Any]]:
    """Per-example scores: ROUGE per evaluate.rouge_types, plus "semantic" where configured."""
    ev = setup.evaluate
    scores = rouge_scores(predictions, references, ev.rouge_use_stemmer, tuple(ev.rouge_types), ev.rouge_tokenizer)
    if ev.semantic_similarity:
        with no_library_progress_bars():  # the embedding model's weight loading: a bar that only flashes by
            similarities = semantic_similarity(predictions, references)
        for example_scores, similarity in zip(scores, similarities, strict=True):
            example_scores["semantic"] = similarity
    return scores


def evaluate(setup: EvaluationSetup, model: Any, tokenizer: Any,
             examples: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Generate for every eval example (its `input` conversation), score the prediction against its
    `reference`, score its format (data.answer_format), and aggregate; returns (one row per example, the
    metrics)."""
    ev = setup.evaluate
    outputs, timing = generate(model, tokenizer, [e["input"] for e in examples], ev.batch_size, ev.max_new_tokens,
                               ev.max_input_tokens, decode=ev.decode, cuda_graph=ev.cuda_graph)
    scores = score(setup, [o["prediction"] for o in outputs], [e["reference"] for e in examples])
    answer_format = setup.answer_format
    rows = [{**example, **output, "scores": example_scores,
             "format_scores": format_scores(example, output["prediction"], answer_format)}
            for example, output, example_scores in zip(examples, outputs, scores, strict=True)]
    metrics = {"device": model.device.type, **aggregate(rows), **aggregate_format(rows, answer_format)}
    metrics["generation"] = {**timing, "batch_size": ev.batch_size, "max_new_tokens": ev.max_new_tokens,
                             "greedy": True}
    metrics["rouge_config"] = {"types": ev.rouge_types, "use_stemmer": ev.rouge_use_stemmer,
                               "tokenizer": ev.rouge_tokenizer}
    metrics["semantic_model"] = EMBEDDING_MODEL if ev.semantic_similarity else None
    return rows, metrics
