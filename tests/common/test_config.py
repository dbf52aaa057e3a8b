"""Loading, validating and overriding plumb's configuration."""

from pathlib import Path

import pytest

from components.common.config import PlumbConfig, load_config
from components.common.errors import ConfigError


def test_defaults_run_flights_with_pytorch() -> None:
    """With no file and no overrides, the config targets flights with a PyTorch MLP."""
    config = load_config(None, environ={})
    assert config.data.dataset == "flights"
    assert config.training.framework == "pytorch"
    # None means the gate's per-task defaults: roc_auc >= 0.6 (binary), r2 >= 0 (regression).
    assert config.evaluation.gate.thresholds is None


def test_yaml_file_is_loaded(tmp_path: Path) -> None:
    """Values in the YAML file replace defaults; untouched fields keep theirs."""
    file = tmp_path / "plumb.yaml"
    file.write_text("data:\n  dataset: credit\ntraining:\n  epochs: 3\n")
    config = load_config(file, environ={})
    assert config.data.dataset == "credit"
    assert config.training.epochs == 3
    assert config.training.batch_size == PlumbConfig().training.batch_size


def test_environment_overrides_file(tmp_path: Path) -> None:
    """PLUMB_<SECTION>__<FIELD> variables win over the file; other PLUMB_ names are ignored."""
    file = tmp_path / "plumb.yaml"
    file.write_text("training:\n  epochs: 3\n")
    environ = {
        "PLUMB_TRAINING__EPOCHS": "7",
        "PLUMB_DATA__SPLIT__SEED": "9",
        "PLUMB_LOG_LEVEL": "DEBUG",
    }
    config = load_config(file, environ=environ)
    assert config.training.epochs == 7
    assert config.data.split.seed == 9


def test_unknown_key_names_the_key(tmp_path: Path) -> None:
    """A misspelled key fails with its dotted path and a hint."""
    file = tmp_path / "plumb.yaml"
    file.write_text("training:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'training\.epoch'"):
        load_config(file, environ={})


def test_wrong_type_shows_value(tmp_path: Path) -> None:
    """A value of the wrong type fails with the field and the value received."""
    file = tmp_path / "plumb.yaml"
    file.write_text("training:\n  epochs: many\n")
    with pytest.raises(ConfigError, match=r"training\.epochs.*'many'"):
        load_config(file, environ={})


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    """A missing file and a file that is not YAML both raise ConfigError."""
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml", environ={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, environ={})


def test_split_fractions_must_leave_training_rows() -> None:
    """Held-out fractions adding up to 0.9 or more are rejected at load time."""
    with pytest.raises(ConfigError, match="add up to"):
        load_config(
            None,
            environ={},
            overrides={
                "data.split.test_fraction": 0.5,
                "data.split.validation_fraction": 0.45,
            },
        )


def test_json_round_trip() -> None:
    """The JSON handed to pipeline components parses back to an equal config."""
    config = load_config(None, environ={}, overrides={"training.epochs": 4})
    assert PlumbConfig.from_json(config.to_json()) == config


def test_example_configs_are_valid() -> None:
    """Every file under examples/ loads."""
    examples = sorted(Path(__file__).parents[2].joinpath("examples").glob("*.yaml"))
    assert examples, "examples/ holds no config"
    for example in examples:
        load_config(example, environ={})
