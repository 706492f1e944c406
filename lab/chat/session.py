"""A chat session: the conversation so far, the slash commands, the adapter that answers, and the
feedback log (lab/chat/log.py). tools/chat.py is its command line.

Which adapter answers a conversation is a selector's choice: any function `choose(messages) -> name`
of a loaded adapter (a ChooseAdapter), called once per conversation with its messages up to the
first user turn; the choice holds for the whole conversation. The default, `fixed_choice`, always
picks one name (--use, else the first adapter); a router is one more such function.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO

from lab.chat.log import ChatLog, answer_row
from lab.chat.models import ChatModel
from lab.chat.streaming import GenerationSettings, Messages, Reply, ReplyStream
from lab.core.choices import MAX_RATING, MIN_RATING
from lab.core.errors import LabError

ChooseAdapter = Callable[[Messages], str]
HELP = (f"commands: /new (a new conversation), /rate N (rate the last answer, {MIN_RATING}-{MAX_RATING}), "
        "/fix TEXT (the answer it should have given), /quit; start a message with // to send one that begins with /")


def fixed_choice(name: str) -> ChooseAdapter:
    """A selector that picks `name` for every conversation."""
    return lambda messages: name


class ChatSession:
    """Answers user messages and slash commands, one line at a time (`handle`); `close` writes the
    pending log row. Answers stream to `out`; notices and one-line complaints go to `notices`."""

    def __init__(self, chat: ChatModel, settings: GenerationSettings, *, system: str | None = None,
                 choose: ChooseAdapter | None = None, log: ChatLog | None = None, produced_by: dict[str, Any],
                 out: TextIO = sys.stdout, notices: TextIO = sys.stderr, timings: bool = False) -> None:
        self.chat, self.settings, self.system, self.choose, self.log = chat, settings, system, choose, log
        self.produced_by, self.out, self.notices, self.timings = produced_by, out, notices, timings
        self.replies: list[Reply] = []
        self._new_conversation()

    def _new_conversation(self) -> None:
        self.conversation = uuid.uuid4().hex[:16]
        self.messages: Messages = [{"role": "system", "content": self.system}] if self.system else []
        self.adapter: str | None = None
        self.pending: dict[str, Any] | None = None  # the last answer's row, until it can change no more

    def notice(self, text: str) -> None:
        print(text, file=self.notices, flush=True)

    def handle(self, line: str) -> bool:
        """Act on one input line; False when the session is over (/quit)."""
        text = line.strip()
        if not text:
            self.notice("empty message, not sent: type a message, or /help")
        elif text.startswith("//"):
            self.send(text[1:])
        elif text.startswith("/"):
            command, _, argument = text.partition(" ")
            return self._command(command, argument.strip())
        else:
            self.send(text)
        return True

    def _command(self, command: str, argument: str) -> bool:
        if command == "/quit":
            return False
        if command == "/new":
            self.flush()
            self._new_conversation()
            self.notice("(new conversation)")
        elif command == "/rate":
            self._rate(argument)
        elif command == "/fix":
            self._fix(argument)
        elif command == "/help":
            self.notice(HELP)
        else:
            self.notice(f"unknown command {command}; {HELP}")
        return True

    def _rate(self, argument: str) -> None:
        if self.pending is None:
            self.notice("nothing to rate yet: /rate N rates the last answer of this conversation")
            return
        try:
            rating = int(argument)
        except ValueError:
            rating = None
        if rating is None or not MIN_RATING <= rating <= MAX_RATING:
            self.notice(f"/rate takes a whole number from {MIN_RATING} to {MAX_RATING}, got {argument!r}")
            return
        self.pending["rating"] = rating
        self.notice(f"(rated {rating})" + ("" if self.log else "; no --log FILE, so it is not recorded"))

    def _fix(self, correction: str) -> None:
        if self.pending is None:
            self.notice("nothing to fix yet: /fix TEXT gives the answer the last one should have been")
            return
        if not correction:
            self.notice("/fix needs the corrected answer after it: /fix TEXT")
            return
        self.pending["correction"] = correction
        # The conversation goes on from the corrected answer, as training will see it.
        self.messages[-1] = {"role": "assistant", "content": correction}
        self.notice("(correction recorded; the conversation continues from it)"
                    + ("" if self.log else "; no --log FILE, so it is not recorded"))

    def send(self, text: str) -> Reply:
        """Answer a user message, streaming the answer to `out`."""
        self.flush()
        self.messages.append({"role": "user", "content": text})
        tokenizer = self.chat.activate(self._adapter_for_conversation())
        stream = ReplyStream(self.chat.model, tokenizer, self.messages, self.settings)
        try:
            for chunk in stream:
                self.out.write(chunk)
                self.out.flush()
        except BaseException:
            self.messages.pop()  # an answer that never came leaves no question behind it
            raise
        self.out.write("\n")
        self.out.flush()
        reply = stream.reply
        self.messages.append({"role": "assistant", "content": reply.text})
        self.replies.append(reply)
        self._after_reply(reply)
        return reply

    def _adapter_for_conversation(self) -> str | None:
        """The adapter that answers this conversation, chosen at its first message."""
        if not self.chat.adapters or self.adapter is not None:
            return self.adapter
        name = self.choose(list(self.messages)) if self.choose else next(iter(self.chat.adapters))
        if name not in self.chat.adapters:
            raise LabError(f"the adapter selector chose {name!r}, which is not loaded; loaded: "
                           f"{', '.join(self.chat.adapters)}")
        self.adapter = name
        if len(self.chat.adapters) > 1:
            self.notice(f"(adapter {name} answers this conversation)")
        return name

    def _after_reply(self, reply: Reply) -> None:
        if not reply.text:
            self.notice("(the model gave an empty answer)")
        if reply.prompt_truncated:
            self.notice(f"(the conversation is longer than {self.settings.max_input_tokens} tokens: the model saw "
                        "its most recent part only)")
        if self.timings:
            first = ("no token" if reply.first_token_seconds is None
                     else f"first token after {reply.first_token_seconds:.2f} s")
            rate = f", {reply.new_tokens / reply.seconds:.1f} tokens/s" if reply.seconds else ""
            self.notice(f"({first}; {reply.new_tokens} tokens in {reply.seconds:.2f} s{rate})")
        turn = sum(m["role"] == "assistant" for m in self.messages)
        self.pending = answer_row(self.conversation, turn, self.messages, {
            **self.produced_by, "adapter": self.adapter, "prompt_tokens": reply.prompt_tokens,
            "prompt_truncated": reply.prompt_truncated, "hit_max_new_tokens": reply.hit_max_new_tokens})

    def flush(self) -> None:
        """Write the pending answer's row (the next message, /new or the end makes it final)."""
        if self.pending is not None and self.log is not None:
            self.log.append(self.pending)
        self.pending = None

    def close(self) -> None:
        self.flush()
        if self.log is not None:
            self.log.close()


def input_lines(stdin: TextIO) -> Iterator[str]:
    """The user's lines: typed at a prompt on a terminal, else read line by line (a pipe, a file)."""
    if not stdin.isatty():
        for line in stdin:
            yield line.rstrip("\n")
        return
    while True:
        try:
            yield input("> ")
        except EOFError:  # Ctrl-D
            print()
            return


def run_session(session: ChatSession, lines: Iterable[str]) -> None:
    """Handle `lines` until /quit or their end; the pending answer is logged however it ends."""
    try:
        for line in lines:
            if not session.handle(line):
                break
    finally:
        session.close()
