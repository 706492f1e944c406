"""Offline grade-school word problems (GSM8K-style) from seeded templates, with checkable answers.

The `math` domain of the builtin dataset. Every solution is a few lines, one step each, with the arithmetic written
out ("4 × 3 = 12"), and a last line "Answer: N"; the numbers are drawn so that every step is an exact integer, and
each step is computed here from the expression it prints, so the text can never disagree with itself. Exact match
of the final answer (`is_correct`) scores a model's solution without ROUGE's credit for copied wording.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from fractions import Fraction
from math import gcd

SOURCE = "math"
INSTRUCTION = "Solve it step by step and end with a line of the form 'Answer: <number>'."
NAMES = ("Ava", "Ben", "Chloe", "Diego", "Emma", "Farah", "George", "Hana", "Ivan", "Jade", "Kofi", "Lena", "Mateo",
         "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tariq", "Uma", "Victor", "Wen", "Yusuf", "Zoe")
ITEMS = ("notebooks", "pens", "apples", "stickers", "candles", "mugs", "cupcakes", "bracelets", "marbles", "posters")
SHARED_ITEMS = ("stickers", "marbles", "cookies", "cards", "sweets", "shells")
_OPERATORS = {"+": Fraction.__add__, "-": Fraction.__sub__, "×": Fraction.__mul__, "÷": Fraction.__truediv__}
_ANSWER = re.compile(r"answer\s*:", re.I)
# Markdown bold around the label or the number ("**Answer:** 42") is allowed: models write it.
_NUMBER = re.compile(r"[\s*]*\$?\s*(-?\d[\d,]*(?:\.\d+)?)")


def evaluate(expression: str) -> Fraction:
    """The value of "a op b op c ..." with + - × ÷ and the usual precedence (× and ÷ before + and -)."""
    tokens = expression.split()
    terms: list[Fraction] = [Fraction(tokens[0])]
    signs: list[str] = []
    for operator, number in zip(tokens[1::2], tokens[2::2], strict=True):
        if operator in "×÷":
            terms[-1] = _OPERATORS[operator](terms[-1], Fraction(number))
        else:
            signs.append(operator)
            terms.append(Fraction(number))
    total = terms[0]
    for sign, term in zip(signs, terms[1:], strict=True):
        total = _OPERATORS[sign](total, term)
    return total


class Solution:
    """The lines of a step-by-step solution; each step prints its expression and the result computed from it."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.result = 0

    def step(self, sentence: str, expression: str) -> int:
        """Append `sentence` with "{}" replaced by "expression = result"; the result, which must be a whole
        number (a template that draws numbers giving a fraction is a bug, not a row)."""
        value = evaluate(expression)
        if value.denominator != 1:
            raise ValueError(f"{expression} = {value} is not a whole number")
        self.result = int(value)
        self.lines.append(sentence.format(f"{expression} = {self.result}"))
        return self.result

    def text(self) -> str:
        return "\n".join([*self.lines, f"Answer: {self.result}"])


Template = Callable[[random.Random, Solution], str]  # draws numbers, writes the steps, returns the question


def _shopping_change(rng: random.Random, s: Solution) -> str:
    name, (first, second) = rng.choice(NAMES), rng.sample(ITEMS, 2)
    a, p, b, q = rng.randint(2, 6), rng.randint(1, 9), rng.randint(2, 5), rng.randint(2, 12)
    bill = next(bill for bill in (20, 50, 100, 200) if bill > a * p + b * q)
    cost_a = s.step(f"The {first} cost {{}} dollars.", f"{a} × {p}")
    cost_b = s.step(f"The {second} cost {{}} dollars.", f"{b} × {q}")
    total = s.step("Together they cost {} dollars.", f"{cost_a} + {cost_b}")
    s.step("The change is {} dollars.", f"{bill} - {total}")
    return (f"{name} buys {a} {first} for {p} dollars each and {b} {second} for {q} dollars each, and pays with a "
            f"{bill}-dollar bill. How much change, in dollars, does {name} get?")


def _printing_time(rng: random.Random, s: Solution) -> str:
    name, copies, pages = rng.choice(NAMES), rng.randint(2, 12), rng.randint(4, 30)
    rate = rng.choice([r for r in range(2, 13) if copies * pages % r == 0])  # never empty: `copies` divides
    total = s.step("The copies have {} pages in all.", f"{copies} × {pages}")
    s.step("Printing them takes {} minutes.", f"{total} ÷ {rate}")
    return (f"A printer prints {rate} pages per minute. {name} needs {copies} copies of a {pages}-page report. "
            "How many minutes will the printing take?")


def _sharing_remainder(rng: random.Random, s: Solution) -> str:
    name, item = rng.choice(NAMES), rng.choice(SHARED_ITEMS)
    friends, each = rng.randint(3, 9), rng.randint(4, 20)
    total = friends * each + rng.randint(1, friends - 1)
    given = s.step(f"{total} ÷ {friends} is {each} with some left over, so the friends get {{}} {item}.",
                   f"{friends} × {each}")
    s.step(f"That leaves {{}} {item}.", f"{total} - {given}")
    return (f"{name} has {total} {item} and shares them equally among {friends} friends, giving each friend as "
            f"many as possible. How many {item} are left over?")


def _discount(rng: random.Random, s: Solution) -> str:
    item = rng.choice(("jacket", "bike", "lamp", "backpack", "guitar"))
    price, percent = 20 * rng.randint(2, 30), rng.choice((5, 10, 15, 20, 25, 30, 40, 50))  # whole-dollar discounts
    discount = s.step("The discount is {} dollars.", f"{price} × {percent} ÷ 100")
    s.step("The new price is {} dollars.", f"{price} - {discount}")
    return f"A {item} costs {price} dollars. The shop takes {percent}% off. What is the price after the discount?"


def _ages(rng: random.Random, s: Solution) -> str:
    first, second, third = rng.sample(NAMES, 3)
    age, times = rng.randint(3, 15), rng.randint(2, 4)
    younger = rng.randint(1, age * times - 2)  # the third person is at least 2: no "1 years old"
    second_age = s.step(f"{second} is {{}} years old.", f"{age} × {times}")
    third_age = s.step(f"{third} is {{}} years old.", f"{second_age} - {younger}")
    s.step("Together they are {} years old.", f"{age} + {second_age} + {third_age}")
    return (f"{first} is {age} years old. {second} is {times} times as old as {first}, and {third} is {younger} "
            f"years younger than {second}. What is the sum of their three ages?")


def _carpet_area(rng: random.Random, s: Solution) -> str:
    length, width, price = rng.randint(3, 15), rng.randint(2, 12), rng.randint(4, 30)
    area = s.step("The floor is {} square meters.", f"{length} × {width}")
    s.step("The carpet costs {} dollars.", f"{area} × {price}")
    return (f"A rectangular floor is {length} meters long and {width} meters wide. Carpet costs {price} dollars "
            "per square meter. How much does it cost to carpet the whole floor?")


def _fence_perimeter(rng: random.Random, s: Solution) -> str:
    name, length, width, price = rng.choice(NAMES), rng.randint(5, 40), rng.randint(3, 30), rng.randint(2, 15)
    half = s.step("One length and one width make {} meters.", f"{length} + {width}")
    perimeter = s.step("The fence is {} meters long.", f"2 × {half}")
    s.step("It costs {} dollars.", f"{perimeter} × {price}")
    return (f"{name} fences a rectangular garden {length} meters long and {width} meters wide. Fencing costs "
            f"{price} dollars per meter. How much does the fence cost?")


def _ribbon_units(rng: random.Random, s: Solution) -> str:
    name, meters, piece = rng.choice(NAMES), rng.randint(2, 12), rng.choice((5, 10, 20, 25, 50))
    centimeters = s.step("The ribbon is {} centimeters long.", f"{meters} × 100")
    s.step("That makes {} pieces.", f"{centimeters} ÷ {piece}")
    return (f"{name} has a ribbon {meters} meters long and cuts it into pieces {piece} centimeters long. How many "
            "pieces does that make?")


def _episode_hours(rng: random.Random, s: Solution) -> str:
    name, minutes = rng.choice(NAMES), rng.choice((15, 20, 30, 40, 45, 90))
    episodes = rng.choice([n for n in range(2, 25) if n * minutes % 60 == 0])
    total = s.step("The episodes last {} minutes.", f"{episodes} × {minutes}")
    s.step("That is {} hours.", f"{total} ÷ 60")
    return f"{name} watches {episodes} episodes of a show, each {minutes} minutes long. How many hours is that?"


def _grouped_total(rng: random.Random, s: Solution) -> str:
    boxes, per_box, packs, per_pack = rng.randint(2, 9), rng.randint(6, 24), rng.randint(2, 8), rng.randint(3, 12)
    broken = rng.randint(1, 9)
    in_boxes = s.step("The boxes hold {} pencils.", f"{boxes} × {per_box}")
    in_packs = s.step("The packs hold {} pencils.", f"{packs} × {per_pack}")
    total = s.step("There are {} pencils in all.", f"{in_boxes} + {in_packs}")
    s.step("So {} pencils are not broken.", f"{total} - {broken}")
    return (f"A classroom has {boxes} boxes of {per_box} pencils and {packs} packs of {per_pack} pencils. {broken} "
            "of the pencils are broken. How many pencils are not broken?")


def _ratio(rng: random.Random, s: Solution) -> str:
    red, per_part = rng.randint(1, 7), rng.randint(2, 15)
    blue = rng.choice([b for b in range(1, 8) if gcd(red, b) == 1 and b != red])  # lowest terms, not 1:1
    parts = s.step("The ratio has {} parts.", f"{red} + {blue}")
    part = s.step("Each part is {} marbles.", f"{parts * per_part} ÷ {parts}")
    s.step("There are {} blue marbles.", f"{part} × {blue}")
    return (f"A jar holds {parts * per_part} red and blue marbles in the ratio {red}:{blue} (red to blue). How "
            "many blue marbles are in the jar?")


def _average(rng: random.Random, s: Solution) -> str:
    name, tests = rng.choice(NAMES), rng.randint(3, 5)
    scores = [rng.randint(60, 100) for _ in range(tests - 1)]
    scores.append(next(x for x in range(100, 59, -1) if (sum(scores) + x) % tests == 0))  # a whole-number mean
    total = s.step("The scores add up to {}.", " + ".join(map(str, scores)))
    s.step("The average is {}.", f"{total} ÷ {tests}")
    listed = ", ".join(map(str, scores[:-1]))
    return f"{name} scored {listed} and {scores[-1]} on {tests} tests. What is the average score?"


def _savings_weeks(rng: random.Random, s: Solution) -> str:
    name, item = rng.choice(NAMES), rng.choice(("bike", "tablet", "telescope", "skateboard", "camera"))
    saved, weekly, weeks = rng.randint(5, 60), rng.randint(4, 25), rng.randint(3, 20)
    needed = s.step(f"{name} still needs {{}} dollars.", f"{saved + weekly * weeks} - {saved}")
    s.step("Saving takes {} weeks.", f"{needed} ÷ {weekly}")
    return (f"{name} wants a {item} that costs {saved + weekly * weeks} dollars, has {saved} dollars already and "
            f"saves {weekly} dollars a week. How many weeks until {name} can buy it?")


def _wages(rng: random.Random, s: Solution) -> str:
    name, wage, hours, days = rng.choice(NAMES), rng.randint(8, 30), rng.randint(2, 9), rng.randint(3, 6)
    daily = s.step(f"{name} earns {{}} dollars a day.", f"{wage} × {hours}")
    s.step("Over the week that is {} dollars.", f"{daily} × {days}")
    return (f"{name} earns {wage} dollars an hour and works {hours} hours a day for {days} days this week. How "
            f"much does {name} earn this week?")


def _fraction_left(rng: random.Random, s: Solution) -> str:
    name, denominator, share = rng.choice(NAMES), rng.randint(2, 6), rng.randint(4, 20)
    total, later = denominator * share, rng.randint(1, (denominator - 1) * share - 1)
    sold = s.step("In the morning {} muffins are sold.", f"{total} ÷ {denominator}")
    left = s.step("That leaves {} muffins.", f"{total} - {sold}")
    s.step("After the afternoon {} muffins are left.", f"{left} - {later}")
    return (f"{name} bakes {total} muffins, sells 1/{denominator} of them in the morning and {later} more in the "
            "afternoon. How many muffins are left?")


def _recipe_scaling(rng: random.Random, s: Solution) -> str:
    servings, per_serving, wanted = rng.randint(2, 8), rng.randint(15, 60), rng.randint(3, 12)
    each = s.step("One serving needs {} grams of flour.", f"{servings * per_serving} ÷ {servings}")
    s.step(f"{wanted} servings need {{}} grams.", f"{each} × {wanted}")
    return (f"A recipe for {servings} servings uses {servings * per_serving} grams of flour. How many grams of "
            f"flour are needed for {wanted} servings?")


def _two_legs(rng: random.Random, s: Solution) -> str:
    name, speed_a, hours_a, speed_b, hours_b = (rng.choice(NAMES), rng.randint(30, 90), rng.randint(2, 5),
                                                rng.randint(20, 80), rng.randint(2, 4))
    leg_a = s.step("The first part is {} kilometers.", f"{speed_a} × {hours_a}")
    leg_b = s.step("The second part is {} kilometers.", f"{speed_b} × {hours_b}")
    s.step("In all, {} kilometers.", f"{leg_a} + {leg_b}")
    return (f"{name} drives {hours_a} hours at {speed_a} kilometers per hour, then {hours_b} hours at {speed_b} "
            "kilometers per hour. How many kilometers is that in all?")


TEMPLATES: dict[str, Template] = {
    "shopping_change": _shopping_change, "printing_time": _printing_time, "sharing_remainder": _sharing_remainder,
    "discount": _discount, "ages": _ages, "carpet_area": _carpet_area, "fence_perimeter": _fence_perimeter,
    "ribbon_units": _ribbon_units, "episode_hours": _episode_hours, "grouped_total": _grouped_total,
    "ratio": _ratio, "average": _average, "savings_weeks": _savings_weeks, "wages": _wages,
    "fraction_left": _fraction_left, "recipe_scaling": _recipe_scaling, "two_legs": _two_legs,
}


def build_math_conversations(count: int, seed: int) -> list[dict]:
    """`count` word problems, the templates taking turns in an order shuffled with `seed`; the same (count, seed)
    gives the same rows in any process. A question drawn twice is drawn again, so no problem can sit on both
    sides of the train/test split. Ids are math-<template>-<n>, n counting within the template."""
    rng = random.Random(seed)
    order = sorted(TEMPLATES)
    rng.shuffle(order)
    seen: set[str] = set()
    rows = []
    for index in range(count):
        template = order[index % len(order)]
        question, solution = "", Solution()
        while not question or question in seen:
            solution = Solution()
            question = TEMPLATES[template](rng, solution)
        seen.add(question)
        messages = [{"role": "user", "content": f"{question} {INSTRUCTION}"},
                    {"role": "assistant", "content": solution.text()}]
        rows.append({"id": f"math-{template}-{index // len(order)}", "source": SOURCE, "messages": messages})
    return rows


def final_answer(text: str) -> str | None:
    """The number after the last "Answer:" in `text`, without thousands separators or a zero fractional part
    ("Answer: 1,200.0" -> "1200"); None when there is no "Answer:" or no number right after the last one."""
    answers = list(_ANSWER.finditer(text))
    number = _NUMBER.match(text, answers[-1].end()) if answers else None
    if number is None:
        return None
    value = number.group(1).replace(",", "")
    if "." in value:
        value = value.rstrip("0").rstrip(".")
    return "0" if value == "-0" else value


def is_correct(prediction: str, reference: str) -> bool:
    """Exact match of the final answers; a prediction without one is wrong."""
    answer = final_answer(prediction)
    return answer is not None and answer == final_answer(reference)
