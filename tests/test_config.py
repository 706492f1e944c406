import dataclasses

import pytest
import yaml

from lab.config import LabConfig, load_config
from lab.errors import ConfigError

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
        ({"evaluate": {"decode": "beam"}}, "evaluate.decode: 'beam' is not allowed; allowed: auto|generate|static"),
        ({"evaluate": {"rouge_types": ["rouge1", "bleu"]}}, "evaluate.rouge_types[1]: 'bleu' is not allowed"),
        ({"evaluate": {"cuda_graph": "yes please"}}, "evaluate.cuda_graph: expected bool"),
        ({"data": {"builtin": {"closed_share": 2}}}, "data.builtin.closed_share: 2.0 is not allowed"),
        ({"data": {"on_invalid": "skip"}}, "data.on_invalid: 'skip' is not allowed; allowed: error|drop"),
        ({"data": {"answer_format": "xml"}}, "data.answer_format: 'xml' is not allowed; allowed: keep|steps|json"),
        ({"data": {"same_role_turns": "join"}}, "data.same_role_turns: 'join' is not allowed; allowed: merge|reject"),
        ({"train": {"long_sequences": "skip"}}, "train.long_sequences: 'skip' is not allowed; allowed: truncate|drop"),
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
