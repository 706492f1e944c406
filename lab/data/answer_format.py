"""The answer format the model is trained to produce (data.answer_format): rewriting and recognising it.

keep: training answers stay as they are.

steps: every training answer becomes numbered steps, one a line ("1. ..."), then one final line "Answer: ...":
  - an answer that already ends with an "Answer: ..." line (the math domain) keeps its earlier lines as the steps
    (any old numbering dropped) and that line as the answer, so "4 × 3 = 12 pens.\\nAnswer: 12" becomes
    "1. 4 × 3 = 12 pens.\\nAnswer: 12";
  - a parameter list ("`f` takes:" then "- `name`: description" lines) becomes one step per parameter and the
    answer "`f` takes `a`, `b`.";
  - any other answer (docs prose, code) is cut into steps: a fenced code block is one step, kept whole on the
    lines after its number; every other line is split into sentences (bullet markers dropped), one a step. The
    answer line repeats the first prose step (the builtin docs answers lead with what the object does), or, for
    code alone, quotes the code's last statement (its last ">>>" statement for a doctest).
  The rewrite is idempotent: a text already in the format comes back unchanged.

json: only the answers of the parameter-list tasks (see `is_param_list_task`) become a JSON object
{"parameters": [{"name": ..., "description": ...}, ...]}; every other answer is left unchanged, as no other
task has a structure that a JSON object would carry.

The rewrite is applied to training and validation conversations only (lab.data.prepare.prepare); test and eval
references keep their original text, so evaluation measures whether the model learned the format
(lab.eval.format_metrics).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from lab.core.choices import AnswerFormat, allowed
from lab.data.builtin.docparse import sentences

# The docs domain's parameter-list questions (lab.data.builtin.docstrings.make_conversation): the open-book
# "params" task ends with PARAMS_INSTRUCTION, the closed-book follow-up is PARAMS_FOLLOW_UP.
# tests/test_answer_format.py builds both with lab.data.builtin.docstrings, so a changed template there fails a
# test instead of silently matching nothing.
PARAMS_INSTRUCTION = "List each parameter with a one-line description."
PARAMS_FOLLOW_UP = "What parameters does it take?"

_PARAM_HEADER = re.compile(r"`([^`\n]+)` takes:")
_PARAM_LINE = re.compile(r"- `([^`\n]+)`: (\S.*)")
_STEP = re.compile(r"(\d+)\.\s+\S")
_NUMBERING = re.compile(r"^(?:step\s*)?\d+[.):]\s+", re.I)  # "1. ", "2) ", "Step 3: " before a step's text
_ANSWER_LINE = re.compile(r"\**answer\s*:\**\s*(\S.*)", re.I)  # "Answer: 42", also "**Answer:** 42"
_BULLET = re.compile(r"^[-*•]\s+")
_FENCED_JSON = re.compile(r"```(?:json)?[ \t]*\n(.*?)\n?```", re.S)


def parse_param_list(answer: str) -> tuple[str, list[tuple[str, str]]] | None:
    """(function, [(name, description)]) of a docs parameter-list answer ("`f` takes:" then one
    "- `name`: description" line per parameter); None for any other text."""
    lines = answer.strip().splitlines()
    header = _PARAM_HEADER.fullmatch(lines[0].strip()) if lines else None
    items = [_PARAM_LINE.fullmatch(line.strip()) for line in lines[1:]]
    if header is None or not items or not all(items):
        return None
    return header.group(1), [(item.group(1), item.group(2).strip()) for item in items if item]


def is_param_list_task(question: str, answer: str) -> bool:
    """Whether a turn is a parameter-list task: asked with one of the docs domain's parameter questions and
    answered (or referenced) with a parameter list. Both must hold: a user dataset may ask the same words."""
    asked = question.strip()
    return (asked.endswith(PARAMS_INSTRUCTION) or asked == PARAMS_FOLLOW_UP) and parse_param_list(answer) is not None


def to_json(answer: str) -> str:
    """A parameter-list answer as {"parameters": [{"name", "description"}, ...]} on one line (ValueError for
    any other text)."""
    parsed = parse_param_list(answer)
    if parsed is None:
        raise ValueError(f"not a parameter list: {answer[:80]!r}")
    return json.dumps({"parameters": [{"name": name, "description": description}
                                      for name, description in parsed[1]]}, ensure_ascii=False)


def is_param_json(text: str) -> bool:
    """Whether `text` is one JSON object of the parameter-list shape: exactly the key "parameters", a non-empty
    list of objects with exactly "name" and "description", both non-empty strings. One enclosing ```json fence
    is accepted (models often fence JSON); any other text around the object is not."""
    body = text.strip()
    fenced = _FENCED_JSON.fullmatch(body)
    try:
        value = json.loads(fenced.group(1) if fenced else body)
    except ValueError:
        return False
    params = value.get("parameters") if isinstance(value, dict) and set(value) == {"parameters"} else None
    return isinstance(params, list) and bool(params) and all(
        isinstance(p, dict) and set(p) == {"name", "description"}
        and all(isinstance(p[key], str) and p[key].strip() for key in p) for p in params)


def _blocks(text: str) -> list[str]:
    """Fenced code blocks whole, every other non-blank line on its own, old step numbering dropped."""
    blocks: list[str] = []
    fence: list[str] | None = None
    for line in text.strip().splitlines():
        if fence is not None:
            fence.append(line.rstrip())
            if line.strip() == "```":
                blocks.append("\n".join(fence))
                fence = None
            continue
        stripped = _NUMBERING.sub("", line.strip())
        if stripped.startswith("```"):
            fence = [stripped]
        elif stripped:
            blocks.append(stripped)
    if fence is not None:  # an unclosed fence (a cut-off answer) still stays one step
        blocks.append("\n".join(fence))
    return blocks


def _final_from_steps(steps: Sequence[str]) -> str:
    """The answer line of a rewritten prose or code answer: the first prose step, else the code's last statement."""
    prose = next((step for step in steps if not step.startswith("```")), None)
    if prose is not None:
        return prose
    code = [line.strip() for line in steps[-1].splitlines()[1:] if line.strip() not in ("", "```")]
    # A doctest (the docs' "Can you show an example?" answers) marks its statements; its other lines are output.
    prompted = [line[3:].strip() for line in code if line.startswith(">>>")]
    statements = prompted or [line for line in code if not line.startswith("#")]
    return f"`{statements[-1]}`" if statements else "the code above"


def to_steps(answer: str) -> str:
    """`answer` as numbered steps and a final "Answer: ..." line (the rules are in the module docstring)."""
    parsed = parse_param_list(answer)
    if parsed is not None:
        function, params = parsed
        steps = [f"`{name}`: {description}" for name, description in params]
        final = f"`{function}` takes " + ", ".join(f"`{name}`" for name, _ in params) + "."
    else:
        blocks = _blocks(answer)
        last = _ANSWER_LINE.fullmatch(blocks[-1]) if blocks else None
        if last is not None:
            final = last.group(1).strip()
            steps = blocks[:-1] or [final]
        else:
            steps = [part for block in blocks
                     for part in ([block] if block.startswith("```") else sentences(_BULLET.sub("", block)))]
            steps = steps or [answer.strip()]
            final = _final_from_steps(steps)
    return "\n".join(f"{number}. {step}" for number, step in enumerate(steps, start=1)) + f"\nAnswer: {final}"


def is_steps(text: str) -> bool:
    """Whether `text` is in the steps format: it opens with step "1.", its last non-blank line is the only
    "Answer: ..." line and has text after the colon, and its step numbers run 1, 2, 3... Lines that are not
    step lines continue the step above them (a code block)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if len(lines) < 2 or not _ANSWER_LINE.fullmatch(lines[-1]) or not _STEP.match(lines[0]):
        return False
    if any(_ANSWER_LINE.fullmatch(line) for line in lines[:-1]):
        return False
    numbers = [int(match.group(1)) for line in lines[:-1] if (match := _STEP.match(line))]
    return numbers == list(range(1, len(numbers) + 1))


def rewrite_answer(question: str, answer: str, answer_format: str) -> str:
    """One training answer in `answer_format` (data.answer_format); `question` is the user turn it answers."""
    if answer_format == "steps":
        return to_steps(answer)
    if answer_format == "json" and is_param_list_task(question, answer):
        return to_json(answer)
    if answer_format not in allowed(AnswerFormat):
        raise ValueError(f"unknown answer format {answer_format!r}; known: {allowed(AnswerFormat)}")
    return answer


def apply_answer_format(conversations: list[dict[str, Any]], answer_format: str) -> list[dict[str, Any]]:
    """The conversations with every assistant turn rewritten to `answer_format` (new dicts; the input is not
    changed). With "keep" the same list comes back, so prepare's outputs stay byte-identical."""
    if answer_format == "keep":
        return conversations
    rewritten = []
    for conversation in conversations:
        messages, question = [], ""
        for message in conversation["messages"]:
            if message["role"] == "user":
                question = message["content"]
            elif message["role"] == "assistant":
                message = {**message, "content": rewrite_answer(question, message["content"], answer_format)}
            messages.append(message)
        rewritten.append({**conversation, "messages": messages})
    return rewritten
