"""int8 quantization of an exported ONNX model with onnxruntime's quantization tools.

`dynamic` stores the weights as int8 and quantizes activations at run time; `static`
also fixes the activation ranges ahead of time, calibrated on a sample of training rows
put through the model directory's own `Transform`. Both write a full model directory
next to the float one, so `load_model` and the model server read them unchanged.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from components.common.artifacts import (
    METADATA_FILE,
    ONNX_MODEL_FILE,
    TRANSFORM_FILE,
    read_json,
    write_json,
)
from components.common.config import MIN_CALIBRATION_ROWS
from components.common.errors import PlumbError
from components.preprocess.transform import Transform

logger = logging.getLogger(__name__)

CALIBRATION_BATCH_ROWS = 64
# The output layer and the serving head (Squeeze, Sigmoid) stay in float: an int8
# output holds only 256 levels, which would tie rows the float model ranks apart (ROC
# AUC) or round regression values (R2). The last layer has one output, so this costs
# a few hundred bytes at most.
STATIC_OP_TYPES = ["Gemm", "MatMul", "Relu"]


class TableCalibrationReader(CalibrationDataReader):
    """Feeds transformed training rows to the calibrator, a batch at a time."""

    def __init__(self, matrix: np.ndarray, *, input_name: str) -> None:
        self._batches = [
            {input_name: matrix[start : start + CALIBRATION_BATCH_ROWS]}
            for start in range(0, len(matrix), CALIBRATION_BATCH_ROWS)
        ]
        self._position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._position >= len(self._batches):
            return None
        batch = self._batches[self._position]
        self._position += 1
        return batch

    def rewind(self) -> None:
        self._position = 0


def calibration_matrix(
    train: pd.DataFrame, *, transform: Transform, rows: int, seed: int
) -> np.ndarray:
    """Sample `rows` training rows (all of them if fewer) and transform them.

    Raises:
        PlumbError: The training split holds fewer than the minimum calibration rows.
    """
    check_calibration_rows(len(train), rows=rows)
    if len(train) < rows:
        logger.warning(
            "compression.calibration_rows is %d but the training split holds %d rows; "
            "calibrating on all of them",
            rows,
            len(train),
        )
        sample = train
    else:
        sample = train.sample(n=rows, random_state=seed)
    return transform.apply(sample)


def check_calibration_rows(available: int, *, rows: int) -> None:
    """Raise when too few training rows are there to calibrate static quantization."""
    if available < MIN_CALIBRATION_ROWS:
        raise PlumbError(
            f"static quantization needs at least {MIN_CALIBRATION_ROWS} calibration rows "
            f"from the training split, which holds {available} (compression."
            f"calibration_rows is {rows}); use more data or drop 'static' from "
            "compression.quantization"
        )


def quantize_model_dir(
    source_dir: Path,
    target_dir: Path,
    *,
    mode: str,
    calibration: np.ndarray | None = None,
    work_dir: Path,
) -> Path:
    """Write a copy of a model directory whose ONNX model is quantized to int8.

    Args:
        source_dir: A model directory with a float `model.onnx`.
        target_dir: Where the quantized model directory goes (must not exist).
        mode: `dynamic` or `static`.
        calibration: Transformed training rows; required for `static`.
        work_dir: Scratch space for the pre-processed model.

    Returns:
        `target_dir`.
    """
    shutil.copytree(source_dir, target_dir)
    source_model = source_dir / ONNX_MODEL_FILE
    target_model = target_dir / ONNX_MODEL_FILE
    # Shape inference and graph optimisation first, as onnxruntime recommends; it also
    # folds the exporter's Constant nodes.
    prepared = work_dir / f"{target_dir.name}-preprocessed.onnx"
    quant_pre_process(str(source_model), str(prepared), skip_symbolic_shape=True)
    if mode == "dynamic":
        quantize_dynamic(
            model_input=prepared,
            model_output=target_model,
            weight_type=QuantType.QInt8,
        )
    elif mode == "static":
        if calibration is None:
            raise ValueError("static quantization needs calibration rows")
        quantize_static(
            model_input=prepared,
            model_output=target_model,
            calibration_data_reader=TableCalibrationReader(
                calibration, input_name="features"
            ),
            quant_format=QuantFormat.QOperator,
            op_types_to_quantize=STATIC_OP_TYPES,
            nodes_to_exclude=_output_layer(prepared),
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    else:
        raise PlumbError(
            f"unknown ONNX quantization mode {mode!r}; use 'dynamic' or 'static'"
        )

    metadata = read_json(source_dir / METADATA_FILE)
    base = metadata.get("compression", "none")
    metadata["compression"] = (
        f"int8-{mode}" if base in ("none", None) else f"{base}+int8-{mode}"
    )
    details = dict(metadata.get("compression_details") or {})
    details["quantization"] = mode
    if calibration is not None:
        details["calibration_rows"] = len(calibration)
    metadata["compression_details"] = details
    write_json(target_dir / METADATA_FILE, metadata)
    logger.info(
        "Quantized %s (%s): %d -> %d bytes",
        source_dir.name,
        mode,
        source_model.stat().st_size,
        target_model.stat().st_size,
    )
    return target_dir


def _output_layer(model_path: Path) -> list[str]:
    """Name of the last Gemm or MatMul node of the graph (the output layer)."""
    nodes = onnx.load(str(model_path)).graph.node
    layers = [node.name for node in nodes if node.op_type in ("Gemm", "MatMul")]
    return layers[-1:]


def load_transform(model_dir: Path) -> Transform:
    """The transform a model directory was trained with."""
    return Transform.load(model_dir / TRANSFORM_FILE)
