"""Rendering a conversation through the model's chat template: the one call that training (the loss
mask) and evaluation (the prompts) both make, so both see the same text.

Llama 3.1/3.2 Instruct templates write a default system header with "Today Date: <date>", and take
the date from `strftime_now`, the day the template runs, unless the caller passes `date_string`.
Left to the clock, the training tokens and the eval prompts of the reference lab would change from one
day to the next (a rerun would not reproduce a run, and a base evaluation cached yesterday would not
match a fine-tuned one evaluated today). So the lab always passes a fixed date; templates that do not
use `date_string` ignore it.
"""

from __future__ import annotations

from typing import Any

# The Llama 3.2 template's own fallback when strftime_now is missing, so an old renderer gives the same text.
TEMPLATE_DATE = "26 Jul 2024"


def render_chat(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
    """The chat-template text of `messages` (with the assistant header after it when
    `add_generation_prompt`), with the template's date pinned to TEMPLATE_DATE."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                         date_string=TEMPLATE_DATE)
