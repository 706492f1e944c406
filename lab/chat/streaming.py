"""One chat answer, generated token by token and streamed as text while it is generated.

The prompt is the evaluation's (lab.eval.generation.encode_prompts: the chat template through lab.model.chat_template,
the oldest tokens cut beyond max_input_tokens) and the answer is cut at the same stop tokens and
decoded the same way, so a greedy chat answer is the evaluate stage's prediction for that history.
transformers' `generate` runs in a worker thread and hands each new token to a TextIteratorStreamer,
which the caller iterates: text appears as it is produced (a word at a time, as the streamer
releases text once it cannot change).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from lab.eval.generation import encode_prompts, stop_token_ids

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class GenerationSettings:
    """How answers are generated. temperature 0 is greedy decoding (the evaluate stage's); above 0
    tokens are sampled, with top_p (1: off) and top_k (0: off). seed seeds the sampling of a chat
    session (None: unseeded). max_input_tokens: a longer conversation loses its oldest tokens."""

    max_new_tokens: int
    temperature: float
    top_p: float
    top_k: int
    seed: int | None
    max_input_tokens: int

    def problem(self) -> str | None:
        """What is wrong with the settings, as a one-line message naming the flag, or None."""
        if self.max_new_tokens <= 0:
            return f"--max-new-tokens {self.max_new_tokens}: must be positive"
        if not self.temperature >= 0:
            return f"--temperature {self.temperature}: must be >= 0 (0: greedy)"
        if not 0 < self.top_p <= 1:
            return f"--top-p {self.top_p}: must be in (0, 1] (1: off)"
        if self.top_k < 0:
            return f"--top-k {self.top_k}: must be >= 0 (0: off)"
        if self.temperature == 0 and (self.top_p != 1 or self.top_k != 0):
            return "--top-p and --top-k apply to sampling only: set --temperature above 0"
        if self.max_input_tokens <= 0:
            return f"--max-input-tokens {self.max_input_tokens}: must be positive"
        return None

    def generate_kwargs(self) -> dict[str, Any]:
        """The decoding arguments of `generate`; every sampling flag is set, so the model's own
        generation_config (which may ask for sampling) never decides."""
        if self.temperature == 0:
            return {"do_sample": False, "num_beams": 1, "temperature": None, "top_p": None, "top_k": None}
        return {"do_sample": True, "num_beams": 1, "temperature": self.temperature, "top_p": self.top_p,
                "top_k": self.top_k}

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "decoding": "greedy" if self.temperature == 0 else "sampling"}


@dataclass(frozen=True)
class Reply:
    """An answer and how it was produced."""

    text: str
    new_tokens: int
    hit_max_new_tokens: bool
    prompt_tokens: int
    prompt_truncated: bool
    seconds: float
    first_token_seconds: float | None


def _timed_streamer(tokenizer: Any) -> Any:
    """A TextIteratorStreamer that also notes when the first generated token arrived."""
    from transformers import TextIteratorStreamer

    class TimedStreamer(TextIteratorStreamer):
        first_token_at: float | None = None

        def put(self, value: Any) -> None:
            if not self.next_tokens_are_prompt and self.first_token_at is None:
                self.first_token_at = time.perf_counter()
            super().put(value)

    return TimedStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, clean_up_tokenization_spaces=False)


class ReplyStream:
    """Iterate it for the answer's text chunks as they are generated; `reply` holds the whole answer
    once the iteration has ended."""

    def __init__(self, model: Any, tokenizer: Any, messages: Messages, settings: GenerationSettings) -> None:
        self._started = time.perf_counter()  # the answer's time counts the prompt's encoding
        self._model, self._tokenizer, self._settings = model, tokenizer, settings
        self._prompt = encode_prompts(tokenizer, [messages], settings.max_input_tokens)[0]
        self._stops = stop_token_ids(model, tokenizer)
        self._streamer = _timed_streamer(tokenizer)
        self._output: list[int] | None = None
        self._error: BaseException | None = None
        self.reply: Reply | None = None

    def _generate(self) -> None:
        """The worker thread: generate, keeping the new tokens or the error; the streamer always ends."""
        import torch

        try:
            ids = torch.tensor([self._prompt["input_ids"]], device=self._model.device)
            with torch.inference_mode():  # thread-local: set in the thread that runs the model
                output = self._model.generate(
                    input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=self._settings.max_new_tokens,
                    eos_token_id=self._stops, pad_token_id=self._tokenizer.pad_token_id, streamer=self._streamer,
                    **self._settings.generate_kwargs())
            self._output = output[0, ids.shape[1]:].tolist()
        except BaseException as error:  # handed to the caller's thread, which re-raises it
            self._error = error
            self._streamer.end()

    def __iter__(self) -> Iterator[str]:
        # A daemon: Ctrl-C in the caller's thread ends the chat without waiting for the answer.
        worker = threading.Thread(target=self._generate, name="generate", daemon=True)
        worker.start()
        for chunk in self._streamer:
            if chunk:
                yield chunk
        worker.join()
        if self._error is not None:
            raise self._error
        self.reply = self._finish()

    def _finish(self) -> Reply:
        """The answer as the evaluate stage cuts and decodes a prediction (lab.eval.generation.generate)."""
        tokens = self._output or []
        end = next((k for k, token in enumerate(tokens) if token in set(self._stops)), None)
        kept = tokens if end is None else tokens[:end]
        first = self._streamer.first_token_at
        return Reply(
            text=self._tokenizer.decode(kept, skip_special_tokens=True, clean_up_tokenization_spaces=False).strip(),
            new_tokens=len(kept), hit_max_new_tokens=end is None, prompt_tokens=self._prompt["prompt_tokens"],
            prompt_truncated=self._prompt["prompt_truncated"], seconds=time.perf_counter() - self._started,
            first_token_seconds=None if first is None else first - self._started)
