"""Bad compression options fail with a clear error before any work starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.common.config import CompressionConfig, PlumbConfig, load_config
from components.common.errors import ConfigError, PlumbError
from components.compress.lib import compress_model


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("compression.sparsity", 1.0, r"compression\.sparsity: .*less than 1"),
        ("compression.sparsity", -0.1, r"compression\.sparsity: .*greater than"),
        ("compression.structured_ratio", 1.5, r"compression\.structured_ratio"),
        (
            "compression.quantization",
            ["int4"],
            r"compression\.quantization\.0: .*'dynamic', 'static' or 'qat'.*'int4'",
        ),
        ("compression.methods", ["prune"], r"compression\.methods\.0: .*'pruning'"),
        ("compression.calibration_rows", 4, r"compression\.calibration_rows"),
        ("compression.objective", "speed", r"'size' or 'latency'"),
        ("compression.distillation.temperature", 0, r"distillation\.temperature"),
        ("compression.quantization", ["static", "static"], "lists a value twice"),
    ],
)
def test_invalid_config_values(key: str, value: object, message: str) -> None:
    """The config error names the option, the value received and what is allowed."""
    with pytest.raises(ConfigError, match=message):
        load_config(environ={}, overrides={key: value})


def test_legacy_single_quantization_mode_still_loads() -> None:
    """`quantization: dynamic` and `none` from older configs read as lists."""
    assert CompressionConfig(quantization="dynamic").quantization == ["dynamic"]
    assert CompressionConfig(quantization="none").quantization == []


@pytest.fixture(scope="module")
def logistic_model_dir(tmp_path_factory, prepared_breast_cancer, preprocessed_dir):
    """A logistic regression trained on breast-cancer (no hidden layer)."""
    from components.train.lib import train_and_export

    model_dir = tmp_path_factory.mktemp("logistic") / "model"
    config = PlumbConfig.model_validate(
        {"data": {"dataset": "breast-cancer"}, "training": {"model": "logistic"}}
    )
    train_and_export(
        config.training,
        train=prepared_breast_cancer.splits["train"],
        validation=prepared_breast_cancer.splits["validation"],
        preprocessor_dir=preprocessed_dir / "preprocessor",
        model_dir=model_dir,
    )
    return model_dir


def _run(config: CompressionConfig, model_dir: Path, prepared, tmp_path: Path, **kw):
    return compress_model(
        config,
        model_dir=model_dir,
        train=kw.get("train", prepared.splits["train"]),
        validation=prepared.splits["validation"],
        work_dir=tmp_path / "work",
        output_dir=tmp_path / "output",
    )


@pytest.mark.parametrize("method", ["structured_pruning", "distillation"])
def test_method_the_model_does_not_support(
    method: str, logistic_model_dir: Path, prepared_breast_cancer, tmp_path: Path
) -> None:
    """Structured pruning or distillation of a logistic model names what it supports."""
    config = CompressionConfig(methods=[method])
    with pytest.raises(PlumbError, match=rf"\['{method}'\].*supports \['pruning'"):
        _run(config, logistic_model_dir, prepared_breast_cancer, tmp_path)
    assert not (tmp_path / "work").exists()  # nothing started
    assert not (tmp_path / "output").exists()


def test_default_methods_fit_a_logistic_model(
    logistic_model_dir: Path, prepared_breast_cancer, tmp_path: Path
) -> None:
    """Unset methods try what a logistic model supports: pruning and quantization."""
    config = CompressionConfig(latency_repeats=2, batch_rows=50, fine_tune_epochs=1)
    report = _run(config, logistic_model_dir, prepared_breast_cancer, tmp_path)
    assert report["methods"] == ["pruning", "quantization"]
    names = {c["name"] for c in report["candidates"]}
    assert names == {
        "float32",
        "pruned",
        "int8-dynamic",
        "int8-static",
        "pruned+int8-dynamic",
        "pruned+int8-static",
    }


def test_qat_is_tensorflow_only(
    trained_model_dir: Path, prepared_breast_cancer, tmp_path: Path
) -> None:
    """Quantization-aware training asked of a PyTorch model lists the allowed modes."""
    config = CompressionConfig(methods=["quantization"], quantization=["qat"])
    with pytest.raises(
        PlumbError, match=r"\['qat'\].*allowed: \['dynamic', 'static'\]"
    ):
        _run(config, trained_model_dir, prepared_breast_cancer, tmp_path)
    assert not (tmp_path / "work").exists()


def test_quantization_without_modes(
    trained_model_dir: Path, prepared_breast_cancer, tmp_path: Path
) -> None:
    """Asking for quantization with an empty mode list is an error, not a no-op."""
    config = CompressionConfig(methods=["quantization"], quantization="none")
    with pytest.raises(PlumbError, match=r"compression\.quantization is empty"):
        _run(config, trained_model_dir, prepared_breast_cancer, tmp_path)


def test_calibration_set_too_small(
    trained_model_dir: Path, prepared_breast_cancer, tmp_path: Path
) -> None:
    """Static quantization with 10 training rows fails before pruning or distilling."""
    config = CompressionConfig(quantization=["static"])
    train = prepared_breast_cancer.splits["train"].head(10)
    with pytest.raises(PlumbError, match=r"at least 16 calibration rows.*holds 10"):
        _run(config, trained_model_dir, prepared_breast_cancer, tmp_path, train=train)
    assert not (tmp_path / "work").exists()


def test_not_a_model_directory(prepared_breast_cancer, tmp_path: Path) -> None:
    """A folder without metadata.json is named in the error."""
    with pytest.raises(PlumbError, match="no metadata.json"):
        _run(CompressionConfig(), tmp_path, prepared_breast_cancer, tmp_path)
