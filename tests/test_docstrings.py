"""Tests of the builtin docstring dataset, on the real installed packages."""

from __future__ import annotations

import dataclasses
import importlib
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from lab.core.config import BuiltinConfig
from lab.core.errors import DataError
from lab.core.provenance import package_versions
from lab.data.builtin.docparse import parse_docstring
from lab.data.builtin.docstrings import _inherited, _normalise, build_docstring_conversations, make_conversation

from .conftest import make_config

BUILTIN = make_config().data.builtin  # the builtin dataset exactly as params.yaml configures it
PACKAGES = BUILTIN.packages
MAX_INPUT_WORDS = BUILTIN.max_input_words


def builtin(**changes: object) -> BuiltinConfig:
    """params.yaml's builtin section with some fields changed."""
    return dataclasses.replace(BUILTIN, **changes)
OPEN_BOOK_QUESTIONS = ("Summarise what it does", "List each parameter", "Explain what these examples show")


def task_of(row: dict) -> str:
    first = row["messages"][0]["content"]
    if first.startswith("What does"):
        return "closed-multi" if len(row["messages"]) > 2 else "closed"
    if "Parameters section" in first:
        return "params"
    return "examples" if first.startswith("Here are the examples") else "summary"


def resolve(qualname: str) -> object:
    """The object a row id names: the longest importable module prefix, then attributes."""
    parts = qualname.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise LookupError(qualname)


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return build_docstring_conversations(BUILTIN)


def test_every_row_follows_the_schema(rows: list[dict]) -> None:
    assert len(rows) > 1000
    for row in rows:
        assert set(row) == {"id", "source", "messages"}
        # The domain is the source; the package is the first part of the id (the qualified name).
        assert row["source"] == "docs" and row["id"].split(".")[0] in PACKAGES
        roles = [m["role"] for m in row["messages"]]
        assert roles == ["user", "assistant"] * (len(roles) // 2) and len(roles) in (2, 4), row["id"]
        for message in row["messages"]:
            assert set(message) == {"role", "content"}
            assert isinstance(message["content"], str) and message["content"] == message["content"].strip() != ""


def test_ids_are_unique_and_sorted(rows: list[dict]) -> None:
    ids = [row["id"] for row in rows]
    assert ids == sorted(set(ids))


def test_build_is_deterministic_within_and_across_processes(rows: list[dict]) -> None:
    assert build_docstring_conversations(BUILTIN) == rows
    # Another process with another hash seed: set or dict order must not leak into the output.
    code = ("import dataclasses, json, sys; from lab.core.params import load_config; "
            "from lab.data.builtin.docstrings import build_docstring_conversations as b; "
            "c = dataclasses.replace(load_config().data.builtin, packages=['numpy', 'json', 'collections']); "
            "json.dump(b(c), sys.stdout)")
    root = Path(__file__).resolve().parents[1]
    other = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "12345", "PATH": ""}).stdout
    assert json.loads(other) == [row for row in rows if row["id"].split(".")[0] in ("numpy", "json", "collections")]


def test_no_two_rows_share_a_normalised_summary(rows: list[dict]) -> None:
    keys = {}
    for row in rows:
        parsed = parse_docstring(resolve(row["id"]).__doc__)
        key = _normalise(parsed.paragraphs[0], row["id"])
        assert not key or key not in keys, (row["id"], keys.get(key))
        keys[key] = row["id"]


def test_duplicated_and_inherited_docstrings_survive_once(rows: list[dict]) -> None:
    ids = {row["id"] for row in rows}
    # One function object reached through two classes.
    assert pd_same_object("head") and "pandas.DataFrame.head" in ids and "pandas.Series.head" not in ids
    # Two templated docstrings whose summaries differ only in "Get"/"Return" and "dataframe"/"series".
    assert "pandas.DataFrame.rsub" in ids and "pandas.Series.rsub" not in ids
    # A method inherited from another public class is listed under the class that defines it.
    assert "numpy.ndarray.astype" in ids and "numpy.matrix.astype" not in ids
    # A shallow name wins over a deeper alias with the same docstring.
    assert "numpy.ediff1d" in ids and "numpy.ma.ediff1d" not in ids


def pd_same_object(name: str) -> bool:
    import pandas as pd

    return getattr(pd.DataFrame, name) is getattr(pd.Series, name)


def test_members_repeating_a_foreign_base_docstring_are_skipped() -> None:
    class Mapping(dict):
        def keys(self):
            return super().keys()

        def own(self) -> None:
            """A method with a docstring of its own."""

    Mapping.keys.__doc__ = dict.keys.__doc__
    assert _inherited(Mapping, "keys", dict.keys.__doc__, "fakepkg", set())
    assert not _inherited(Mapping, "own", Mapping.own.__doc__, "fakepkg", set())


def test_every_task_appears_in_a_sensible_mix(rows: list[dict]) -> None:
    counts = {task: sum(task_of(row) == task for row in rows) for task in
              ("closed", "closed-multi", "summary", "params", "examples")}
    assert all(counts.values()), counts
    closed_share = (counts["closed"] + counts["closed-multi"]) / len(rows)
    assert 0.2 < closed_share < 0.4, counts


def test_open_book_prompts_respect_max_input_words(rows: list[dict]) -> None:
    for row in rows:
        question = row["messages"][0]["content"]
        if question.endswith(OPEN_BOOK_QUESTIONS) or "Explain what these examples show" in question:
            quoted = question.split(":\n\n", 1)[1].rsplit("\n\n", 1)[0]
            assert len(quoted.split()) <= MAX_INPUT_WORDS + 1, row["id"]  # +1: a word-cut sentence ends in "..."


def test_numpy_argsort_is_about_sorting(rows: list[dict]) -> None:
    row = next(row for row in rows if row["id"] == "numpy.argsort")
    assert row["source"] == "docs"
    assert "sort" in row["messages"][-1]["content"].lower()
    assert "sort" in row["messages"][1]["content"].lower()


def test_package_versions() -> None:
    versions = package_versions(["numpy", "json"])
    assert versions["numpy"] == np.__version__
    assert versions["json"] == f"python-{sys.version.split()[0]}"


def test_a_misspelled_package_is_an_error_naming_it() -> None:
    # It used to give no rows: a typo in data.builtin.packages silently shrank the dataset.
    with pytest.raises(DataError, match=r"data.builtin.packages: 'nmupy' cannot be imported "
                                        r"\(ModuleNotFoundError: No module named 'nmupy'\); check its spelling"):
        build_docstring_conversations(builtin(packages=["json", "nmupy"]))


def scale(values, factor=1.0, *, clip=None):
    """add(values, factor=1.0)

    Multiply every value by a factor, element-wise.

    The result has the same shape as `values`. Scaling is done with
    :func:`~numpy.multiply`, so ``factor`` may be an array that broadcasts
    against the input.

    .. versionadded:: 1.2.0

    Parameters
    ----------
    values : array_like
        The numbers to scale. Anything :func:`numpy.asarray` accepts.
    factor : float, optional
        How much to scale by. The default is 1.0, which copies.
    clip : float, optional
        Upper bound applied after scaling.

        .. deprecated:: 2.0
            Use `numpy.clip` instead.

    Returns
    -------
    ndarray
        The scaled values.

    Examples
    --------
    >>> scale([1, 2], 2)  # doctest: +SKIP
    array([2, 4])

    A second example, with an array factor:

    >>> scale([1, 2], [1, 3])
    array([1, 6])
    """
    return np.multiply(values, factor)


def test_parse_docstring_cleans_a_numpydoc_docstring() -> None:
    doc = parse_docstring(scale.__doc__)
    assert doc.paragraphs[0] == "Multiply every value by a factor, element-wise."  # signature line dropped
    assert doc.paragraphs[1] == ("The result has the same shape as `values`. Scaling is done with `multiply`, "
                                 "so `factor` may be an array that broadcasts against the input.")
    assert len(doc.paragraphs) == 2 and "versionadded" not in doc.text and "deprecated" not in doc.text
    assert doc.params == [
        ("values", "array_like", "The numbers to scale. Anything `numpy.asarray` accepts."),
        ("factor", "float, optional", "How much to scale by. The default is 1.0, which copies."),
        ("clip", "float, optional", "Upper bound applied after scaling."),
    ]
    assert doc.code == ">>> scale([1, 2], 2)\narray([2, 4])"
    assert doc.examples.startswith(">>> scale([1, 2], 2)\narray([2, 4])\n\nA second example")


def test_make_conversation_formats_every_task() -> None:
    doc = parse_docstring(scale.__doc__)
    convo = {task: make_conversation("lib.scale", doc, MAX_INPUT_WORDS, task)["messages"]
             for task in ("closed", "summary", "params", "examples")}
    assert convo["closed"][0]["content"] == "What does `lib.scale` do?"
    assert convo["closed"][1]["content"].startswith("Multiply every value by a factor, element-wise. The result")
    assert convo["summary"][0]["content"].startswith("Here is part of the documentation of `lib.scale`:\n\nThe result")
    assert convo["summary"][1]["content"].startswith("Multiply every value by a factor, element-wise. The result")
    assert "values : array_like\n    The numbers to scale." in convo["params"][0]["content"]
    assert convo["params"][1]["content"] == (
        "`scale` takes:\n- `values`: The numbers to scale.\n- `factor`: How much to scale by.\n"
        "- `clip`: Upper bound applied after scaling."
    )
    assert ">>> scale([1, 2], [1, 3])" in convo["examples"][0]["content"]
    assert convo["examples"][1]["content"].startswith("They show how to use `scale`. Multiply every value")


def test_build_from_a_module_object(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("fake_docs_pkg", "Too short to keep.")
    module.scale = types.FunctionType(scale.__code__, {"np": np}, "scale")
    module.scale.__doc__, module.scale.__module__ = scale.__doc__, "fake_docs_pkg"
    module._private = types.FunctionType(scale.__code__, {"np": np}, "_private")
    module._private.__doc__ = "A private function is never visited. " * 10
    module.Base = type("Base", (), {"__doc__": "A public class. " + "It has a long docstring of its own. " * 5,
                                    "__module__": "fake_docs_pkg"})
    module.Child = type("Child", (module.Base,), {"__doc__": module.Base.__doc__, "__module__": "fake_docs_pkg"})
    monkeypatch.setitem(sys.modules, "fake_docs_pkg", module)
    rows = build_docstring_conversations(builtin(packages=["fake_docs_pkg"]))
    # Child repeats its parent class's docstring; the module's own docstring is too short.
    assert [(row["id"], row["source"]) for row in rows] == [
        ("fake_docs_pkg.Base", "docs"), ("fake_docs_pkg.scale", "docs")]
    assert build_docstring_conversations(builtin(packages=["fake_docs_pkg"], min_words=500)) == []
