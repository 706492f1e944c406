"""One model's evaluation on the real embedded model: generation, scores and aggregates."""

from lab.eval.evaluation import evaluate

from .conftest import make_config

EXAMPLES = [
    {"input": [{"role": "user", "content": "What does `numpy.argsort` do?"}],
     "reference": "Returns the indices that would sort an array.", "source": "numpy"},
    {"input": [{"role": "user", "content": "Hi"}], "reference": "Hello! How can I help?", "source": "chat"},
]


def test_evaluate_scores_every_example_and_records_how_it_generated(base_model, tokenizer):
    config = make_config({"evaluate": {"max_new_tokens": 8, "semantic_similarity": False,
                                       "rouge_types": ["rouge1", "rougeL"]},
                          "compare": {"headline_metric": "rougeL"}})
    rows, metrics = evaluate(config.evaluation, base_model, tokenizer, EXAMPLES)
    assert [row["reference"] for row in rows] == [e["reference"] for e in EXAMPLES]
    assert all(set(row["scores"]) == {"rouge1", "rougeL"} and row["prediction"] for row in rows)
    assert all(row["new_tokens"] <= 8 for row in rows)
    assert metrics["device"] == "cpu" and 0 <= metrics["rouge1"] <= 1 and "semantic" not in metrics
    assert metrics["generation"]["decoder"] == "static" and metrics["generation"]["max_new_tokens"] == 8
    assert metrics["rouge_config"] == {"types": ["rouge1", "rougeL"], "use_stemmer": True, "tokenizer": "default"}
    assert metrics["semantic_model"] is None


def test_evaluate_records_format_metrics_per_example_and_their_coverage(monkeypatch):
    # Generation stubbed: this is about scoring, and the real model runs in the test above.
    from types import SimpleNamespace

    import lab.eval.evaluation

    predictions = ["1. 2 + 2 = 4.\nAnswer: 4", "Answer: 5", "Hello there"]
    outputs = [{"prediction": p, "hit_max_new_tokens": False, "prompt_truncated": False, "new_tokens": 3}
               for p in predictions]
    monkeypatch.setattr(lab.eval.evaluation, "generate", lambda *args, **kwargs: (outputs, {"decoder": "stub"}))
    examples = [{"id": f"math-{i}", "source": "math", "input": [{"role": "user", "content": "Solve it."}],
                 "reference": "2 + 2 = 4.\nAnswer: 4"} for i in range(2)] + [{**EXAMPLES[1], "id": "chat"}]
    config = make_config({"data": {"answer_format": "steps"}, "evaluate": {"semantic_similarity": False}})
    model = SimpleNamespace(device=SimpleNamespace(type="cpu"))
    rows, metrics = evaluate(config.evaluation, model, None, examples)
    assert [row["format_scores"] for row in rows] == [
        {"format_valid": 1.0, "math_exact_match": 1.0}, {"format_valid": 0.0, "math_exact_match": 0.0},
        {"format_valid": 0.0, "math_exact_match": None}]
    assert metrics["answer_format"] == "steps"
    assert metrics["format_valid"] == {"mean": 0.3333, "examples": 3}
    assert metrics["math_exact_match"] == {"mean": 0.5, "examples": 2}


def test_the_finetuned_models_base_is_16_bit_or_quantized_as_trained(monkeypatch):
    import pytest
    import torch

    from lab.core.errors import RuntimeConfigError
    from lab.eval.evaluation import base_quantization

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    as_trained = {"evaluate": {"finetuned_base": "as_trained"}}
    assert base_quantization(make_config().evaluation, finetuned=True) == "none"
    # The base model: always 16-bit.
    assert base_quantization(make_config(as_trained).evaluation, finetuned=False) == "none"
    # train.quantization: auto resolves to none on CPU, so as_trained is the same base there.
    assert base_quantization(make_config(as_trained).evaluation, finetuned=True) == "none"
    with pytest.raises(RuntimeConfigError, match="train.quantization=4bit needs a CUDA GPU"):
        base_quantization(make_config({**as_trained, "train": {"quantization": "4bit"}}).evaluation, finetuned=True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert base_quantization(make_config(as_trained).evaluation, finetuned=True) == "4bit"
    eight_bit = make_config({**as_trained, "train": {"quantization": "8bit"}})
    assert base_quantization(eight_bit.evaluation, finetuned=True) == "8bit"
