"""Chat with the base model, the fine-tuned adapter(s) or a merged export, answers streamed as generated.

usage: python tools/chat.py [--model DIR] [--adapter [NAME=]DIR ...] [--use NAME | --router DIR] [--prompt TEXT]
                            [--system TEXT] [--max-new-tokens N] [--temperature T] [--top-p P] [--top-k K]
                            [--seed S] [--max-input-tokens N] [--threads N] [--log FILE] [--timings]

--model is a model directory: models/base (the default), or a merged standalone model such as
models/export. Each --adapter puts a LoRA adapter on it (models/adapter); with several, each named
NAME=DIR, one answers each conversation: --use NAME, else the first. --router models/domains/router
lets the domains pipeline's router choose, per conversation, among the adapters beside it (each domain's
and the mixed one, its fallback). Prompts go through the model's
chat template exactly as the evaluate stage renders them; decoding is greedy unless --temperature is
above 0. --prompt answers one message and exits; otherwise messages are read one per line, typed at a
prompt on a terminal or from a pipe. Commands: /new, /rate N (1-5), /fix TEXT, /help, /quit.
--log FILE appends one JSON line per answer (lab/chat/log.py); prepare trains on such a log when it
is data.source or one of data.mix.extra_sources (params.yaml `feedback`).
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # the load time counts the imports too

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from lab.chat.log import ChatLog  # noqa: E402
from lab.chat.models import check_paths, load_chat_model, parse_adapters, routed_adapters  # noqa: E402
from lab.chat.session import ChatSession, fixed_choice, input_lines, run_session  # noqa: E402
from lab.chat.streaming import GenerationSettings  # noqa: E402
from lab.core.cli import run_stage  # noqa: E402
from lab.core.errors import LabError  # noqa: E402
from lab.core.provenance import git_revision  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/base"), help="model directory (base or merged)")
    parser.add_argument("--adapter", action="append", default=[], metavar="[NAME=]DIR", help="a LoRA adapter")
    parser.add_argument("--use", metavar="NAME", help="the adapter that answers (default: the first)")
    parser.add_argument("--router", type=Path, metavar="DIR",
                        help="a router (models/domains/router) that picks each conversation's adapter")
    parser.add_argument("--prompt", help="answer this one message and exit")
    parser.add_argument("--system", help="a system message that opens every conversation")
    # A chat answer is longer than the evaluate stage's capped ones; the cap only guards against a loop.
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy (as evaluated)")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling (1: off)")
    parser.add_argument("--top-k", type=int, default=0, help="top-k sampling (0: off)")
    parser.add_argument("--seed", type=int, help="seeds the session's sampling")
    parser.add_argument("--max-input-tokens", type=int,
                        help="longer conversations lose their oldest tokens (default: the model's context "
                             "length less --max-new-tokens)")
    # One sequence of a small model decodes about as fast on one CPU thread as on several, and several
    # slow down many times over when other processes share the cores (measured on 2 shared cores).
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for the model (default 1; more can help a larger model on idle cores)")
    parser.add_argument("--log", type=Path, help="append one JSON line per answer, with its rating and correction")
    parser.add_argument("--timings", action="store_true", help="print load time and time to first token")
    return parser.parse_args()


def settings_from(args: argparse.Namespace) -> GenerationSettings:
    """The generation settings, checked before any model loads (--max-input-tokens is set once it has)."""
    settings = GenerationSettings(args.max_new_tokens, args.temperature, args.top_p, args.top_k, args.seed,
                                  args.max_input_tokens or 1)
    problem = settings.problem()
    if problem is not None:
        raise LabError(problem)
    return settings


def main() -> None:
    args = parse_args()
    sys.stdin.reconfigure(errors="replace")  # a stray non-UTF-8 byte in piped input is not fatal
    settings = settings_from(args)
    adapters = parse_adapters(args.adapter)
    router = None
    if args.router is not None:
        if args.use is not None:
            raise LabError("--use and --router both choose the adapter: give one")
        from lab.domains.router import Router

        router = Router.load(args.router)
        adapters = routed_adapters(args.router, adapters, [*router.domains, router.fallback])
    check_paths(args.model, adapters)
    if args.use is not None and args.use not in adapters:
        raise LabError(f"--use {args.use}: no such adapter; loaded: {', '.join(adapters) or 'none (no --adapter)'}")
    if args.threads < 1:
        raise LabError(f"--threads {args.threads}: must be at least 1")
    if args.prompt is not None and not args.prompt.strip():
        raise LabError("--prompt is empty: give the message to answer")
    log = ChatLog(args.log) if args.log is not None else None
    import torch

    from lab.model.runtime import resolve_device

    torch.set_num_threads(args.threads)
    chat = load_chat_model(args.model, adapters, resolve_device())
    context = getattr(chat.model.config, "max_position_embeddings", None)
    if args.max_input_tokens is None:
        settings = dataclasses.replace(settings, max_input_tokens=max(context - settings.max_new_tokens, 1)
                                       if context else sys.maxsize)
    if args.seed is not None:
        from transformers import set_seed

        set_seed(args.seed)
    revision = git_revision(REPO)
    produced_by = {"model": str(args.model), "adapters": {name: str(path) for name, path in adapters.items()},
                   "generation": settings.as_dict(), "lab_revision": revision and revision["commit"]}
    session = ChatSession(chat, settings, system=args.system, log=log, produced_by=produced_by, timings=args.timings,
                          choose=router.route if router else
                          fixed_choice(args.use or next(iter(adapters))) if adapters else None)
    if args.timings:
        session.notice(f"(loaded {args.model}{' + ' + ', '.join(adapters) if adapters else ''} on {chat.device} "
                       f"in {time.perf_counter() - STARTED:.1f} s)")
    try:
        run_session(session, [args.prompt] if args.prompt is not None else input_lines(sys.stdin))
    except KeyboardInterrupt:  # Ctrl-C ends the chat; the last answer was logged on the way out
        print(file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    run_stage(main)
