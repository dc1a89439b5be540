"""Config files: YAML/JSON loading, round trips and clear errors."""

from __future__ import annotations

import dataclasses
import errno
import json

import pytest

from nol_fast.config import Config, ConfigError, Section
from nol_fast.training import TrainingConfig

SPEC_DEFAULTS = {
    "epochs": 100, "batch_size": 32, "learning_rate": 1e-4, "weight_decay": 1e-5,
    "optimizer": "adamw", "scheduler": "cosine", "warmup_steps": 1000, "mixed_precision": True,
    "gradient_clipping": 1.0, "gradient_accumulation_steps": 1, "early_stopping_patience": 20,
    "save_frequency": 10, "val_frequency": 1,
}

YAML = """
model:
  model_type: fno
  n_modes: [8, 8]
  hidden_channels: 16
data:
  dataset: heat
  resolution: 16
training:
  epochs: 3
  learning_rate: 1e-3   # PyYAML reads this as a string; it must become a float
  scheduler: plateau
parallelism:
  strategy: ddp
"""


def test_training_config_has_the_spec_fields_and_defaults():
    config = TrainingConfig()
    for name, default in SPEC_DEFAULTS.items():
        assert getattr(config, name) == default, name
    assert list(f.name for f in dataclasses.fields(TrainingConfig))[:13] == list(SPEC_DEFAULTS)


def test_load_yaml(tmp_path):
    (tmp_path / "c.yaml").write_text(YAML)
    config = Config.load(tmp_path / "c.yaml")
    assert config.model.model_type == "fno"
    assert config.model.__dict__ == {"model_type": "fno", "n_modes": [8, 8],
                                     "hidden_channels": 16}
    assert isinstance(config.data, Section) and config.data.resolution == 16
    assert config.training.learning_rate == 1e-3 and isinstance(config.training.learning_rate,
                                                                 float)
    assert config.training.epochs == 3 and config.training.warmup_steps == 1000
    assert config.parallelism.strategy == "ddp"


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip(tmp_path, suffix):
    (tmp_path / "c.yaml").write_text(YAML)
    config = Config.load(tmp_path / "c.yaml")
    config.save(tmp_path / f"out{suffix}")
    again = Config.load(tmp_path / f"out{suffix}")
    assert again.to_dict() == config.to_dict()
    assert again.training == config.training
    if suffix == ".json":
        assert json.loads((tmp_path / "out.json").read_text())["training"]["epochs"] == 3


def test_missing_sections_take_defaults(tmp_path):
    (tmp_path / "c.json").write_text('{"training": {"epochs": 2}}')
    config = Config.load(tmp_path / "c.json")
    assert config.training == TrainingConfig(epochs=2)
    assert config.model.to_dict() == {} and config.data.to_dict() == {}


@pytest.mark.parametrize("text, suffix, message", [
    ("training: {epochs: 2", ".yaml", "is malformed"),
    ("{\"training\": ", ".json", "is malformed"),
    ("models: {}", ".yaml", "unknown section\\(s\\) 'models'; choose from: model, data"),
    ("training: {epoch: 3}", ".yaml", "unknown training field\\(s\\) 'epoch'; choose from:"),
    ("training: {epochs: 0}", ".yaml", "epochs must be a positive integer, got 0"),
    ("training: {learning_rate: fast}", ".yaml", "learning_rate must be a number"),
    ("training: [1, 2]", ".yaml", "section 'training' must be a mapping"),
    ("- 1", ".yaml", "top level must be a mapping"),
    ("epochs = 3", ".toml", "use .yaml, .yml or .json"),
])
def test_bad_config_files_give_clear_errors(tmp_path, text, suffix, message):
    path = tmp_path / f"c{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        Config.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        Config.load(tmp_path / "nope.yaml")


def test_missing_file_is_also_the_standard_file_not_found_error(tmp_path):
    """Code that catches FileNotFoundError for a missing file catches a missing config too."""
    path = tmp_path / "missing.yaml"
    with pytest.raises(FileNotFoundError) as info:
        Config.load(path)
    assert isinstance(info.value, ConfigError)
    assert info.value.errno == errno.ENOENT and info.value.filename == str(path)


def test_a_directory_is_not_a_config_file(tmp_path):
    with pytest.raises(ConfigError, match="is not a file") as info:
        Config.load(tmp_path)
    assert not isinstance(info.value, FileNotFoundError)
