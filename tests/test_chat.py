"""The chat CLI (tools/chat.py) on the real embedded model: answers streamed as generated and equal to
the evaluate stage's predictions, two conversations driven through a pipe and logged with a rating
and a correction, prepare and a tiny training run on that log, the trained adapter chatted with, and
each kind of bad input answered by one line, never a traceback."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from lab.chat.log import ChatLog
from lab.chat.models import adapter_problem, load_chat_model
from lab.chat.session import ChatSession
from lab.chat.streaming import GenerationSettings, ReplyStream
from lab.eval.generation import generate

from .conftest import REPO, _merged, make_config, run_stage_process

CHAT = REPO / "tools" / "chat.py"
SYSTEM = "Answer in one short sentence."
MAX_NEW_TOKENS = 12
# Two conversations, with bad input between them; nothing after /quit is read.
SESSION = [
    "/rate 3",                       # nothing to rate yet
    "",                              # empty: not sent
    "What does the len function return?",
    "/rate 1",
    "And for a dict?",
    "/new",
    "Name a Python keyword.",
    "/rate 5",
    "What is a tuple?",
    "/fix A tuple is an immutable sequence of values.",
    "Give one example.",
    "/frobnicate",
    "/rate 9",
    "/rate four",
    "/fix",
    "/quit",
    "This message is never sent.",
]
CORRECTION = "A tuple is an immutable sequence of values."


def run_chat(*args: str, stdin: str = "", timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHAT), *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.fixture(scope="module")
def piped_session(embedded_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """One chat session through a pipe, logged: (the finished process, its log rows, the log's path)."""
    log = tmp_path_factory.mktemp("chat") / "feedback.jsonl"
    result = run_chat("--model", str(embedded_model_dir), "--system", SYSTEM, "--max-new-tokens", str(MAX_NEW_TOKENS),
                      "--log", str(log), "--timings", stdin="\n".join(SESSION) + "\n")
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result, rows, log


def test_answers_stream_in_pieces_and_equal_the_evaluate_stage_predictions(base_model, tokenizer):
    messages = [{"role": "user", "content": "Explain what a Python dictionary is."}]
    settings = GenerationSettings(max_new_tokens=24, temperature=0.0, top_p=1.0, top_k=0, seed=None,
                                  max_input_tokens=1024)
    stream = ReplyStream(base_model, tokenizer, messages, settings)
    chunks, arrivals = [], []
    for chunk in stream:
        chunks.append(chunk)
        arrivals.append(time.perf_counter())
    reply = stream.reply
    assert len(chunks) > 3, chunks  # word by word, not the answer at once
    assert reply.first_token_seconds is not None and reply.first_token_seconds < reply.seconds / 2
    assert arrivals[0] < arrivals[-1]
    assert "".join(chunks).strip() == reply.text
    predictions, _ = generate(base_model, tokenizer, [messages], batch_size=1, max_new_tokens=24,
                              max_input_tokens=1024, decode="auto", cuda_graph=False)
    assert reply.text == predictions[0]["prediction"]
    assert (reply.new_tokens, reply.hit_max_new_tokens) == (predictions[0]["new_tokens"],
                                                            predictions[0]["hit_max_new_tokens"])


def test_sampling_follows_its_seed(base_model, tokenizer):
    from transformers import set_seed

    messages = [{"role": "user", "content": "Say something about rivers."}]
    settings = GenerationSettings(max_new_tokens=10, temperature=1.0, top_p=0.9, top_k=50, seed=7,
                                  max_input_tokens=1024)
    texts = []
    for _ in range(2):
        set_seed(7)
        stream = ReplyStream(base_model, tokenizer, messages, settings)
        list(stream)
        texts.append(stream.reply.text)
    assert texts[0] == texts[1] and texts[0]
    assert settings.generate_kwargs()["do_sample"] is True
    assert GenerationSettings(10, 0.0, 1.0, 0, None, 1024).generate_kwargs()["do_sample"] is False


def test_a_piped_session_logs_each_answer_with_its_rating_and_correction(piped_session, embedded_model_dir):
    result, rows, _ = piped_session
    assert result.returncode == 0, result.stderr[-3000:]
    assert [(row["turn"], row["rating"], row["correction"]) for row in rows] == [
        (1, 1, None), (2, None, None), (1, 5, None), (2, None, CORRECTION), (3, None, None)]
    first, second = rows[0]["conversation"], rows[2]["conversation"]
    assert first != second and [row["conversation"] for row in rows] == [first, first, second, second, second]
    questions = [line for line in SESSION[:11] if line and not line.startswith("/")]
    for row, question in zip(rows, questions, strict=True):
        assert row["messages"][0] == {"role": "system", "content": SYSTEM}
        assert row["messages"][-2] == {"role": "user", "content": question}
        assert row["messages"][-1]["role"] == "assistant"
        assert row["id"] == f"{row['conversation']}-{row['turn']}" and row["source"] == "chat"
        assert row["model"] == str(embedded_model_dir) and row["adapters"] == {} and row["adapter"] is None
        assert row["generation"]["max_new_tokens"] == MAX_NEW_TOKENS and row["generation"]["decoding"] == "greedy"
        assert datetime.fromisoformat(row["time"]).tzinfo is not None
    # The conversation went on from the correction, and its earlier turns are the earlier rows'.
    assert rows[4]["messages"][:5] == [*rows[3]["messages"][:4], {"role": "assistant", "content": CORRECTION}]
    assert rows[1]["messages"][:3] == rows[0]["messages"]
    # The streamed answers, one per line on stdout, are the logged ones.
    assert result.stdout.splitlines() == [row["messages"][-1]["content"] for row in rows]


def test_bad_input_in_a_session_gets_one_line_each_and_the_session_goes_on(piped_session, embedded_model_dir):
    result, rows, _ = piped_session
    errors = result.stderr.splitlines()
    for expected in ("nothing to rate yet: /rate N rates the last answer of this conversation",
                     "empty message, not sent: type a message, or /help",
                     "/rate takes a whole number from 1 to 5, got '9'",
                     "/rate takes a whole number from 1 to 5, got 'four'",
                     "/fix needs the corrected answer after it: /fix TEXT"):
        assert expected in errors, result.stderr
    assert any(line.startswith("unknown command /frobnicate; commands: /new") for line in errors)
    assert sum(line.startswith(f"(loaded {embedded_model_dir} on cpu in ") for line in errors) == 1
    assert sum(line.startswith("(first token after ") for line in errors) == 5
    assert "Traceback" not in result.stderr
    assert not any("never sent" in json.dumps(row) for row in rows)


def test_prepare_and_training_on_the_log_learn_the_kept_answers_with_the_correction(
        piped_session, embedded_model_dir, tmp_path):
    _, rows, log = piped_session
    overrides = {
        "data": {"source": str(log), "eval_examples": 1, "validation_examples": 0, "max_train_examples": None,
                 "test_size": 0.2, "dedup": {"leak_check": False}},
        "train": {"batch_size": 1, "grad_accum": 1, "max_seq_length": 256, "eval_steps": 1, "warmup_steps": 0},
        "feedback": {"min_rating": 3, "unrated": "keep"},
    }
    make_config(overrides)  # valid params
    params = _merged(yaml.safe_load((REPO / "params.yaml").read_text()), overrides)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "base").symlink_to(embedded_model_dir, target_is_directory=True)
    for stage in ("prepare", "train"):
        done = run_stage_process(stage, tmp_path)
        assert done.returncode == 0, f"{stage}:\n{done.stderr[-3000:]}"
    read = lambda name: [json.loads(line) for line in (tmp_path / "data" / name).read_text().splitlines()]  # noqa: E731
    train, test = read("train.jsonl"), read("test.jsonl")
    # Seed 3407 holds out the third answer (rated 5); the first conversation's answers go, the first
    # rated 1 and the second with it in its history; the corrected answer and the one after it stay.
    assert [row["id"] for row in test] == [rows[2]["id"]]
    assert [row["id"] for row in train] == [rows[3]["id"], rows[4]["id"]]
    assert train[0]["messages"] == [*rows[3]["messages"][:-1], {"role": "assistant", "content": CORRECTION}]
    assert train[1]["messages"] == rows[4]["messages"]
    for row in train:  # the feedback stays beside the conversation, never in its text
        assert all(set(message) == {"role", "content"} for message in row["messages"])
        assert not any(rows[0]["conversation"] in m["content"] or "rating" in m["content"] for m in row["messages"])
    data = json.loads((tmp_path / "metrics" / "data.json").read_text())
    assert data["filtered"] == {"min_rating": 2}
    trained = json.loads((tmp_path / "metrics" / "train.json").read_text())
    assert trained["data"]["examples"] == 2 and trained["steps"] == 2
    # The loop closes: the adapter trained on the feedback answers in the chat.
    answered = run_chat("--model", str(embedded_model_dir), "--adapter", str(tmp_path / "models" / "adapter"),
                        "--prompt", "What is a tuple?", "--max-new-tokens", "8")
    assert answered.returncode == 0, answered.stderr[-3000:]
    assert answered.stdout.strip() and "Traceback" not in answered.stderr


def tiny_adapter(directory: Path, family: str) -> Path:
    """A real peft LoRA adapter of a tiny random model of another shape (llama) or architecture (gpt2)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    torch.manual_seed(0)
    if family == "llama":
        config, targets = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=4, vocab_size=256), ["q_proj", "v_proj"]
    else:
        config, targets = GPT2Config(n_embd=64, n_layer=1, n_head=2, vocab_size=256), ["c_attn"]
    model = get_peft_model(AutoModelForCausalLM.from_config(config), LoraConfig(r=4, target_modules=targets))
    model.save_pretrained(directory)
    return directory


def test_an_adapter_of_another_base_model_is_named_with_what_does_not_fit(base_model, tmp_path):
    other_shapes = adapter_problem(base_model, tiny_adapter(tmp_path / "llama", "llama"))
    assert other_shapes.startswith("does not fit this model (LlamaForCausalLM): model.layers.0.self_attn.q_proj "
                                   "(input size 64 in the adapter, 576 in the model)")
    assert "it was trained on another base model" in other_shapes
    other_modules = adapter_problem(base_model, tiny_adapter(tmp_path / "gpt2", "gpt2"))
    assert "transformer.h.0.attn.c_attn (no such module)" in other_modules


def test_a_mismatched_adapter_ends_the_cli_with_one_line(embedded_model_dir, tmp_path):
    adapter = tiny_adapter(tmp_path / "llama", "llama")
    result = run_chat("--model", str(embedded_model_dir), "--adapter", f"other={adapter}", "--prompt", "Hi")
    assert result.returncode == 1 and not result.stdout
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"chat: error: --adapter other={adapter} does not fit this model (LlamaForCausalLM): "
                           "model.layers.0.self_attn.q_proj (input size 64 in the adapter, 576 in the model)")


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "/no/such/model"],
     "chat: error: --model /no/such/model is neither a model directory nor a .gguf file"),
    (["--adapter", "/no/such/adapter"], "chat: error: --adapter adapter=/no/such/adapter is not a directory"),
    (["--use", "docs"], "chat: error: --use docs: no such adapter; loaded: none (no --adapter)"),
    (["--temperature", "-1"], "chat: error: --temperature -1.0: must be >= 0 (0: greedy)"),
    (["--top-k", "5"], "chat: error: --top-p and --top-k apply to sampling only: set --temperature above 0"),
    (["--prompt", "  "], "chat: error: --prompt is empty: give the message to answer"),
    (["--log", "/no/such/dir/log.jsonl"],
     "chat: error: --log /no/such/dir/log.jsonl: cannot open it for appending (No such file or directory)"),
])
def test_fatal_bad_input_is_one_line_and_a_nonzero_exit(embedded_model_dir, args, message):
    model = [] if "--model" in args else ["--model", str(embedded_model_dir)]
    result = run_chat(*model, *args, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == message


def test_a_model_path_that_is_an_adapter_or_a_model_passed_as_adapter_is_named(embedded_model_dir, tmp_path):
    adapter = tiny_adapter(tmp_path / "llama", "llama")
    as_model = run_chat("--model", str(adapter), timeout=60)
    assert as_model.returncode == 1 and as_model.stderr.strip() == (
        f"chat: error: --model {adapter} is a LoRA adapter, not a model: pass it with --adapter (on its base model, "
        "--model)")
    as_adapter = run_chat("--model", str(embedded_model_dir), "--adapter", f"x={embedded_model_dir}", timeout=60)
    assert as_adapter.returncode == 1 and as_adapter.stderr.strip().endswith(
        "has no adapter_config.json, so it is not a LoRA adapter: it is a model; pass it with --model")


def random_adapter(base_dir: Path, directory: Path, seed: int, targets: list[str]) -> Path:
    """A LoRA adapter of the embedded model with random weights (both factors), so it changes the answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    get_peft_model(model, LoraConfig(r=4, target_modules=targets, init_lora_weights=False)).save_pretrained(directory)
    return directory


def test_the_selector_picks_each_conversations_adapter_once_and_it_answers(embedded_model_dir, base_model, tokenizer,
                                                                           tmp_path):
    adapters = {"docs": random_adapter(embedded_model_dir, tmp_path / "docs", 1, ["q_proj", "v_proj"]),
                "code": random_adapter(embedded_model_dir, tmp_path / "code", 2, ["o_proj", "down_proj"])}
    chat = load_chat_model(embedded_model_dir, adapters, "cpu")
    picks = iter(["code", "docs", "code"])  # a fourth call would raise: one choice per conversation
    seen: list[list[dict]] = []
    choose = lambda messages: seen.append(messages) or next(picks)  # noqa: E731
    settings = GenerationSettings(8, 0.0, 1.0, 0, None, 1024)
    session = ChatSession(chat, settings, choose=choose, log=ChatLog(tmp_path / "log.jsonl"), produced_by={},
                          out=io.StringIO(), notices=io.StringIO())
    question = "How do I sort a list?"
    answers = [session.send(question).text]
    session.send("And in reverse?")
    for _ in range(2):
        session.handle("/new")
        answers.append(session.send(question).text)
    session.close()
    assert seen == [[{"role": "user", "content": question}]] * 3
    assert answers[0] == answers[2] != answers[1]
    base = ReplyStream(base_model, tokenizer, [{"role": "user", "content": question}], settings)
    list(base)
    assert base.reply.text not in answers
    logged = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [row["adapter"] for row in logged] == ["code", "code", "docs", "code"]


def test_the_router_picks_each_conversations_adapter_through_the_cli(embedded_model_dir, tmp_path):
    """--router: a router fitted on two domains' prompts sends a math question to the math adapter, a
    code question to the code adapter and an off-topic one (below the threshold) to mixed; the adapters
    are read from beside the router folder, and the log says which answered."""
    from lab.domains.router import Router

    domains = tmp_path / "domains"
    for seed, name in enumerate(("math", "code", "mixed"), start=1):
        random_adapter(embedded_model_dir, domains / name, seed, ["q_proj", "v_proj"])
    math = [[{"role": "user", "content": f"What is {a} plus {a + 3}? Show the steps."}] for a in range(5)]
    code = [[{"role": "user", "content": f"Write a Python function that reverses list number {a}."}] for a in range(5)]
    Router.fit({"math": math, "code": code}, threshold=0.3).save(domains / "router")
    log = tmp_path / "log.jsonl"
    lines = ["What is 7 plus 12? Show the steps.", "/new", "Write a Python function that reverses a list.", "/new",
             "My cat sleeps all afternoon in the sun.", "/quit"]
    result = run_chat("--model", str(embedded_model_dir), "--router", str(domains / "router"), "--max-new-tokens",
                      "4", "--log", str(log), stdin="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert [json.loads(line)["adapter"] for line in log.read_text().splitlines()] == ["math", "code", "mixed"]
    both = run_chat("--model", str(embedded_model_dir), "--router", str(domains / "router"), "--use", "math",
                    "--prompt", "hi")
    assert both.returncode == 1 and "--use and --router both choose the adapter" in both.stderr
