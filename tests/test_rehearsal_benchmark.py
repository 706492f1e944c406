"""The rehearsal's CPU-checkable parts: FineTome-shaped data, and the GPU benchmark's settings, arguments
and projection (benchmarks/finetome_shaped.py, benchmarks/rehearsal.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from lab.data.formats import resolve_format
from lab.data.rows import normalize_rows
from lab.model.loading import load_tokenizer

from .conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

import finetome_shaped as ft  # noqa: E402
import rehearsal  # noqa: E402
from train_workload import sample_lengths  # noqa: E402

README_FULL_LAB = ["model.base=unsloth/Llama-3.2-3B-Instruct", "data.source=mlabonne/FineTome-100k",
                   "data.max_train_examples=null", "data.eval_examples=100", "evaluate.max_new_tokens=256",
                   "train.max_seq_length=2048", "evaluate.batch_size=100"]


@pytest.fixture(scope="module")
def words() -> list[str]:
    return ft.word_list(ft.tokenizer_json_path())


def test_finetome_shaped_rows_have_finetomes_schema_and_mix(words):
    rows = ft.finetome_shaped_rows(400, 3407, words)
    assert rows == ft.finetome_shaped_rows(400, 3407, words)  # seeded
    assert resolve_format(rows, "auto") == "sharegpt"
    conversations, dropped = normalize_rows(rows, "error", "auto", same_role_turns="reject")
    assert len(conversations) == 400 and not dropped
    assert {row["source"] for row in rows} <= set(ft.SOURCE_SHARES)
    assert all(ft.SCORE_RANGE[0] <= row["score"] <= ft.SCORE_RANGE[1] for row in rows)
    speakers = [[turn["from"] for turn in row["conversations"]] for row in rows]
    assert all(set(s) <= {"system", "human", "gpt"} and s[-1] == "gpt" for s in speakers)
    multi_turn = sum(s.count("gpt") > 1 for s in speakers) / len(rows)
    with_system = sum(s[0] == "system" for s in speakers) / len(rows)
    assert abs(multi_turn - ft.MULTI_TURN_SHARE) < 0.05 and abs(with_system - ft.SYSTEM_SHARE) < 0.04


def test_finetome_shaped_lengths_are_the_workloads_in_llama_3_tokens(words, rehearsal_base_dir):
    tokenizer = load_tokenizer(rehearsal_base_dir)
    rows = ft.finetome_shaped_rows(200, 11, words)
    drawn = sample_lengths(200, 11)
    counted = [sum(len(tokenizer(turn["value"], add_special_tokens=False)["input_ids"])
                   for turn in row["conversations"]) for row in rows]
    # One token a word and a period: off only by a turn's first word (no leading space) and rounding.
    assert all(d - 4 <= c <= d * 1.1 + 8 for d, c in zip(drawn, counted, strict=True))
    assert sum(counted) / sum(drawn) == pytest.approx(1.0, abs=0.05)


def test_write_finetome_shaped_writes_json_lines(tmp_path):
    out = tmp_path / "data" / "ft.jsonl"
    assert ft.write_finetome_shaped(out, 25, 1) == 25
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 25 and set(rows[0]) == {"conversations", "source", "score"}


@pytest.mark.parametrize("doc", ["docs/gpu.md", "README.md"])
def test_the_benchmark_runs_the_readmes_full_lab_command_with_three_params_changed(tmp_path, doc):
    full = rehearsal.full_lab_settings((REPO / doc).read_text())  # the README repeats docs/gpu.md's command
    assert full == README_FULL_LAB
    settings = rehearsal.rehearsal_settings(full, tmp_path / "base", tmp_path / "ft.jsonl", 2000)
    changed = [s for s in settings if s not in full]
    assert changed == [f"model.base={tmp_path / 'base'}", f"data.source={tmp_path / 'ft.jsonl'}",
                       "data.max_train_examples=2000"]
    assert [s.partition("=")[0] for s in settings] == [s.partition("=")[0] for s in full]


def test_the_benchmark_parses_its_arguments(tmp_path):
    base, data = tmp_path / "base", tmp_path / "ft.jsonl"
    base.mkdir()
    (base / "config.json").write_text("{}")
    data.write_text("")
    args = rehearsal.parse_args(["--base", str(base), "--data", str(data), "--out", "r.json"])
    assert (args.train_examples, args.full_examples, args.doc) == (2000, 85_000, Path("docs/gpu.md"))
    with pytest.raises(SystemExit):
        rehearsal.parse_args(["--base", str(tmp_path / "none"), "--data", str(data), "--out", "r.json"])
    assert rehearsal.rehearsal_marker(base) is None
    extra = rehearsal.parse_args(["--base", str(base), "--data", str(data), "--out", "r.json",
                                  "--set", "evaluate.semantic_similarity=false"])
    assert extra.set == ["evaluate.semantic_similarity=false"]
    for bad in ("data.source=x.jsonl", "no-equals-sign"):  # the rehearsed keys have their own options
        with pytest.raises(SystemExit):
            rehearsal.parse_args(["--base", str(base), "--data", str(data), "--out", "r.json", "--set", bad])


TRAIN = {"data": {"examples": 2000, "tokens": 1_000_000}, "runtime_s": 400.0, "tokens_per_s": 2500.0}
STAGES = {"base_model": 60.0, "prepare": 90.0, "train": 460.0, "evaluate_base": 40.0, "evaluate_finetuned": 45.0,
          "compare": 3.0, "report": 2.0}


def test_the_projection_scales_tokenizing_and_training_and_keeps_the_fixed_cost():
    training = rehearsal.project_training(STAGES["train"], TRAIN, tokenize_s=10.0, examples=85_000, epochs=1)
    # 500 tokens an example; 85,000 x 500 tokens at 2,500 tokens/s; 10 s per 2,000 examples; 460 - 400 - 10 fixed.
    assert training == {"examples": 85_000, "epochs": 1, "tokens_per_example": 500.0, "tokens": 42_500_000,
                        "tokens_per_s": 2500.0, "fixed_s": 50.0, "tokenize_s": 425.0, "training_s": 17_000.0,
                        "train_stage_s": 17_475.0}
    full = rehearsal.project_full_lab(STAGES, training)
    assert full["other_stages_s"] == {k: v for k, v in STAGES.items() if k != "train"}
    assert full["total_s"] == 17_475.0 + 240.0 and full["total_h"] == round(17_715 / 3600, 2)
    assert rehearsal.project_training(460.0, TRAIN, 10.0, 85_000, epochs=2)["training_s"] == 34_000.0


def test_projecting_the_slice_itself_gives_back_its_stage_time():
    assert rehearsal.project_training(STAGES["train"], TRAIN, 10.0, examples=2000, epochs=1)["train_stage_s"] == 460.0


def test_the_3b_rehearsal_base_is_llama_3_2_3bs_size():
    """Counted on the meta device (no memory): the 3B is only ever built on a GPU host."""
    import torch
    from rehearsal_base import SIZES
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**SIZES["3b"]))
    assert sum(p.numel() for p in model.parameters()) == 3_212_749_824  # tied embeddings counted once
