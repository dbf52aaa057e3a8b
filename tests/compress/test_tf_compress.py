"""TensorFlow compression: tfmot pruning, TFLite int8 (dynamic, full-integer, QAT)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from components.common.artifacts import (
    KERAS_MODEL_FILE,
    TFLITE_MODEL_FILE,
    read_json,
    write_json,
)
from components.common.config import CompressionConfig, TrainingConfig
from components.common.errors import PlumbError
from components.common.model_runtime import TfliteModel, load_model
from components.compress.tf_compress import tf_candidates
from components.preprocess.lib import PreparedData
from components.train.lib import train_and_export

pytestmark = pytest.mark.slow

SPARSITY = 0.6


@pytest.fixture(scope="module")
def tf_model_dir(
    tmp_path_factory: pytest.TempPathFactory,
    prepared_breast_cancer: PreparedData,
    preprocessed_dir: Path,
) -> Path:
    """A float TF MLP; 30x64 and 64x16 kernels are big enough for dynamic-range int8."""
    training = TrainingConfig(
        framework="tensorflow", epochs=15, batch_size=64, hidden_units=[64, 16]
    )
    model_dir = tmp_path_factory.mktemp("tf-float") / "model"
    train_and_export(
        training,
        train=prepared_breast_cancer.splits["train"],
        validation=prepared_breast_cancer.splits["validation"],
        preprocessor_dir=preprocessed_dir / "preprocessor",
        model_dir=model_dir,
    )
    return model_dir


@pytest.fixture(scope="module")
def candidates(
    tmp_path_factory: pytest.TempPathFactory,
    tf_model_dir: Path,
    prepared_breast_cancer: PreparedData,
) -> dict[str, Path]:
    config = CompressionConfig(
        sparsity=SPARSITY,
        fine_tune_epochs=3,
        quantization=["dynamic", "static", "qat"],
        calibration_rows=128,
    )
    made = tf_candidates(
        config,
        model_dir=tf_model_dir,
        train=prepared_breast_cancer.splits["train"],
        validation=prepared_breast_cancer.splits["validation"],
        work_dir=tmp_path_factory.mktemp("tf-candidates"),
    )
    return dict(made)


def _scores(model_dir: Path, prepared: PreparedData) -> tuple[np.ndarray, np.ndarray]:
    model = load_model(model_dir)
    test = prepared.splits["test"]
    return model.schema.labels(test), model.predict(test)


def test_every_candidate_is_a_servable_tflite_dir(
    candidates: dict[str, Path], prepared_breast_cancer: PreparedData
) -> None:
    """Each candidate loads as TFLite and still ranks test rows well (AUC > 0.95)."""
    assert list(candidates) == [
        "pruned",
        "int8-dynamic",
        "pruned+int8-dynamic",
        "int8-static",
        "pruned+int8-static",
        "int8-qat",
    ]
    for name, model_dir in candidates.items():
        assert isinstance(load_model(model_dir), TfliteModel), name
        metadata = read_json(model_dir / "metadata.json")
        assert metadata["format"] == "tflite"
        assert metadata["compression"] == name
        labels, scores = _scores(model_dir, prepared_breast_cancer)
        assert roc_auc_score(labels, scores) > 0.95, name


def test_pruned_kernels_reach_the_asked_sparsity(
    tf_model_dir: Path, candidates: dict[str, Path]
) -> None:
    """strip_pruning leaves each Dense kernel SPARSITY zeros; gzip shows the saving."""
    import tf_keras

    network = tf_keras.models.load_model(candidates["pruned"] / KERAS_MODEL_FILE)
    kernels = [w.numpy() for w in network.weights if "kernel" in w.name]
    assert len(kernels) == 3
    for kernel in kernels:
        # tfmot zeroes round(sparsity * size) weights per layer: off by <= 1 weight.
        assert abs(np.mean(kernel == 0) - SPARSITY) <= 1 / kernel.size + 1e-9
    # Float weights barely gzip; 60% zeros should save well over a quarter.
    assert _gzip_size(candidates["pruned"]) < 0.75 * _gzip_size(tf_model_dir)


def _gzip_size(model_dir: Path) -> int:
    import gzip

    return len(gzip.compress((model_dir / TFLITE_MODEL_FILE).read_bytes()))


def test_int8_outputs_agree_with_the_float_model(
    tf_model_dir: Path,
    candidates: dict[str, Path],
    prepared_breast_cancer: PreparedData,
) -> None:
    """int8 probabilities stay within stated tolerances of the float model's."""
    _, reference = _scores(tf_model_dir, prepared_breast_cancer)
    # Dynamic range keeps activations float: only weight rounding (1/254 of the
    # largest weight per channel) moves the output. Measured here: max 0.009.
    _, dynamic = _scores(candidates["int8-dynamic"], prepared_breast_cancer)
    assert np.max(np.abs(dynamic - reference)) <= 0.02
    # Full integer also rounds inputs and activations to 256 levels and the output
    # probability to steps of 1/256.
    _, static = _scores(candidates["int8-static"], prepared_breast_cancer)
    # Measured here: mean 0.0024, max 0.031.
    assert np.mean(np.abs(static - reference)) <= 0.01
    assert np.max(np.abs(static - reference)) <= 0.08
    float_size = (tf_model_dir / TFLITE_MODEL_FILE).stat().st_size
    static_size = (candidates["int8-static"] / TFLITE_MODEL_FILE).stat().st_size
    # Weights shrink 4x, but ~5 KB of graph and metadata stay: 14.4 KB -> 8.2 KB here.
    assert float_size / static_size > 1.5


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        ({"methods": ["distillation"]}, r"compression\.methods.*allowed: \['pruning'"),
        ({"quantization": ["float16"]}, r"compression\.quantization.*allow"),
        ({"sparsity": 1.5}, r"compression\.sparsity must be in \[0, 1\), got 1\.5"),
    ],
)
def test_bad_options_fail_before_any_work(
    tmp_path: Path,
    tf_model_dir: Path,
    prepared_breast_cancer: PreparedData,
    options: dict,
    pattern: str,
) -> None:
    """An unsupported method, mode or sparsity names the option; nothing is written."""
    # model_construct skips pydantic, as a config built in code could.
    config = CompressionConfig.model_construct(
        **{**CompressionConfig().__dict__, **options}
    )
    with pytest.raises(PlumbError, match=pattern):
        tf_candidates(
            config,
            model_dir=tf_model_dir,
            train=prepared_breast_cancer.splits["train"],
            validation=prepared_breast_cancer.splits["validation"],
            work_dir=tmp_path / "work",
        )
    assert not (tmp_path / "work").exists()


def test_too_few_calibration_rows_and_wrong_framework_are_rejected(
    tmp_path: Path, tf_model_dir: Path, prepared_breast_cancer: PreparedData
) -> None:
    """Static int8 with 10 training rows, or a PyTorch model dir, is a clear error."""
    train = prepared_breast_cancer.splits["train"]
    validation = prepared_breast_cancer.splits["validation"]
    config = CompressionConfig(quantization=["static"])
    with pytest.raises(PlumbError, match="at least 16 training rows"):
        tf_candidates(
            config,
            model_dir=tf_model_dir,
            train=train.head(10),
            validation=validation,
            work_dir=tmp_path / "work",
        )
    torch_dir = tmp_path / "torch-model"
    torch_dir.mkdir()
    write_json(torch_dir / "metadata.json", {"framework": "pytorch", "format": "onnx"})
    with pytest.raises(PlumbError, match="not a TensorFlow model directory"):
        tf_candidates(
            config,
            model_dir=torch_dir,
            train=train,
            validation=validation,
            work_dir=tmp_path / "work",
        )
    assert not (tmp_path / "work").exists()
