from pathlib import Path

import pytest

from lab.config import ConfigError, load_config

from .conftest import REPO


def write_params(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_repository_params_load_with_the_labs_training_hyperparameters():
    config = load_config(REPO / "params.yaml")
    train = config.train
    assert (train.batch_size, train.grad_accum, train.epochs, train.warmup_steps) == (2, 4, 1.0, 5)
    assert (config.lr, train.weight_decay, train.optimizer) == (2e-4, 0.01, "adamw_8bit")
    assert (train.lora.r, train.lora.alpha, train.lora.dropout) == (16, 16, 0.0)
    assert set(train.lora.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                              "down_proj"}
    assert config.data.test_size == 0.15


def test_lr_written_by_dvc_exp_set_is_parsed_as_a_float(tmp_path):
    # `dvc exp run -S lr=1e-4` writes 1e-4, which YAML 1.1 reads as a string.
    assert load_config(write_params(tmp_path, "lr: 1e-4\n")).lr == pytest.approx(1e-4)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("trian: {}\n", "unknown key(s) ['trian']"),
        ("train: {batch_sise: 2}\n", "train: unknown key(s) ['batch_sise']"),
        ("train: {batch_size: two}\n", "train.batch_size: expected int, got 'two'"),
        ("train: {batch_size: 0}\n", "train.batch_size must be positive"),
        ("data: {test_size: 1.5}\n", "data.test_size must be in (0, 1)"),
        ("train: {backend: jax}\n", "train.backend must be auto|unsloth|hf"),
        ("train: {lora: {target_modules: []}}\n", "train.lora.target_modules must not be empty"),
        ("lr: -1\n", "lr must be positive"),
        ("seed: 1.5\n", "seed: expected int"),
        ("train: {padding_free: 1}\n", "train.padding_free: expected bool"),
        ("train: {checkpointing_mode: offload}\n", "train.checkpointing_mode must be unsloth|plain"),
        ("evaluate: {decode: beam}\n", "evaluate.decode must be auto|generate|static"),
        ("evaluate: {cuda_graph: yes please}\n", "evaluate.cuda_graph: expected bool"),
    ],
)
def test_bad_params_fail_with_a_message_naming_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as error:
        load_config(write_params(tmp_path, text))
    assert message in str(error.value)


def test_missing_params_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_config(tmp_path / "nope.yaml")
