"""Format metrics of one model's predictions: did it answer in the trained format, and is its math right?

Per example, each metric is 1.0, 0.0, or None where it does not apply; None never enters a mean or a bootstrap
(lab.eval.comparison pairs the examples where it applies). Which examples a metric covers depends only on the
example (its source, question and reference), never on the prediction, so base and fine-tuned cover the same ids.

- format_valid: whether the prediction parses as the target format of data.answer_format:
    steps: numbered steps then a final "Answer: ..." line (lab.data.answer_format.is_steps); every example.
    json:  a JSON object of the parameter-list shape (lab.data.answer_format.is_param_json); only the parameter-list
           tasks (the others were not rewritten, so they have no JSON target).
    keep:  the references' own format where they have one the lab can check: math examples end with an
           "Answer: <number>" line, so a prediction is valid when its last non-blank line is one. Other
           examples (free prose) have no checkable format and are left out.
- math_exact_match: on math examples (source "math") whose reference has a final answer, 1.0 when the
  prediction's final "Answer:" number equals it (lab.data.builtin.math.final_answer: "$", commas, a zero fractional
  part and markdown bold are read through). A prediction with no "Answer:" number scores 0: the last number in
  a free text is often an intermediate result, so it is not taken as the answer.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from lab.data.answer_format import is_param_json, is_param_list_task, is_steps
from lab.data.builtin.math import SOURCE as MATH_SOURCE
from lab.data.builtin.math import final_answer, is_correct

FORMAT_METRICS = ("format_valid", "math_exact_match")  # labelled for reports in lab.eval.scoring.metric_label


def last_question(messages: Sequence[Mapping[str, Any]]) -> str:
    """The last user turn of an eval example's input: the question its reference answers ("" if none)."""
    return next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")


def ends_with_answer_line(text: str) -> bool:
    """Whether the last non-blank line of `text` is an "Answer: <number>" line (the math references' format)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    # final_answer of the last line alone: an "Answer:" earlier in the text does not count.
    return bool(lines) and final_answer(lines[-1]) is not None


def _format_valid(example: Mapping[str, Any], prediction: str, answer_format: str) -> float | None:
    if answer_format == "steps":
        return float(is_steps(prediction))
    if answer_format == "json":
        applies = is_param_list_task(last_question(example.get("input") or []), example["reference"])
        return float(is_param_json(prediction)) if applies else None
    if example.get("source") == MATH_SOURCE and final_answer(example["reference"]) is not None:
        return float(ends_with_answer_line(prediction))
    return None


def format_scores(example: Mapping[str, Any], prediction: str, answer_format: str) -> dict[str, float | None]:
    """One prediction's format metrics (None: the metric does not apply to this example)."""
    is_math = example.get("source") == MATH_SOURCE and final_answer(example["reference"]) is not None
    return {
        "format_valid": _format_valid(example, prediction, answer_format),
        "math_exact_match": float(is_correct(prediction, example["reference"])) if is_math else None,
    }


def covered(rows: Sequence[Mapping[str, Any]], name: str) -> list[float | None]:
    """Each row's value of format metric `name`, None where it does not apply (or the row predates the metric)."""
    return [(row.get("format_scores") or {}).get(name) for row in rows]


def aggregate_format(rows: Sequence[Mapping[str, Any]], answer_format: str) -> dict[str, Any]:
    """For the metrics file: the target format, and per metric its mean over the examples it covers and how
    many those are. A metric that covers none has mean None (JSON null: n/a), never a misleading 0.0."""
    summary: dict[str, Any] = {"answer_format": answer_format}
    for name in FORMAT_METRICS:
        values = [value for value in covered(rows, name) if value is not None]
        summary[name] = {"mean": round(statistics.fmean(values), 4) if values else None, "examples": len(values)}
    return summary
