"""One model's evaluation on the real embedded model: generation, scores and aggregates."""

from lab.evaluation import evaluate

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
    rows, metrics = evaluate(config, base_model, tokenizer, EXAMPLES)
    assert [row["reference"] for row in rows] == [e["reference"] for e in EXAMPLES]
    assert all(set(row["scores"]) == {"rouge1", "rougeL"} and row["prediction"] for row in rows)
    assert all(row["new_tokens"] <= 8 for row in rows)
    assert metrics["device"] == "cpu" and 0 <= metrics["rouge1"] <= 1 and "semantic" not in metrics
    assert metrics["generation"]["decoder"] == "generate" and metrics["generation"]["max_new_tokens"] == 8
    assert metrics["rouge_config"] == {"types": ["rouge1", "rougeL"], "use_stemmer": True, "tokenizer": "default"}
    assert metrics["semantic_model"] is None
