"""int8 quantization of the exported ONNX model agrees with the float model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from components.common.config import CompressionConfig
from components.common.errors import PlumbError
from components.common.model_runtime import load_model
from components.compress import onnx_quantize


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_int8_outputs_agree_with_float(
    mode: str, trained_model_dir: Path, prepared_breast_cancer, tmp_path: Path
) -> None:
    """int8 probabilities stay within 0.03 of float ones; the file holds int8 weights."""
    transform = onnx_quantize.load_transform(trained_model_dir)
    calibration = onnx_quantize.calibration_matrix(
        prepared_breast_cancer.splits["train"], transform=transform, rows=128, seed=0
    )
    out = onnx_quantize.quantize_model_dir(
        trained_model_dir,
        tmp_path / f"int8-{mode}",
        mode=mode,
        calibration=calibration if mode == "static" else None,
        work_dir=tmp_path,
    )

    validation = prepared_breast_cancer.splits["validation"]
    expected = load_model(trained_model_dir).predict(validation)
    actual = load_model(out).predict(validation)
    # int8 weights carry ~0.4 % relative error per weight (1/255 of each tensor's range);
    # through two layers of a 16-unit MLP that moves a probability by at most a few
    # hundredths; 0.03 is that bound, the mean must be far smaller.
    assert np.max(np.abs(actual - expected)) <= 0.03
    assert np.mean(np.abs(actual - expected)) <= 0.005
    graph = onnx.load(out / "model.onnx").graph
    int8 = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert sum(np.prod(t.dims) for t in int8) >= 30 * 16  # the first layer's weights
    floats = [t for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    # What stays float: biases, scales and (static) the 16 -> 1 output layer.
    assert sum(np.prod(t.dims) for t in floats) <= 16 + 16 + 1 + 8
    # No size assertion here: with 513 parameters the quantize/dequantize nodes
    # outweigh the bytes saved (test_flights checks size on a realistic network).
    assert load_model(out).metadata["compression"] == f"int8-{mode}"


def test_calibration_uses_a_seeded_sample(prepared_breast_cancer, trained_model_dir):
    """The calibration sample holds `calibration_rows` rows and is the same every run."""
    transform = onnx_quantize.load_transform(trained_model_dir)
    train = prepared_breast_cancer.splits["train"]
    first = onnx_quantize.calibration_matrix(
        train, transform=transform, rows=64, seed=3
    )
    second = onnx_quantize.calibration_matrix(
        train, transform=transform, rows=64, seed=3
    )
    assert first.shape == (64, transform.width)
    assert np.array_equal(first, second)


def test_too_few_calibration_rows_is_an_error(
    prepared_breast_cancer, trained_model_dir
):
    """Fewer training rows than the minimum names calibration_rows and the fix."""
    transform = onnx_quantize.load_transform(trained_model_dir)
    train = prepared_breast_cancer.splits["train"].head(5)
    with pytest.raises(PlumbError, match="calibration_rows"):
        onnx_quantize.calibration_matrix(
            train,
            transform=transform,
            rows=CompressionConfig().calibration_rows,
            seed=0,
        )
