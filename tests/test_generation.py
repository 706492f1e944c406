"""Batched greedy generation on the real embedded model."""

import pytest

import lab.eval.decoder as static_decoder
import lab.eval.generation as generation
import lab.eval.span_attention as static_attention
from lab.core.errors import ConfigError
from lab.eval.generation import encode_prompts, generate, resolve_decoder, stop_token_ids

from .conftest import make_config

# The decoder params as params.yaml sets them ("auto" runs the static decoder, eagerly on CPU).
DECODER = {"decode": make_config().evaluate.decode, "cuda_graph": make_config().evaluate.cuda_graph}

CONVERSATIONS = [
    [{"role": "user", "content": "What does `numpy.argsort` do?"}],
    [{"role": "user", "content": "Summarise: " + "Return a sorted copy of an array along the given axis. " * 6}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
     {"role": "user", "content": "What is 2 + 2?"}],
]


def test_batched_generation_equals_one_at_a_time(base_model, tokenizer):
    """Left padding must not change what greedy decoding produces."""
    batched, timing = generate(base_model, tokenizer, CONVERSATIONS, batch_size=3, max_new_tokens=12,
                               max_input_tokens=1024, **DECODER)
    single = [generate(base_model, tokenizer, [c], batch_size=1, max_new_tokens=12, max_input_tokens=1024,
                       **DECODER)[0][0] for c in CONVERSATIONS]
    assert [b["prediction"] for b in batched] == [s["prediction"] for s in single]
    assert all(b["prediction"] for b in batched)
    assert timing["new_tokens"] == sum(b["new_tokens"] for b in batched) > 0


def test_results_keep_input_order_and_flag_the_token_limit(base_model, tokenizer):
    results, _ = generate(base_model, tokenizer, CONVERSATIONS, batch_size=2, max_new_tokens=4, max_input_tokens=1024,
                          **DECODER)
    assert len(results) == 3
    assert all(r["new_tokens"] <= 4 for r in results)
    assert any(r["hit_max_new_tokens"] for r in results)
    assert results[1]["prompt_tokens"] > results[0]["prompt_tokens"]


def test_long_prompts_are_left_truncated_and_flagged_not_dropped(tokenizer):
    prompts = encode_prompts(tokenizer, CONVERSATIONS, max_input_tokens=40)
    full = encode_prompts(tokenizer, CONVERSATIONS, max_input_tokens=10_000)
    assert len(prompts) == 3
    long = prompts[1]
    assert long["prompt_truncated"] and len(long["input_ids"]) == 40
    # The end of the prompt (the question and the generation prompt) is what survives.
    assert long["input_ids"] == full[1]["input_ids"][-40:]
    assert not prompts[0]["prompt_truncated"]


def test_static_decoder_matches_transformers_generate(base_model, tokenizer):
    """The lab's static-cache loop (CUDA graphs on a GPU, the same loop eagerly here) must give
    transformers' greedy continuations, batched and one at a time."""
    static, timing = generate(base_model, tokenizer, CONVERSATIONS, batch_size=3, max_new_tokens=12,
                              max_input_tokens=1024, decode="static", cuda_graph=True)
    reference, ref_timing = generate(base_model, tokenizer, CONVERSATIONS, batch_size=3, max_new_tokens=12,
                                     max_input_tokens=1024, decode="generate", cuda_graph=True)
    single = [generate(base_model, tokenizer, [c], batch_size=1, max_new_tokens=12, max_input_tokens=1024,
                       decode="static", cuda_graph=True)[0][0] for c in CONVERSATIONS]
    predictions = [s["prediction"] for s in static]
    assert predictions == [r["prediction"] for r in reference] == [s["prediction"] for s in single]
    assert [s["new_tokens"] for s in static] == [r["new_tokens"] for r in reference]
    assert timing["decoder"] == "static" and timing["decode_steps"] == "eager"  # no CUDA graph on CPU
    assert ref_timing["decoder"] == "generate"


def test_prefill_groups_keep_padding_within_the_slack():
    """One long prompt among short ones prefills alone; rows of similar lengths share a pass."""
    slack = static_decoder._PREFILL_PAD_SLACK
    assert static_decoder.prefill_groups([562, 288, 286, 284]) == [[0], [1, 2, 3]]
    assert static_decoder.prefill_groups([100, 102, 101]) == [[1, 2, 0]]
    for lengths in ([562, 288, 271, 249, 40, 39], [5, 500, 7, 300, 299, 1]):
        groups = static_decoder.prefill_groups(lengths)
        assert sorted(row for group in groups for row in group) == list(range(len(lengths)))
        for group in groups:
            width = max(lengths[row] for row in group)
            assert len(group) == 1 or width * len(group) <= slack * sum(lengths[row] for row in group)


def test_prefilling_in_groups_changes_no_token(base_model, tokenizer, monkeypatch):
    """A batch whose long prompt prefills apart from the short ones (its rows' keys and values copied into
    one cache) continues every row as one padded prefill does, and as transformers' generate."""
    conversations = [CONVERSATIONS[1]] + UNEVEN  # one ~80-token prompt, four short ones
    prompts = encode_prompts(tokenizer, conversations, max_input_tokens=1024)
    assert len(static_decoder.prefill_groups([len(p["input_ids"]) for p in prompts])) > 1

    def decode(how: str) -> list[dict]:
        return generate(base_model, tokenizer, conversations, batch_size=5, max_new_tokens=16, max_input_tokens=1024,
                        decode=how, cuda_graph=False)[0]

    grouped = decode("static")
    monkeypatch.setattr(static_decoder, "_PREFILL_PAD_SLACK", 1e9)  # one group: the whole batch at once
    assert grouped == decode("static") == decode("generate")


def test_row_runs_cover_every_row_and_keep_their_padding_within_the_limit():
    """Decode attention runs: contiguous rows whose window's first slot pads them by at most
    _SPLIT_AT_PAD_SLOTS in all; a row whose own prompt would pad the run more starts a new one."""
    limit = static_attention._SPLIT_AT_PAD_SLOTS
    assert static_attention.row_runs([0, limit + 44, limit + 54, limit + 64]) == ((0, 1, 0), (1, 4, limit + 44))
    assert static_attention.row_runs([5, 0]) == ((0, 2, 0),)  # out of order: the run starts at the earliest
    assert static_attention.row_runs([limit + 1, 0]) == ((0, 1, limit + 1), (1, 2, 0))
    assert static_attention.row_runs([]) == ()
    for slots in ([0, 10, 300, 301, 302, 900, 900, 950], [7, 3, 700, 0, 512, 511]):
        runs = static_attention.row_runs(slots)
        assert [top for top, _, _ in runs] == [0] + [bottom for _, bottom, _ in runs[:-1]]
        assert runs[-1][1] == len(slots)
        for top, bottom, first in runs:
            assert first == min(slots[top:bottom])
            assert bottom - top == 1 or sum(slot - first for slot in slots[top:bottom]) <= limit


def test_decode_attention_over_row_runs_changes_no_token(base_model, tokenizer, monkeypatch):
    """Each run of rows attending over its own window of the cache (as many runs as rows here, a
    single one, or the whole cache as before) continues every row alike, and as transformers'
    generate does."""
    conversations = [CONVERSATIONS[1]] + UNEVEN
    runs_seen: list[int] = []

    def recorded_runs(first_slots, runs=static_attention.row_runs):
        found = runs(first_slots)
        runs_seen.append(len(found))
        return found

    monkeypatch.setattr(static_decoder, "row_runs", recorded_runs)

    def decode(how: str = "static") -> list[dict]:
        return generate(base_model, tokenizer, conversations, batch_size=5, max_new_tokens=16, max_input_tokens=1024,
                        decode=how, cuda_graph=False)[0]

    monkeypatch.setattr(static_attention, "_SPLIT_AT_PAD_SLOTS", 0)
    split = decode()
    assert max(runs_seen) > 2
    monkeypatch.setattr(static_attention, "_SPLIT_AT_PAD_SLOTS", 10**9)
    runs_seen.clear()
    single = decode()
    assert set(runs_seen) == {1}
    monkeypatch.setattr(static_decoder, "DecodeSpans", lambda runs, end: None)  # the whole cache, every step
    assert split == single == decode() == decode("generate")


# On the embedded model these rows stop after 1, 6 and 9 new tokens, the last runs past 24: stepping
# eagerly, the first two leave the batch at the check after step 8, the third at the one after step 16.
UNEVEN = [[{"role": "user", "content": "Reply with one word: yes or no. Is the sky blue?"}],
          [{"role": "user", "content": "Name one colour."}],
          [{"role": "user", "content": "Hi"}],
          [{"role": "user", "content": "List twenty fruits, one per line."}]]


@pytest.mark.parametrize(("conversations", "drops"), [(UNEVEN, 2), (UNEVEN[2:3], 0), (UNEVEN[1:2] * 2, 0)],
                         ids=["rows stop far apart", "one row", "every row stops at once"])
def test_rows_that_stopped_leave_the_batch_without_changing_any_answer(base_model, tokenizer, monkeypatch,
                                                                        conversations, drops):
    """Dropping finished rows from the eager batch keeps every row's tokens up to its stop token:
    the same as with every row decoded to the end, and as transformers' generate."""
    raw: list[list[int]] = []  # the static decoder's continuations, before generate cuts them
    dropped = []

    def recording_batch(*args):
        continuations, how = static_decoder.static_batch(*args)
        raw.extend(continuations)
        return continuations, how

    def counted_drop(*args, drop=static_decoder._drop_finished):
        dropped.append(1)
        return drop(*args)

    monkeypatch.setattr(generation, "static_batch", recording_batch)
    monkeypatch.setattr(static_decoder, "_drop_finished", counted_drop)

    def decode(how: str) -> list[dict]:
        return generate(base_model, tokenizer, conversations, batch_size=4, max_new_tokens=24, max_input_tokens=1024,
                        decode=how, cuda_graph=False)[0]

    compacted, compacted_raw = decode("static"), list(raw)
    assert len(dropped) == drops
    monkeypatch.setattr(static_decoder, "_SHRINK_AT_DONE_SHARE", 2.0)  # never: every row to the batch's end
    raw.clear()
    full = decode("static")
    assert compacted == full == decode("generate")
    stops = set(stop_token_ids(base_model, tokenizer))
    for row, full_row in zip(compacted_raw, raw, strict=True):
        assert row == full_row[:len(row)] and (len(row) == 24 or set(row) & stops)
    assert sorted({len(row) for row in compacted_raw}) == ([8, 16, 24] if drops else [len(raw[0])])
    assert any(r["hit_max_new_tokens"] for r in compacted) == (conversations is UNEVEN)


def test_decoder_choice(base_model):
    assert resolve_decoder(base_model, "auto") == ("static", None)  # on CPU too: same tokens, faster
    assert resolve_decoder(base_model, "generate") == ("generate", None)
    assert resolve_decoder(base_model, "static") == ("static", None)
    with pytest.raises(ConfigError, match="auto|generate|static"):
        resolve_decoder(base_model, "beam")
    base_model.generation_config.repetition_penalty = 1.3  # only transformers' generate applies it
    try:
        decoder, reason = resolve_decoder(base_model, "static")
        assert decoder == "generate" and "repetition_penalty" in reason
    finally:
        base_model.generation_config.repetition_penalty = 1.0



def test_generation_bar_stays_hidden_when_stderr_is_not_a_terminal(base_model, tokenizer, capsys):
    generate(base_model, tokenizer, CONVERSATIONS, batch_size=2, max_new_tokens=2, max_input_tokens=1024, **DECODER)
    assert capsys.readouterr().err == ""


def test_generation_shows_one_bar_over_the_examples_on_a_terminal(base_model, tokenizer, terminal_stderr):
    terminal = terminal_stderr()
    generate(base_model, tokenizer, CONVERSATIONS, batch_size=2, max_new_tokens=2, max_input_tokens=1024, **DECODER)
    shown = terminal.getvalue()
    assert "generate:" in shown and "0/3" in shown and "3/3" in shown
