"""Each data.filters filter on small hand-made conversations, and through prepare with its counts."""

import json

import pytest

from lab.core.errors import ConfigError
from lab.data.filters import answer_text, apply_filters, symbol_share

from .conftest import make_config

OFF = {"min_answer_words": None, "max_answer_words": None, "min_score": None, "max_symbol_share": None,
       "languages": None}


def row(name: str, *answers: str, score: float | None = None, question: str = "Please explain this.") -> dict:
    messages = []
    for answer in answers:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return {"id": name, "source": "s", "score": score, "messages": messages}


def kept(rows: list[dict], **filters) -> list[str]:
    config = make_config({"data": {"filters": {**OFF, **filters}}})
    return [r["id"] for r in apply_filters(rows, config.data.filters)]


def test_all_filters_off_keep_every_row():
    rows = [row("a", "x"), row("b", "!!!", score=0.0)]
    assert kept(rows) == ["a", "b"]


def test_answer_length_is_the_last_assistant_turns_word_count():
    # "long-then-short" has a long first answer but a 1-word last answer: the last one is measured.
    rows = [row("one", "Yes."), row("three", "It sorts arrays."), row("five", "It sorts the given array."),
            row("long-then-short", "one two three four five six", "Fine.")]
    assert answer_text(rows[3]) == "Fine."
    assert kept(rows, min_answer_words=3) == ["three", "five"]
    assert kept(rows, max_answer_words=3) == ["one", "three", "long-then-short"]
    assert kept(rows, min_answer_words=2, max_answer_words=4) == ["three"]


def test_min_score_drops_lower_scores_and_keeps_rows_without_a_score():
    rows = [row("low", "a", score=3.2), row("edge", "b", score=4.0), row("high", "c", score=4.9), row("none", "d")]
    assert kept(rows, min_score=4.0) == ["edge", "high", "none"]


def test_symbol_share_counts_non_space_characters_that_are_neither_letters_nor_digits():
    assert symbol_share("ab c1") == 0.0
    assert symbol_share("a = (b)") == pytest.approx(3 / 5)
    assert symbol_share("ü→ß") == pytest.approx(1 / 3)  # letters of any script are text
    assert symbol_share("   ") == 0.0
    rows = [row("prose", "It returns the sorted array."), row("code", "np.sort(a, axis=-1)"),
            row("symbols", "¯\\_(ツ)_/¯ !!! ??? ***"), row("emoji", "🎉🎉🎉 ok")]
    assert kept(rows, max_symbol_share=0.5) == ["prose", "code"]


def test_language_filter_keeps_the_listed_languages_detected_over_all_turns():
    pytest.importorskip("py3langid", reason="requirements.txt pins py3langid: pip install -r requirements.txt")
    english = row("en", "It returns the indices that would sort an array along the given axis.",
                  question="What does numpy argsort do with an array?")
    spanish = row("es", "Devuelve los índices que ordenarían una matriz a lo largo del eje dado.",
                  question="¿Qué hace la función argsort de numpy con una matriz?")
    german = row("de", "Gibt die Indizes zurück, die ein Array entlang der angegebenen Achse sortieren würden.",
                 question="Was macht die Funktion argsort von numpy mit einem Array?")
    assert kept([english, spanish, german], languages=["en"]) == ["en"]
    assert kept([english, spanish, german], languages=["es", "de"]) == ["es", "de"]


def test_an_unknown_language_code_is_a_config_error_listing_the_known_ones():
    pytest.importorskip("py3langid", reason="requirements.txt pins py3langid: pip install -r requirements.txt")
    with pytest.raises(ConfigError, match=r"data.filters.languages: \['english'\] includes \['english'\].*allowed: "
                                          r".*\ben\b"):
        kept([row("a", "x")], languages=["english"])


def test_a_row_failing_several_filters_is_counted_against_the_first():
    removed = {}
    rows = [row("short-and-low", "No.", score=1.0), row("low", "It sorts the array.", score=1.0),
            row("good", "It sorts the array.", score=5.0)]
    config = make_config({"data": {"filters": {**OFF, "min_answer_words": 2, "min_score": 3.0}}})
    out = apply_filters(rows, config.data.filters, lambda name, gone: removed.update({name: [r["id"] for r in gone]}))
    assert [r["id"] for r in out] == ["good"]
    assert removed == {"min_answer_words": ["short-and-low"], "min_score": ["low"]}


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"min_answer_words": 0}, "data.filters.min_answer_words: 0 is not allowed; it must be positive, or null"),
        ({"min_answer_words": 10, "max_answer_words": 5}, "data.filters.max_answer_words: 5 is not allowed; it must "
                                                          "be >= data.filters.min_answer_words (10)"),
        ({"max_symbol_share": 1.0}, "data.filters.max_symbol_share: 1.0 is not allowed; it must be in [0, 1)"),
        ({"min_score": float("inf")}, "data.filters.min_score: inf is not allowed"),
        ({"languages": []}, "data.filters.languages: [] is not allowed"),
        ({"languages": "en"}, "data.filters.languages: expected a list, got 'en'"),
    ],
)
def test_impossible_filter_values_are_config_errors(filters, message):
    with pytest.raises(ConfigError) as error:
        make_config({"data": {"filters": filters}})
    assert message in str(error.value)


def test_prepare_filters_only_the_training_rows_and_counts_each_filter_per_source(tmp_path):
    """Test, eval and validation rows are the same with or without filters: runs that differ in a
    filter are measured on the same examples."""
    from lab.data.prepare import prepare

    rows = [{"conversations": [{"from": "human", "value": f"Question number {i} about topic {i}?"},
                               {"from": "gpt", "value": " ".join(f"word{i}x{j}" for j in range(2 + i % 10))}],
             "id": str(i), "source": "even" if i % 2 == 0 else "odd", "score": float(i % 5)} for i in range(60)]
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = {"source": str(path), "eval_examples": 2, "validation_examples": 2, "max_train_examples": None,
            "test_size": 0.2}
    unfiltered = prepare(make_config({"data": data}))
    result = prepare(make_config({"data": {**data, "filters": {**OFF, "min_answer_words": 4, "min_score": 2.0}}}))
    for split in ("test", "validation", "eval"):
        assert result[split] == unfiltered[split]
    held_out = {r["id"] for r in unfiltered["test"] + unfiltered["validation"]}
    pool = [i for i in range(60) if str(i) not in held_out]
    short = [i for i in pool if 2 + i % 10 < 4]
    low = [i for i in pool if i not in short and i % 5 < 2]
    assert short and low and result["stats"]["filtered"] == {"min_answer_words": len(short), "min_score": len(low)}
    per_source = result["stats"]["per_source"]
    assert per_source["even"]["removed"]["min_answer_words"] == sum(i % 2 == 0 for i in short)
    assert per_source["odd"]["removed"]["min_score"] == sum(i % 2 == 1 for i in low)
    assert sorted(int(r["id"]) for r in result["train"]) == [i for i in pool if i not in short + low]
    assert all(len(r["messages"][-1]["content"].split()) >= 4 and r["score"] >= 2.0 for r in result["train"])
