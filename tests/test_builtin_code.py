"""Tests of the builtin code tasks built from docstring examples, on real installed packages and a fake one."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from lab.core.errors import DataError
from lab.data.builtin.code import build_code_conversations, calls_name, code_blocks, doctest_to_code, purpose

PACKAGES = ["numpy", "json", "collections", "statistics"]
MIN_WORDS = 25
SEED = 3407


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return build_code_conversations(PACKAGES, MIN_WORDS, None, SEED)


def test_rows_follow_the_schema(rows: list[dict]) -> None:
    assert len(rows) > 300
    ids = [row["id"] for row in rows]
    assert ids == sorted(set(ids))
    for row in rows:
        assert set(row) == {"id", "source", "messages"} and row["source"] == "code"
        assert row["id"].startswith("code-") and row["id"][5:].split(".")[0] in PACKAGES
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
    assert {row["id"].split(".")[0] for row in rows} == {f"code-{p}" for p in ("numpy", "collections", "statistics")}


def test_answers_are_fenced_python_that_parses_and_calls_the_object(rows: list[dict]) -> None:
    for row in rows:
        qualname, answer = row["id"][5:], row["messages"][1]["content"]
        blocks = code_blocks(answer)
        assert len(blocks) == 1 and answer == f"```python\n{blocks[0]}\n```", row["id"]
        assert ">>>" not in blocks[0] and "\n... " not in blocks[0], row["id"]
        assert calls_name(ast.parse(blocks[0]), qualname.rsplit(".", 1)[-1]), row["id"]


def test_prompts_name_the_object_and_a_purpose(rows: list[dict]) -> None:
    for row in rows:
        prompt = row["messages"][0]["content"]
        assert prompt.startswith(f"Show how to use `{row['id'][5:]}` to ") and prompt.endswith("."), prompt
        assert not prompt.endswith(".."), prompt


def test_known_objects(rows: list[dict]) -> None:
    by_id = {row["id"]: row for row in rows}
    argsort = by_id["code-numpy.argsort"]["messages"]
    assert argsort[0]["content"] == "Show how to use `numpy.argsort` to get the indices that would sort an array."
    assert "np.argsort(x)\n# -> array([1, 2, 0])" in argsort[1]["content"]
    assert "code-statistics.mean" in by_id and "code-collections.Counter" in by_id
    assert "code-numpy.abs" not in by_id  # its example calls np.absolute; numpy.absolute has the row
    assert "code-numpy.absolute" in by_id


def test_no_example_is_used_twice(rows: list[dict]) -> None:
    answers = [row["messages"][1]["content"] for row in rows]
    assert len(answers) == len(set(answers))


def test_build_is_deterministic_within_and_across_processes(rows: list[dict]) -> None:
    assert build_code_conversations(PACKAGES, MIN_WORDS, None, SEED) == rows
    code = ("import json, sys; from lab.data.builtin.code import build_code_conversations as b; "
            f"json.dump(b({PACKAGES!r}, {MIN_WORDS}, None, {SEED}), sys.stdout)")
    root = Path(__file__).resolve().parents[1]
    other = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "12345", "PATH": ""}).stdout
    assert json.loads(other) == rows


def test_max_examples_samples_with_the_seed(rows: list[dict]) -> None:
    sampled = build_code_conversations(PACKAGES, MIN_WORDS, 50, SEED)
    assert len(sampled) == 50 and [row["id"] for row in sampled] == sorted(row["id"] for row in sampled)
    assert all(row in rows for row in sampled)
    assert build_code_conversations(PACKAGES, MIN_WORDS, 50, SEED) == sampled
    assert build_code_conversations(PACKAGES, MIN_WORDS, 50, SEED + 1) != sampled
    assert build_code_conversations(PACKAGES, MIN_WORDS, 10**6, SEED) == rows


@pytest.mark.parametrize(("summary", "is_class", "expected"), [
    ("Returns the indices that would sort an array.", False, "get the indices that would sort an array"),
    ("Return the sample arithmetic mean of data.", False, "get the sample arithmetic mean of data"),
    ("Computes the number of 1-bits in `x`.", False, "compute the number of 1-bits in `x`"),
    ("Calculates which of the given dates are valid days.", False, "calculate which of the given dates are valid days"),
    ("Copies an array to a specified data type.", False, "copy an array to a specified data type"),
    ("Draw samples from a binomial distribution. More text.", False, "draw samples from a binomial distribution"),
    ("Element-wise arc tangent of `x1/x2`.", False, "get element-wise arc tangent of `x1/x2`"),
    ("The differences between consecutive elements of an array.", False,
     "get the differences between consecutive elements of an array"),
    ("Dict subclass for counting hashable items.", True, "work with dict subclass for counting hashable items"),
    ("BitGenerator for the PCG-64 generator.", True, "work with BitGenerator for the PCG-64 generator"),
    ("Represents a period of time.", True, "represent a period of time"),
    ("Create a new structured scalar.", True, "create a new structured scalar"),
    ("Pandas replacement for python datetime.", True, "work with pandas replacement for python datetime"),
    ("If created from a 64-bit integer, it is an offset.", True, None),
    ("Like `find`, but raises `ValueError`.", False, None),
    ("dtype(dtype, align=False) --", True, None),
])
def test_purpose(summary: str, is_class: bool, expected: str | None) -> None:
    assert purpose(summary, is_class) == expected


def test_doctest_to_code_keeps_one_line_outputs_as_comments() -> None:
    doctest = ("  >>> x = f(1)\n>>> x\n3\n>>> for i in range(2):\n...     print(i)\n0\n1\n"
               ">>> f('bad')\nTraceback (most recent call last):\n    ...\nValueError: bad\n"
               "# a comment between examples\n>>> g(\n...     2)\n'x'")
    assert doctest_to_code(doctest) == ("x = f(1)\nx\n# -> 3\nfor i in range(2):\n    print(i)\nf('bad')\n"
                                        "# a comment between examples\ng(\n    2)\n# -> 'x'")


def clamp(values, low, high):
    """Limit every value to the range from `low` to `high`.

    Values below `low` become `low` and values above `high` become `high`,
    so the result always lies inside the range.

    Examples
    --------
    >>> clamp([1, 5, 9], 2, 8)
    [2, 5, 8]
    >>> for low in (0, 4):
    ...     print(clamp([3], low, 10))
    [3]
    [4]
    >>> clamp([], 0, 1)  # nothing to clamp
    []
    """
    return [min(max(value, low), high) for value in values]


def fake_function(name: str, doc: str) -> types.FunctionType:
    """A copy of `clamp` named `name` with docstring `doc`, defined in the fake package."""
    function = types.FunctionType(clamp.__code__, {}, name)
    function.__doc__, function.__module__ = doc, "fake_code_pkg"
    return function


def test_build_from_a_module_object(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("fake_code_pkg", "A module is not called, so it gets no task.\n\n>>> clamp([1], 0, 1)")
    module.clamp = fake_function("clamp", clamp.__doc__)
    module.limit = module.clamp  # the same object under a second name: kept once, under the shallow first name
    # An example that never calls its object teaches another name.
    module.bound = fake_function("bound", clamp.__doc__.replace("Limit every", "Bound every"))
    module.Tally = type("Tally", (), {"__module__": "fake_code_pkg", "__doc__": (
        "Counter of words seen so far, kept in a dictionary from each word to how many times it was added.\n\n"
        ">>> t = Tally()\n>>> t.add('a')\n")})
    monkeypatch.setitem(sys.modules, "fake_code_pkg", module)
    rows = build_code_conversations(["fake_code_pkg"], 10, None, SEED)
    assert rows == [
        {"id": "code-fake_code_pkg.Tally", "source": "code", "messages": [
            {"role": "user", "content": "Show how to use `fake_code_pkg.Tally` to work with counter of words seen "
                                        "so far, kept in a dictionary from each word to how many times it was added."},
            {"role": "assistant", "content": "```python\nt = Tally()\nt.add('a')\n```"}]},
        {"id": "code-fake_code_pkg.clamp", "source": "code", "messages": [
            {"role": "user", "content": "Show how to use `fake_code_pkg.clamp` to limit every value to the range "
                                        "from `low` to `high`."},
            {"role": "assistant", "content": "```python\nclamp([1, 5, 9], 2, 8)\n# -> [2, 5, 8]\n"
                                             "for low in (0, 4):\n    print(clamp([3], low, 10))\n"
                                             "clamp([], 0, 1)  # nothing to clamp\n# -> []\n```"}]},
    ]
    assert build_code_conversations(["fake_code_pkg"], 500, None, SEED) == []
    with pytest.raises(DataError, match="data.builtin.packages: 'no_such_package_for_code' cannot be imported"):
        build_code_conversations(["no_such_package_for_code"], 10, None, SEED)
