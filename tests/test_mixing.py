"""data.mix (extra sources, proportions with up-sampling) and data.order (the curriculum), on small
hand-made datasets; and the order the trainer really reads the training rows in."""

import json
from collections import Counter

import pytest

from lab.core.errors import ConfigError, DataError
from lab.data.mixing import curriculum_order, draw, mix_training, target_counts

from .conftest import make_config


def conversation(name: str, source: str, words: int = 3, score: float | None = None) -> dict:
    return {"id": name, "source": source, "score": score,
            "messages": [{"role": "user", "content": f"Question {name}?"},
                         {"role": "assistant", "content": " ".join(["word"] * words)}]}


def pool(sizes: dict[str, int]) -> list[dict]:
    return [conversation(f"{source}-{i}", source) for source, size in sizes.items() for i in range(size)]


def data_config(proportions=None, cap=None, **data):
    return make_config({"data": {"mix": {"proportions": proportions}, "max_train_examples": cap, **data}}).data


def test_shares_split_the_total_exactly_and_counts_are_kept_as_given():
    available = Counter({"docs": 100, "code": 10, "math": 10})
    assert target_counts(available, {"docs": 0.5, "code": 0.25, "math": 0.25}, 10) == {"code": 3, "docs": 5, "math": 2}
    assert target_counts(available, {"docs": 2.0, "math": 1.0}, 30) == {"docs": 20, "math": 10}
    assert target_counts(available, {"docs": 7, "code": 25}, 999) == {"code": 25, "docs": 7}


def test_an_unknown_source_is_an_error_listing_the_sources_present():
    with pytest.raises(DataError, match=r"data.mix.proportions: \['maths'\] not among the sources of the training "
                                        r"pool; sources present \(rows\): code \(10\), docs \(100\)"):
        target_counts(Counter({"docs": 100, "code": 10}), {"docs": 0.5, "maths": 0.5}, 10)


def test_draw_samples_without_replacement_then_repeats_whole_copies_plus_a_sample():
    import random

    indices = list(range(5))
    chosen = draw(indices, 3, random.Random(0))
    assert len(chosen) == 3 and len(set(chosen)) == 3
    chosen = draw(indices, 12, random.Random(0))
    assert Counter(Counter(chosen).values()) == {3: 2, 2: 3}  # every row twice, two of them a third time


def test_weights_split_the_capped_total_and_up_sampling_repeats_are_counted():
    rows = pool({"docs": 40, "code": 6, "math": 20})
    data = data_config({"docs": 0.5, "code": 0.25, "math": 0.25}, cap=40)
    train, repeats = mix_training(rows, data, seed=1)
    assert Counter(r["source"] for r in train) == {"docs": 20, "code": 10, "math": 10}
    assert repeats == {"code": 4}
    docs = [r["id"] for r in train if r["source"] == "docs"]
    assert len(set(docs)) == 20  # down-sampled without replacement
    assert Counter(Counter(r["id"] for r in train if r["source"] == "code").values()) == {1: 2, 2: 4}
    assert mix_training(rows, data, seed=1) == (train, repeats)  # seeded
    assert mix_training(rows, data, seed=2)[0] != train


def test_weights_without_a_cap_split_the_whole_pool_and_unnamed_sources_get_no_rows():
    rows = pool({"docs": 30, "code": 5, "math": 5})
    train, repeats = mix_training(rows, data_config({"docs": 1.0, "code": 1.0}), seed=0)
    assert Counter(r["source"] for r in train) == {"docs": 20, "code": 20}
    assert repeats == {"code": 15}


def test_counts_fix_each_source_and_may_not_exceed_the_cap():
    rows = pool({"docs": 30, "math": 5})
    train, repeats = mix_training(rows, data_config({"docs": 7, "math": 8}), seed=0)
    assert Counter(r["source"] for r in train) == {"docs": 7, "math": 8} and repeats == {"math": 3}
    with pytest.raises(ConfigError, match=r"data.mix.proportions: .* counts summing to at most "
                                          r"data.max_train_examples \(10\)"):
        data_config({"docs": 7, "math": 8}, cap=10)


@pytest.mark.parametrize(
    ("proportions", "message"),
    [
        ({"docs": 0.5, "math": 1}, "all counts (ints, e.g. 100) or all shares (floats"),
        ({"docs": -0.5, "math": 1.0}, "values >= 0 with a positive sum"),
        ({}, "a non-empty mapping"),
        ([0.5], "data.mix.proportions: expected a mapping of names to values"),
    ],
)
def test_impossible_proportions_are_config_errors(proportions, message):
    with pytest.raises(ConfigError, match="data.mix.proportions") as error:
        data_config(proportions)
    assert message in str(error.value)


def test_curriculum_by_length_score_and_domain():
    rows = [conversation("a", "math", 9, 4.0), conversation("b", "docs", 2, None), conversation("c", "code", 5, 1.0),
            conversation("d", "docs", 7, 3.0), conversation("e", "other", 1, 2.0)]
    by = {key: [r["id"] for r in curriculum_order(rows, data_config(curriculum_key=key), seed=0)]
          for key in ("length", "score", "domain")}
    assert by["length"] == ["e", "b", "c", "d", "a"]
    assert by["score"] == ["b", "c", "e", "d", "a"]  # no score first, the best rows last
    assert by["domain"][:2] in (["b", "d"], ["d", "b"]) and by["domain"][2:] == ["c", "a", "e"]  # unlisted last
    custom = data_config(curriculum_key="domain", curriculum_domains=["math", "code"])
    assert [r["id"] for r in curriculum_order(rows, custom, seed=0)][:2] == ["a", "c"]


def test_curriculum_ties_are_in_a_seeded_random_order():
    rows = [conversation(str(i), "docs", 3) for i in range(30)]
    data = data_config(curriculum_key="length")
    first = [r["id"] for r in curriculum_order(rows, data, seed=0)]
    assert first == [r["id"] for r in curriculum_order(rows, data, seed=0)]
    assert first != [r["id"] for r in rows] and first != [r["id"] for r in curriculum_order(rows, data, seed=1)]


def test_curriculum_and_group_by_length_cannot_both_order_the_data():
    with pytest.raises(ConfigError, match="train.group_by_length: True is not allowed; it must be false when "
                                          "data.order is curriculum"):
        make_config({"data": {"order": "curriculum"}, "train": {"group_by_length": True}})


def write_rows(path, rows) -> str:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return str(path)


def sharegpt(i: int, source: str | None, words: int) -> dict:
    row = {"conversations": [{"from": "human", "value": f"Tell me fact number {i} please."},
                             {"from": "gpt", "value": " ".join(f"fact{i}w{j}" for j in range(words))}]}
    return {**row, "source": source} if source else row


def test_prepare_mixes_an_extra_source_to_proportions_and_writes_a_curriculum(tmp_path):
    from lab.data.prepare import prepare

    main = write_rows(tmp_path / "main.jsonl", [sharegpt(i, "big", 3 + i % 7) for i in range(80)])
    extra = write_rows(tmp_path / "extra.jsonl", [sharegpt(100 + i, None, 3 + i % 5) for i in range(12)])
    config = make_config({"data": {
        "source": main, "mix": {"extra_sources": [{"source": extra, "format": "sharegpt"}],
                                "proportions": {"big": 0.5, extra: 0.5}},
        "eval_examples": 2, "validation_examples": 4, "test_size": 0.25, "max_train_examples": 40,
        "order": "curriculum", "curriculum_key": "length"}})
    result = prepare(config)
    stats, train = result["stats"], result["train"]
    assert Counter(r["source"] for r in train) == {"big": 20, extra: 20}
    per_source = stats["per_source"]
    # The extra rows have no source column: they are named by their entry's source.
    extra_pool = per_source[extra]["in"] - per_source[extra]["test"] - per_source[extra]["validation"]
    assert per_source[extra]["repeats"] == 20 - extra_pool == stats["mix"]["repeats"]
    assert per_source[extra]["train"] == 20 and per_source[extra]["train_unique"] == extra_pool
    for counts in per_source.values():
        assert counts["in"] == (sum(counts["removed"].values()) + counts["test"] + counts["validation"]
                                + counts["not_sampled"] + counts["train_unique"])
    lengths = [len(r["messages"][-1]["content"].split()) for r in train]
    assert lengths == sorted(lengths) and stats["order"] == {"order": "curriculum", "curriculum_key": "length"}


def test_the_trainer_reads_a_curriculum_in_file_order_and_shuffles_otherwise(embedded_model_dir, tokenizer):
    """Builds the real SFTTrainer on the embedded model (no training step) and reads the order of the
    examples its train dataloader yields: file order with a curriculum, a shuffle without."""
    from datasets import Dataset
    from trl import SFTTrainer

    from lab.model.runtime import resolve_runtime
    from lab.train.arguments import sft_config
    from lab.train.backends import load_trainable_model
    from lab.train.masking import tokenize_for_training

    conversations = [{"messages": [{"role": "user", "content": f"Say {i}."},
                                   {"role": "assistant", "content": " ".join(["ok"] * (i + 1))}]}
                     for i in range(12)]
    seen = {}
    for order in ("curriculum", "shuffle"):
        config = make_config({"data": {"order": order}, "train": {"padding_free": False, "batch_size": 1}})
        runtime = resolve_runtime(config.train)
        model, _ = load_trainable_model(embedded_model_dir, config.training, runtime)
        rows, _ = tokenize_for_training(tokenizer, conversations, 64, "truncate")
        trainer = SFTTrainer(model=model, args=sft_config(config.training, runtime, embedded_model_dir.parent / order),
                             train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
        # Each example's answer has i + 1 loss tokens plus its end of turn: the count names the row.
        seen[order] = [int((batch["labels"] != -100).sum()) - 3 for batch in trainer.get_train_dataloader()]
    assert seen["curriculum"] == list(range(12))
    assert sorted(seen["shuffle"]) == list(range(12)) and seen["shuffle"] != list(range(12))
