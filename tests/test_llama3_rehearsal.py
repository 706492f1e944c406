"""The reference lab's Llama 3 path on CPU, with the real Llama 3.2 tokenizer of the tiny rehearsal base:
the chat format, the assistant-only loss mask, truncation at 2048, the eval prompt and the stop tokens."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lab.eval.decoder import static_decoder_unsupported
from lab.eval.generation import encode_prompts, generate, stop_token_ids
from lab.model.base import materialize_base_model
from lab.model.chat_template import TEMPLATE_DATE, render_chat
from lab.model.loading import load_for_inference, load_tokenizer
from lab.train.masking import tokenize_conversation, tokenize_for_training

from .conftest import REPO

BOS, START_HEADER, END_HEADER, EOM, EOT, END_OF_TEXT = 128000, 128006, 128007, 128008, 128009, 128001
DOUBLE_NEWLINE = 271  # "\n\n", after every header
SYSTEM_HEADER = ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                 f"Cutting Knowledge Date: December 2023\nToday Date: {TEMPLATE_DATE}\n\n")
GENERATION_PROMPT = "<|start_header_id|>assistant<|end_header_id|>\n\n"
CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is 2 + 2?"},
    {"role": "assistant", "content": "4."},
    {"role": "user", "content": "And 3 + 3?"},
    {"role": "assistant", "content": "6, since 3 + 3 = 6."},
]


@pytest.fixture(scope="module")
def llama_tokenizer(rehearsal_base_dir: Path):
    return load_tokenizer(rehearsal_base_dir)


@pytest.fixture(scope="module")
def llama_base(rehearsal_base_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rehearsal base as the base_model stage copies it into models/base."""
    out = tmp_path_factory.mktemp("base")
    materialize_base_model(str(rehearsal_base_dir), out)
    return out


def trained_runs(tokenizer, ids: list[int], mask: list[int]) -> list[tuple[int, str]]:
    """(start index, decoded text) of each contiguous run of trained tokens."""
    runs, start = [], None
    for index, bit in enumerate([*mask, 0]):
        if bit and start is None:
            start = index
        elif not bit and start is not None:
            runs.append((start, tokenizer.decode(ids[start:index])))
            start = None
    return runs


def test_the_tokenizer_is_llama_3_2s_with_the_text_models_vocabulary(llama_tokenizer):
    assert len(llama_tokenizer) == 128256  # <|image|> (128256) of the vision tokenizer dropped
    assert llama_tokenizer("Hello world")["input_ids"] == [BOS, 9906, 1917]
    assert (llama_tokenizer.bos_token_id, llama_tokenizer.eos_token_id, llama_tokenizer.pad_token_id) == (
        BOS, EOT, 128004)
    ids = llama_tokenizer.convert_tokens_to_ids(["<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>",
                                                 "<|end_of_text|>"])
    assert ids == [START_HEADER, END_HEADER, EOM, END_OF_TEXT]


def test_the_template_renders_the_llama_3_format(llama_tokenizer):
    assert render_chat(llama_tokenizer, [{"role": "user", "content": "Hi"}], add_generation_prompt=True) == (
        SYSTEM_HEADER + "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>" + GENERATION_PROMPT)
    assert render_chat(llama_tokenizer, CONVERSATION) == (
        SYSTEM_HEADER + "You are terse.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2 + 2?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n4.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nAnd 3 + 3?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n6, since 3 + 3 = 6.<|eot_id|>")
    with pytest.raises(Exception, match="system, user and assistant turns only"):
        render_chat(llama_tokenizer, [{"role": "tool", "content": "{}"}])


def test_the_template_date_is_the_labs_and_a_clock_reading_template_is_pinned(llama_tokenizer, monkeypatch):
    template = (REPO / "benchmarks" / "llama3_chat_template.jinja").read_text()
    assert f'set date_string = "{TEMPLATE_DATE}"' in template
    # The official Llama 3.2 template reads the clock unless date_string is given: the lab gives it.
    monkeypatch.setattr(llama_tokenizer, "chat_template", "{%- if date_string is not defined %}"
                        "{%- set date_string = strftime_now('%d %b %Y') %}{%- endif %}{{ date_string }}")
    assert render_chat(llama_tokenizer, [{"role": "user", "content": "Hi"}]) == TEMPLATE_DATE


def test_the_loss_mask_trains_exactly_each_answer_and_its_eot(llama_tokenizer):
    row = tokenize_conversation(llama_tokenizer, CONVERSATION)
    ids, mask = row["input_ids"], row["assistant_masks"]
    runs = trained_runs(llama_tokenizer, ids, mask)
    assert [text for _, text in runs] == ["4.<|eot_id|>", "6, since 3 + 3 = 6.<|eot_id|>"]
    # Before each answer: the assistant header and its "\n\n", none of them trained.
    for start, _ in runs:
        assert ids[start - 4:start] == [START_HEADER, llama_tokenizer.convert_tokens_to_ids("assistant"),
                                        END_HEADER, DOUBLE_NEWLINE]
        assert mask[start - 4:start] == [0, 0, 0, 0]
    trained = [token for token, bit in zip(ids, mask, strict=True) if bit]
    assert START_HEADER not in trained and END_HEADER not in trained and trained.count(EOT) == 2
    assert ids.count(EOT) == 5  # system, two user turns: their end of turn is not trained
    # One BOS, from the template: the tokenizer adds none on top (it would to plain text).
    assert ids.count(BOS) == 1 and ids == llama_tokenizer.apply_chat_template(
        CONVERSATION, tokenize=True, return_dict=True, date_string=TEMPLATE_DATE)["input_ids"]


def test_truncation_at_2048_keeps_the_mask_aligned(llama_tokenizer):
    long_answer = [{"role": "user", "content": "Write at length."},
                   {"role": "assistant", "content": "word " * 3000}]
    rows, stats = tokenize_for_training(llama_tokenizer, [{"messages": CONVERSATION}, {"messages": long_answer}], 2048,
                                         "truncate")
    full = tokenize_conversation(llama_tokenizer, long_answer)
    assert len(full["input_ids"]) > 2048 and stats["truncated"] == 1 and stats["examples"] == 2
    cut = rows[1]
    assert cut["input_ids"] == full["input_ids"][:2048] and cut["assistant_masks"] == full["assistant_masks"][:2048]
    assert cut["assistant_masks"][-1] == 1 and EOT not in cut["input_ids"][-2000:]  # cut inside the answer
    assert stats["tokens"] == len(rows[0]["input_ids"]) + 2048


def test_the_eval_prompt_ends_with_the_assistant_header_and_keeps_bos_when_truncated(llama_tokenizer):
    history = CONVERSATION[:-1]
    header = llama_tokenizer(GENERATION_PROMPT, add_special_tokens=False)["input_ids"]
    prompt = encode_prompts(llama_tokenizer, [history], max_input_tokens=1024)[0]
    assert prompt["input_ids"][-len(header):] == header and prompt["input_ids"].count(BOS) == 1
    long = [{"role": "user", "content": "word " * 500}]
    full = encode_prompts(llama_tokenizer, [long], max_input_tokens=10_000)[0]["input_ids"]
    cut = encode_prompts(llama_tokenizer, [long], max_input_tokens=64)[0]
    assert cut["prompt_truncated"] and cut["prompt_tokens"] == len(full)
    assert cut["input_ids"] == [BOS, *full[-63:]]  # the question's end, after the sequence start


class ScriptedModel:
    """Continues every prompt with the same tokens, as transformers' generate returns them (prompt first)."""

    def __init__(self, generation_config, continuation: list[int]) -> None:
        self.generation_config, self.continuation = generation_config, continuation
        self.device = torch.device("cpu")

    def generate(self, input_ids, **kwargs):
        self.kwargs = kwargs
        tail = torch.tensor([self.continuation] * input_ids.shape[0], dtype=input_ids.dtype)
        return torch.cat([input_ids, tail], dim=1)


@pytest.mark.parametrize("stop", [EOT, EOM, END_OF_TEXT])
def test_generation_stops_at_each_llama_3_end_token(llama_base, llama_tokenizer, stop):
    from transformers import GenerationConfig

    answer = llama_tokenizer("The answer", add_special_tokens=False)["input_ids"]
    junk = llama_tokenizer(" more", add_special_tokens=False)["input_ids"]
    model = ScriptedModel(GenerationConfig.from_pretrained(llama_base), [*answer, stop, *junk])
    # decode="generate": the scripted model stands in for transformers' generate.
    results, _ = generate(model, llama_tokenizer, [CONVERSATION[:2]], batch_size=1, max_new_tokens=16,
                          max_input_tokens=1024, decode="generate", cuda_graph=True)
    assert results[0] == {**results[0], "prediction": "The answer", "new_tokens": len(answer),
                          "hit_max_new_tokens": False}
    # Greedy whatever the model's own generation config says (Llama 3.2 samples by default).
    assert model.kwargs["eos_token_id"] == [END_OF_TEXT, EOM, EOT] and model.kwargs["do_sample"] is False


def test_the_base_model_stage_keeps_the_rehearsal_bases_tokenizer_template_stops_and_marker(
        rehearsal_base_dir, llama_base):
    import json

    assert (rehearsal_base_dir / "RANDOM_WEIGHTS.md").is_file()
    config = json.loads((llama_base / "config.json").read_text())
    assert config["lab_rehearsal"]["random_weights"] is True and config["vocab_size"] == 128256
    model, tokenizer = load_for_inference(llama_base, None, "cpu")
    assert stop_token_ids(model, tokenizer) == [END_OF_TEXT, EOM, EOT]
    # Llama 3.2's sampling defaults (temperature, top_p) leave greedy choices alone: on a GPU the lab's
    # CUDA-graph decoder runs, no fallback to transformers' generate.
    assert model.generation_config.do_sample and static_decoder_unsupported(model) is None
    assert tokenizer.chat_template == (REPO / "benchmarks" / "llama3_chat_template.jinja").read_text()
    # The real (random) model decodes through the lab: greedy, at most max_new_tokens.
    results, timing = generate(model, tokenizer, [CONVERSATION[:2]], batch_size=1, max_new_tokens=4,
                               max_input_tokens=1024, decode="auto", cuda_graph=True)
    assert results[0]["new_tokens"] <= 4 and timing["decoder"] == "static"
