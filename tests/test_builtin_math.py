"""Tests of the builtin math word problems: determinism, well-formed rows, solutions that recompute."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from lab.data.builtin.math import (
    INSTRUCTION,
    TEMPLATES,
    Solution,
    build_math_conversations,
    evaluate,
    final_answer,
    is_correct,
)

COUNT = 340  # 20 problems per template
SEED = 3407
# "a op b op c = d" with the solution's operators; checked below with Python's own arithmetic.
EQUATION = re.compile(r"(\d+(?: [-+×÷] \d+)+) = (\d+)")


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return build_math_conversations(COUNT, SEED)


def python_value(expression: str) -> Fraction:
    """`expression` evaluated by Python (exactly, on Fractions), independently of lab.data.builtin.math.evaluate."""
    python = re.sub(r"\d+", lambda m: f"Fraction({m[0]})", expression).replace("×", "*").replace("÷", "/")
    return eval(python, {"Fraction": Fraction, "__builtins__": {}})  # the test's own, digits-and-operators text


def test_rows_follow_the_schema(rows: list[dict]) -> None:
    assert len(rows) == COUNT and len(TEMPLATES) >= 12
    for row in rows:
        assert set(row) == {"id", "source", "messages"} and row["source"] == "math"
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
        assert row["messages"][0]["content"].endswith(INSTRUCTION)
        assert re.fullmatch(r"math-([a-z_]+)-(\d+)", row["id"])[1] in TEMPLATES


def test_ids_and_questions_are_unique_and_every_template_is_used(rows: list[dict]) -> None:
    assert len({row["id"] for row in rows}) == COUNT
    assert len({row["messages"][0]["content"] for row in rows}) == COUNT
    used = {row["id"].split("-")[1] for row in rows}
    assert used == set(TEMPLATES)


def test_every_step_recomputes_and_the_answer_is_the_last_result(rows: list[dict]) -> None:
    for row in rows:
        *steps, last = row["messages"][1]["content"].split("\n")
        assert len(steps) >= 2 and re.fullmatch(r"Answer: \d+", last), row["id"]
        for step in steps:
            equations = EQUATION.findall(step)
            assert len(equations) == 1, (row["id"], step)  # one step, one line, one equation
            expression, result = equations[0]
            assert python_value(expression) == int(result), (row["id"], step)
        assert final_answer(last) == EQUATION.findall(steps[-1])[0][1] and int(final_answer(last)) > 0, row["id"]


def test_no_step_uses_a_number_from_nowhere(rows: list[dict]) -> None:
    """Every operand is given in the question, an earlier step's result, a unit constant, or stated in words
    earlier on its line ("83 ÷ 7 is 11 with some left over, so ... 7 × 11 = 77")."""
    for row in rows:
        known = set(re.findall(r"\d+", row["messages"][0]["content"])) | {"2", "60", "100"}
        for step in row["messages"][1]["content"].split("\n")[:-1]:
            match = EQUATION.search(step)
            stated = set(re.findall(r"\d+", step[: match.start()]))
            assert set(re.findall(r"\d+", match[1])) <= known | stated, (row["id"], step)
            known.add(match[2])


def test_build_is_deterministic_within_and_across_processes(rows: list[dict]) -> None:
    assert build_math_conversations(COUNT, SEED) == rows
    code = ("import json, sys; from lab.data.builtin.math import build_math_conversations as b; "
            f"json.dump(b(50, {SEED}), sys.stdout)")
    root = Path(__file__).resolve().parents[1]
    other = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "12345", "PATH": ""}).stdout
    assert json.loads(other) == build_math_conversations(50, SEED)
    assert build_math_conversations(50, SEED + 1) != build_math_conversations(50, SEED)
    assert build_math_conversations(0, SEED) == []


def test_evaluate_follows_precedence() -> None:
    assert evaluate("2 + 3 × 4") == 14
    assert evaluate("100 × 15 ÷ 100") == 15
    assert evaluate("10 - 4 - 3") == 3
    assert evaluate("7 ÷ 2") == Fraction(7, 2)


def test_a_step_must_give_a_whole_number() -> None:
    solution = Solution()
    assert solution.step("It is {} apples.", "3 × 4") == 12
    with pytest.raises(ValueError, match="not a whole number"):
        solution.step("Half is {}.", "7 ÷ 2")
    assert solution.text() == "It is 3 × 4 = 12 apples.\nAnswer: 12"


@pytest.mark.parametrize(("text", "expected"), [
    ("The total is 12.", None),  # no Answer line
    ("", None),
    ("Answer: 1,200", "1200"),
    ("Answer: 12.0", "12"),
    ("Answer: 12.50", "12.5"),
    ("Answer: $45", "45"),
    ("Answer: -3", "-3"),
    ("answer: 7", "7"),
    ("Answer: 42 apples.\nHope that helps!", "42"),  # trailing text on the line and after it
    ("Answer: 3\nWait, no.\nAnswer: 5", "5"),  # the last Answer line wins
    ("Answer: 5\nAnswer: unknown", None),  # ...even when it has no number
    ("  Answer:   8  ", "8"),
    ("**Answer:** 42", "42"),  # markdown bold, as models write it
    ("Answer: **1,200**", "1200"),
])
def test_final_answer(text: str, expected: str | None) -> None:
    assert final_answer(text) == expected


def test_is_correct() -> None:
    reference = "4 × 300 = 1200 grams.\nAnswer: 1200"
    assert is_correct("So 1,200 grams.\nAnswer: 1,200", reference)
    assert is_correct("Answer: 1200.0", reference)
    assert not is_correct("Answer: 120", reference)
    assert not is_correct("It is 1200 grams.", reference)  # no Answer line is never right
    assert not is_correct("Answer: 5", "no answer here")
    assert not is_correct("no answer", "no answer here")
