import dataclasses

import pytest
import yaml

from lab.core.choices import Optimizer, allowed
from lab.core.config import LabConfig
from lab.core.errors import ConfigError
from lab.core.params import load_config

from .conftest import REPO, make_config


def leaf_keys(node: object, prefix: str = "") -> set[str]:
    """Dotted paths of every value in a nested mapping or dataclass (lists are leaves)."""
    if dataclasses.is_dataclass(node):
        node = {f.name: getattr(node, f.name) for f in dataclasses.fields(node)}
    if not isinstance(node, dict):
        return {prefix}
    return set().union(*(leaf_keys(value, f"{prefix}.{key}" if prefix else key) for key, value in node.items()))


def test_every_config_field_comes_from_params_yaml_and_no_dataclass_has_a_default():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    config = load_config(REPO / "params.yaml")
    assert leaf_keys(config) == leaf_keys(raw)
    pending = [LabConfig]
    while pending:
        cls = pending.pop()
        for field in dataclasses.fields(cls):
            assert field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING, field.name
            if dataclasses.is_dataclass(field.type if isinstance(field.type, type) else None):
                pending.append(field.type)
    with pytest.raises(TypeError):
        LabConfig()  # type: ignore[call-arg]


def test_repository_params_load_with_the_labs_training_hyperparameters():
    config = make_config()
    train = config.train
    assert (train.batch_size, train.grad_accum, train.epochs, train.warmup_steps) == (2, 4, 1.0, 5)
    assert (config.lr, train.weight_decay, train.optimizer) == (2e-4, 0.01, "adamw_8bit")
    assert (train.lora.r, train.lora.alpha, train.lora.dropout) == (16, 16, 0.0)
    assert set(train.lora.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                              "down_proj"}
    assert config.data.test_size == 0.15


def test_overrides_replace_only_what_they_name():
    config = make_config({"train": {"lora": {"r": 32}}, "lr": 1e-4})
    assert (config.train.lora.r, config.lr) == (32, 1e-4)
    assert config.train.lora.alpha == make_config().train.lora.alpha


def test_lr_written_by_dvc_exp_set_is_parsed_as_a_float(tmp_path):
    # `dvc exp run -S lr=1e-4` writes 1e-4, which YAML 1.1 reads as a string.
    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text().replace("lr: 2.0e-4", "lr: 1e-4"))
    assert load_config(path).lr == pytest.approx(1e-4)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"trian": {}}, "params: unknown key(s) ['trian']"),
        ({"train": {"batch_sise": 2}}, "train: unknown key(s) ['batch_sise']"),
        ({"train": {"batch_size": "two"}}, "train.batch_size: expected int, got 'two'"),
        ({"train": {"batch_size": 0}}, "train.batch_size: 0 is not allowed; it must be positive"),
        ({"data": {"test_size": 1.5}}, "data.test_size: 1.5 is not allowed; it must be in (0, 1)"),
        ({"train": {"backend": "jax"}}, "train.backend: 'jax' is not allowed; allowed: auto|unsloth|hf"),
        ({"train": {"lora": {"target_modules": []}}}, "train.lora.target_modules: [] is not allowed"),
        ({"lr": -1}, "lr: -1.0 is not allowed; it must be a finite positive number"),
        ({"lr": float("nan")}, "lr: nan is not allowed"),
        ({"train": {"weight_decay": -0.1}}, "train.weight_decay: -0.1 is not allowed; it must be >= 0"),
        ({"seed": 1.5}, "seed: expected int"),
        ({"train": {"padding_free": 1}}, "train.padding_free: expected bool"),
        ({"train": {"checkpointing_mode": "offload"}}, "train.checkpointing_mode: 'offload' is not allowed; "
                                                       "allowed: unsloth|plain"),
        ({"train": {"packed_attention": "flash"}}, "train.packed_attention: 'flash' is not allowed; "
                                                   "allowed: per_example|library"),
        ({"evaluate": {"decode": "beam"}}, "evaluate.decode: 'beam' is not allowed; allowed: auto|generate|static"),
        ({"evaluate": {"rouge_types": ["rouge1", "bleu"]}}, "evaluate.rouge_types[1]: 'bleu' is not allowed"),
        ({"evaluate": {"cuda_graph": "yes please"}}, "evaluate.cuda_graph: expected bool"),
        ({"data": {"builtin": {"closed_share": 2}}}, "data.builtin.closed_share: 2.0 is not allowed"),
        ({"data": {"on_invalid": "skip"}}, "data.on_invalid: 'skip' is not allowed; allowed: error|drop"),
        ({"data": {"answer_format": "xml"}}, "data.answer_format: 'xml' is not allowed; allowed: keep|steps|json"),
        ({"data": {"same_role_turns": "join"}}, "data.same_role_turns: 'join' is not allowed; allowed: merge|reject"),
        ({"train": {"long_sequences": "skip"}}, "train.long_sequences: 'skip' is not allowed; allowed: truncate|drop"),
        ({"lr": float("inf")}, "lr: inf is not allowed; it must be a finite positive number"),
        ({"lr": 0}, "lr: 0.0 is not allowed; it must be a finite positive number"),
        ({"seed": -1}, "seed: -1 is not allowed; it must be in [0, 2**32)"),
        ({"seed": 2**32}, "seed: 4294967296 is not allowed; it must be in [0, 2**32)"),
        ({"train": {"optimizer": "adamw"}}, "train.optimizer: 'adamw' is not allowed; allowed: adamw_torch|"
                                            "adamw_torch_fused|adamw_8bit|"),
        ({"train": {"lr_scheduler": "polynomial"}}, "train.lr_scheduler: 'polynomial' is not allowed; allowed: "
                                                    "linear|cosine|cosine_with_restarts|constant|constant_with_warmup"),
        ({"model": {"base": "Llama-3.2-3B-Instruct"}}, "model.base: 'Llama-3.2-3B-Instruct' is not allowed; it must "
                                                       "be 'embedded', an existing local model directory (config.json "
                                                       "and safetensors weights) or .gguf file, or a Hub model id "
                                                       "owner/name"),
        ({"model": {"base": "/no/such/model"}}, "model.base: '/no/such/model' is not allowed; it must be 'embedded', "
                                                "an existing local model directory"),
        ({"model": {"revision": "main"}}, "model.revision: 'main' is not allowed; it must be null, or a branch, tag or "
                                         "commit of a Hub model.base (a local or embedded model has no revisions)"),
        ({"model": {"base": "unsloth/Llama-3.2-3B-Instruct", "revision": " "}}, "model.revision: ' ' is not allowed"),
        ({"model": {"trust_remote_code": "no"}}, "model.trust_remote_code: expected bool, got 'no'"),
        ({"model": {"chat_template": "llama-3.1"}, "train": {"backend": "hf"}},
         "model.chat_template: 'llama-3.1' is not allowed; it must be null with train.backend hf, which keeps the "
         "tokenizer's own template"),
        ({"data": {"source": "FineTome-100k"}}, "data.source: 'FineTome-100k' is not allowed; it must be 'builtin', "
                                                "an existing local .json/.jsonl/.parquet file, or a Hub dataset id "
                                                "owner/name"),
        ({"data": {"source": "no/such/rows.jsonl"}}, "data.source: 'no/such/rows.jsonl' is not allowed; it must be an "
                                                     "existing .json/.jsonl/.parquet file (there is no such file)"),
        ({"data": {"source": "owner/bad--name"}}, "data.source: 'owner/bad--name' is not allowed"),
        ({"data": {"revision": "main"}}, "data.revision: 'main' is not allowed; it must be null, or a branch, tag or "
                                         "commit of a Hub dataset data.source (builtin and local files have none)"),
        ({"data": {"mix": {"extra_sources": [{"source": "gsm8k", "format": "question_answer"}]}}},
         "data.mix.extra_sources[0].source: 'gsm8k' is not allowed; it must be 'builtin', an existing local "
         ".json/.jsonl/.parquet file, or a Hub dataset id owner/name"),
    ],
)
def test_bad_params_fail_with_a_message_naming_the_key_the_value_and_what_is_allowed(overrides, message):
    with pytest.raises(ConfigError) as error:
        make_config(overrides)
    assert message in str(error.value)


def test_a_missing_key_is_an_error_not_a_silent_default(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    del params["train"]["warmup_steps"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match=r"train: missing key\(s\) \['warmup_steps'\]"):
        load_config(path)


def test_missing_params_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_config(tmp_path / "nope.yaml")


def test_train_seed_defaults_to_the_top_level_seed_and_reseeds_training_only():
    assert make_config().train_seed == make_config().seed
    config = make_config({"train": {"seed": 7}})
    assert config.train_seed == 7 and config.seed == make_config().seed  # the split keeps its seed
    with pytest.raises(ConfigError, match=r"train\.seed: -1 is not allowed; it must be null"):
        make_config({"train": {"seed": -1}})


@pytest.mark.parametrize("optimizer", allowed(Optimizer))
def test_every_supported_optimizer_loads(optimizer):
    assert make_config({"train": {"optimizer": optimizer}}).train.optimizer == optimizer


def test_hub_ids_and_their_revisions_are_accepted_without_touching_the_hub():
    extra = {"source": "openai/gsm8k", "format": "question_answer"}
    config = make_config({"model": {"base": "unsloth/Llama-3.2-3B-Instruct", "revision": "v1.0"},
                          "data": {"source": "mlabonne/FineTome-100k", "revision": "a" * 40,
                                   "mix": {"extra_sources": [extra]}}})
    assert (config.model.revision, config.data.revision) == ("v1.0", "a" * 40)
    # On the auto backend, model.chat_template is checked once the backend is resolved (lab.train.backends).
    assert make_config({"model": {"chat_template": "llama-3.1"}}).model.chat_template == "llama-3.1"


def test_local_sources_must_exist_and_be_readable_files(tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("{}\n")
    assert make_config({"data": {"source": str(rows)}}).data.source == str(rows)
    (tmp_path / "rows.csv").write_text("a\n")
    for bad in (tmp_path, tmp_path / "rows.csv"):
        with pytest.raises(ConfigError, match=f"data.source: '{bad}' is not allowed; it must be an existing "
                                              r"\.json/\.jsonl/\.parquet file"):
            make_config({"data": {"source": str(bad)}})
    with pytest.raises(ConfigError, match="data.revision: 'v1' is not allowed; it must be null, or a branch"):
        make_config({"data": {"source": str(rows), "revision": "v1"}})


def test_a_local_model_needs_config_and_safetensors_weights_or_one_gguf(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"")
    assert make_config({"model": {"base": str(model)}}).model.base == str(model)
    with pytest.raises(ConfigError, match="model.revision: 'main' is not allowed"):
        make_config({"model": {"base": str(model), "revision": "main"}})
    (model / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match=f"model.base: '{model}' is not allowed; it must be a loadable local model, "
                                          r"but it has no safetensors weights \(model.safetensors or "):
        make_config({"model": {"base": str(model)}})
    ggufs = tmp_path / "ggufs"
    ggufs.mkdir()
    (ggufs / "a.Q4.gguf").write_bytes(b"")
    assert make_config({"model": {"base": str(ggufs)}}).model.base == str(ggufs)
    assert make_config({"model": {"base": str(ggufs / "a.Q4.gguf")}}).model.base == str(ggufs / "a.Q4.gguf")
    (ggufs / "b.Q8.gguf").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"holds 2 .gguf files \['a.Q4.gguf', 'b.Q8.gguf'\]: name one of them"):
        make_config({"model": {"base": str(ggufs)}})


def test_a_chat_template_is_refused_once_auto_resolves_to_the_hf_backend_before_any_model_loads(tmp_path):
    import torch

    from lab.model.runtime import Runtime, resolve_runtime
    from lab.train.backends import check_chat_template
    from lab.train.fine_tune import fine_tune

    config = make_config({"model": {"chat_template": "llama-3.1"}})
    message = ("model.chat_template: 'llama-3.1' is not allowed; it must be null with the hf backend (train.backend "
               "auto resolved to it on this machine, cpu), which keeps the tokenizer's own template")
    with pytest.raises(ConfigError) as error:
        check_chat_template(config.training, resolve_runtime(config.train, cuda_available=False))
    assert message in str(error.value)
    unsloth = Runtime(backend="unsloth", device="cuda", dtype="bfloat16", quantization="4bit")
    check_chat_template(config.training, unsloth)
    if not torch.cuda.is_available():
        # The train stage checks it right after resolving the backend: the (missing) base model is never read.
        with pytest.raises(ConfigError, match="model.chat_template: 'llama-3.1' is not allowed"):
            fine_tune(config, tmp_path / "no-model", [], [], tmp_path / "live", tmp_path / "checkpoints")
