"""Where the base model and the datasets come from, loaded safely: safetensors weights only, a
repository's own code only with model.trust_remote_code, Hub revisions pinned by params and the
commit they resolved to recorded. Everything here runs offline: a Hub model is served from a
Hub cache built in tmp_path (HF_HUB_OFFLINE=1), a Hub dataset by a stand-in `datasets` builder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.core.errors import ConfigError, DataError

from .conftest import REPO, make_config

WORDS = ["<unk>", "<pad>", "<s>", "</s>", "user", "assistant", "system", "hello", "world"]
TEMPLATE = ("{% for m in messages %}{{ m['role'] }} {{ m['content'] }}</s>{% endfor %}"
            "{% if add_generation_prompt %}assistant{% endif %}")
MAIN, TAGGED = "1" * 40, "2" * 40


def tiny_model(out: Path) -> Path:
    """A randomly initialised 2-layer Llama with a word-level tokenizer and a chat template, saved
    as transformers saves it (safetensors)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = Tokenizer(models.WordLevel({word: i for i, word in enumerate(WORDS)}, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=words, unk_token="<unk>", pad_token="<pad>",
                                        bos_token="<s>", eos_token="</s>")
    tokenizer.chat_template = TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(WORDS), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                         pad_token_id=1, bos_token_id=2, eos_token_id=3)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


def pickled_copy(source: Path, out: Path) -> Path:
    """`source` with its weights as a PyTorch pickle (pytorch_model.bin) instead of safetensors:
    transformers 5 saves safetensors only (save_pretrained ignores safe_serialization=False)."""
    import torch
    from safetensors.torch import load_file

    shutil.copytree(source, out)
    torch.save(load_file(out / "model.safetensors"), out / "pytorch_model.bin")
    (out / "model.safetensors").unlink()
    return out


def test_a_local_gguf_file_or_a_folder_of_one_loads_through_the_gguf_path(tmp_path, monkeypatch):
    from lab.model import base as base_model

    read: list[Path] = []
    monkeypatch.setattr(base_model, "_from_gguf", lambda gguf: read.append(gguf) or ("model", "tokenizer"))
    (tmp_path / "m.Q4_1.gguf").write_bytes(b"GGUF")
    for base in (tmp_path, tmp_path / "m.Q4_1.gguf"):
        assert base_model._load_base(str(base), None, False) == ("model", "tokenizer", str(tmp_path / "m.Q4_1.gguf"))
    assert read == [tmp_path / "m.Q4_1.gguf"] * 2


def test_a_pickle_only_local_model_is_refused_with_the_reason_before_it_loads(tiny_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from lab.model.base import materialize_base_model
    from lab.model.loading import load_for_inference
    from lab.model.runtime import resolve_runtime
    from lab.train.backends import load_trainable_model

    pickled = pickled_copy(tiny_dir, tmp_path / "pickled")
    reason = r"holds PyTorch pickle weights only \(pytorch_model.bin\), which can run code while they load"
    with pytest.raises(ConfigError, match=f"model.base: '{pickled}' is not allowed; it must be a loadable local "
                                          f"model, but it {reason}"):
        make_config({"model": {"base": str(pickled)}})
    with pytest.raises(ConfigError, match=reason):
        materialize_base_model(str(pickled), tmp_path / "out")
    config = make_config({"train": {"backend": "hf", "quantization": "none"}})
    with pytest.raises(ConfigError, match=f"base model {pickled} {reason}"):
        load_trainable_model(pickled, config.training, resolve_runtime(config.train, cuda_available=False))
    # transformers alone would read the pickle; the lab's use_safetensors=True refuses it.
    assert AutoModelForCausalLM.from_pretrained(pickled) is not None
    with pytest.raises(OSError, match="model.safetensors"):
        load_for_inference(pickled, None, "cpu")


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Records the keyword arguments of every transformers Auto* load, then loads as asked."""
    import transformers

    calls: list[tuple[str, dict[str, Any]]] = []
    for name in ("AutoConfig", "AutoModelForCausalLM", "AutoTokenizer"):
        cls = getattr(transformers, name)
        for method in ("from_pretrained", "from_config"):
            original = getattr(cls, method, None)
            if original is None:
                continue

            def record(_cls: Any, *args: Any, _original: Any = original, _name: str = f"{name}.{method}",
                       **kwargs: Any) -> Any:
                calls.append((_name, kwargs))
                return _original(*args, **kwargs)

            monkeypatch.setattr(cls, method, classmethod(record))
    return calls


@pytest.mark.parametrize("trust", [False, True])
def test_trust_remote_code_and_safetensors_reach_every_model_and_tokenizer_load(tiny_dir, tmp_path, loads, trust):
    from lab.model.base import materialize_base_model
    from lab.model.loading import load_for_inference
    from lab.model.runtime import resolve_runtime
    from lab.train.backends import check_lora_targets, load_trainable_model

    config = make_config({"model": {"base": str(tiny_dir), "trust_remote_code": trust},
                          "train": {"backend": "hf", "quantization": "none"}})
    base = tmp_path / "base"
    info = materialize_base_model(config.model.base, base, config.model.revision, config.model.trust_remote_code)
    assert (info["origin"], info["revision"], info["commit"], info["trust_remote_code"]) == (str(tiny_dir), None,
                                                                                            None, trust)
    check_lora_targets(base, config.train.lora, config.model.trust_remote_code)
    load_trainable_model(base, config.training, resolve_runtime(config.train, cuda_available=False))
    load_for_inference(base, None, "cpu", "none", config.model.trust_remote_code)
    assert {name for name, _ in loads} == {"AutoConfig.from_pretrained", "AutoModelForCausalLM.from_config",
                                           "AutoModelForCausalLM.from_pretrained", "AutoTokenizer.from_pretrained"}
    assert [name for name, kwargs in loads if kwargs.get("trust_remote_code") is not trust] == []
    weights = [kwargs for name, kwargs in loads if name == "AutoModelForCausalLM.from_pretrained"]
    assert len(weights) == 3 and all(kwargs["use_safetensors"] is True for kwargs in weights)


def test_a_model_that_ships_its_own_code_is_refused_unless_trust_remote_code(tiny_dir, tmp_path):
    from lab.model.base import materialize_base_model

    custom = shutil.copytree(tiny_dir, tmp_path / "custom")
    config = json.loads((custom / "config.json").read_text())
    # An architecture transformers does not know, whose code the repository would bring.
    config.update(model_type="lab-custom-llm", auto_map={"AutoConfig": "modeling_custom.CustomConfig",
                                                         "AutoModelForCausalLM": "modeling_custom.CustomModel"})
    (custom / "config.json").write_text(json.dumps(config))
    (custom / "modeling_custom.py").write_text("raise SystemExit('remote code ran')\n")
    with pytest.raises(ConfigError, match=f"model.base '{custom}' ships its own Python code \\(auto_map\\), which "
                                          "model.trust_remote_code: false refuses to run"):
        materialize_base_model(str(custom), tmp_path / "out", None, False)


def hub_cache(tiny_dir: Path, root: Path) -> Path:
    """A Hub cache holding lab-test/tiny at two commits: main, and the tag v1."""
    repo = root / "models--lab-test--tiny"
    for ref, commit in (("main", MAIN), ("v1", TAGGED)):
        shutil.copytree(tiny_dir, repo / "snapshots" / commit)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return root


@pytest.mark.parametrize(("revision", "commit"), [(None, MAIN), ("v1", TAGGED)])
def test_the_base_model_stage_loads_a_hub_model_at_model_revision_and_records_its_commit(tiny_dir, tmp_path,
                                                                                         revision, commit):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["model"].update(base="lab-test/tiny", revision=revision)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub_cache(tiny_dir, tmp_path / "hub")),
           "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, str(REPO / "stages/base_model.py"), "--out", "base"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    origin = json.loads((tmp_path / "base" / "lab_origin.json").read_text())
    assert (origin["origin"], origin["revision"], origin["commit"]) == ("lab-test/tiny", revision, commit)
    assert f"base model lab-test/tiny at {commit}" in run.stdout


def chats(topic: str, count: int) -> list[dict[str, Any]]:
    """`count` distinct ShareGPT conversations about `topic`."""
    return [{"conversations": [{"from": "human", "value": f"Question {i} about {topic}?"},
                               {"from": "gpt", "value": " ".join(f"{topic}{i}w{j}" for j in range(9))}]}
            for i in range(count)]


class FakeBuilder:
    """Stands in for a `datasets` builder of a Hub dataset: its hash is the commit it read."""

    calls: list[dict[str, Any]] = []

    def __init__(self, name: str, revision: str | None = None, commit: str = TAGGED) -> None:
        self.calls.append({"name": name, "revision": revision})
        self.hash = commit

    def download_and_prepare(self) -> None:
        pass

    def as_dataset(self, split: str) -> list[dict[str, Any]]:
        self.calls[-1]["split"] = split
        return chats(self.calls[-1]["name"].replace("/", "-"), 40)


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    import datasets

    FakeBuilder.calls = []
    monkeypatch.setattr(datasets, "load_dataset_builder", FakeBuilder)
    return FakeBuilder.calls


def test_data_revision_reaches_the_hub_load_and_every_hub_commit_lands_in_the_data_metrics(fake_hub, tmp_path):
    from lab.data.prepare import prepare

    extra = tmp_path / "extra.jsonl"
    extra.write_text("".join(json.dumps(row) + "\n" for row in chats("local", 10)))
    config = make_config({"data": {
        "source": "lab-test/chats", "revision": "v1", "hub_split": "train_sft", "eval_examples": 2,
        "validation_examples": 2, "test_size": 0.2,
        "mix": {"extra_sources": [{"source": "lab-test/more-chats", "format": "sharegpt"},
                                  {"source": str(extra), "format": "sharegpt"}]}}})
    stats = prepare(config)["stats"]
    assert fake_hub == [{"name": "lab-test/chats", "revision": "v1", "split": "train_sft"},
                        {"name": "lab-test/more-chats", "revision": None, "split": "train_sft"}]
    assert stats["hub"] == {"lab-test/chats": {"revision": "v1", "commit": TAGGED},
                            "lab-test/more-chats": {"revision": None, "commit": TAGGED}}
    assert make_config().data.revision is None  # the default: the default branch


def test_a_pinned_dataset_commit_that_the_load_did_not_read_is_an_error(fake_hub):
    from lab.data.prepare import load_raw_rows

    pinned = make_config({"data": {"source": "lab-test/chats", "revision": MAIN}}).data
    with pytest.raises(DataError, match=f"data.revision pins {MAIN} but the rows came from commit {TAGGED}"):
        load_raw_rows(pinned, 0)
    assert len(load_raw_rows(make_config({"data": {"source": "lab-test/chats", "revision": TAGGED}}).data, 0)) == 40
