"""Run an exported model directory: raw rows in, predictions out.

`load_model` reads `metadata.json` and picks the runtime for its `format`: onnxruntime
for `onnx`, LiteRT (the maintained TFLite interpreter, `ai-edge-litert`) for `tflite`,
and joblib for `sklearn` (the tree baseline trained next to the network, stored as
`baseline.joblib`; joblib unpickles, so load only model directories you trust).
Evaluation, compression and the model server all predict through here, so a model is
scored the same way wherever it runs.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort
import pandas as pd

from components.common.artifacts import (
    METADATA_FILE,
    ONNX_MODEL_FILE,
    SCHEMA_FILE,
    SKLEARN_MODEL_FILE,
    TFLITE_MODEL_FILE,
    TRANSFORM_FILE,
    read_json,
)
from components.common.errors import PlumbError
from components.preprocess.schema import Schema
from components.preprocess.transform import Transform


class LoadedModel(Protocol):
    """What every runtime offers: predictions plus the artifacts they were made with."""

    metadata: dict[str, Any]
    schema: Schema
    transform: Transform
    model_dir: Path

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Predict from an already transformed float32 matrix; one value per row."""
        ...

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Predict from raw rows: a probability (`binary`) or a value per row."""
        ...


class OnnxModel:
    """A model directory loaded for inference on the CPU."""

    def __init__(self, model_dir: str | Path, *, threads: int | None = None) -> None:
        directory = Path(model_dir)
        metadata = read_json(directory / METADATA_FILE)
        self.metadata: dict[str, Any] = metadata
        self.schema = Schema.load(directory / SCHEMA_FILE)
        self.transform = Transform.load(directory / TRANSFORM_FILE)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            if threads > 1:
                # Spinning intra-op threads keep cores busy between calls, which starves
                # the model server's event loop on small machines.
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            str(directory / metadata.get("model_file", ONNX_MODEL_FILE)),
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )
        self._input = self.session.get_inputs()[0].name
        self.model_dir = directory

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Predict from an already transformed float32 matrix; one value per row."""
        features = np.ascontiguousarray(matrix, dtype=np.float32)
        (output,) = self.session.run(None, {self._input: features})
        return np.asarray(output, dtype=np.float64).reshape(-1)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Predict from raw rows: a probability (`binary`) or a value per row."""
        return self.predict_matrix(self.transform.apply(frame))


class SklearnModel:
    """A scikit-learn estimator over the transformed matrix, e.g. the tree baseline."""

    def __init__(self, model_dir: str | Path) -> None:
        import joblib

        directory = Path(model_dir)
        metadata = read_json(directory / METADATA_FILE)
        self.metadata: dict = metadata
        self.schema = Schema.load(directory / SCHEMA_FILE)
        self.transform = Transform.load(directory / TRANSFORM_FILE)
        self.estimator = joblib.load(
            directory / metadata.get("model_file", SKLEARN_MODEL_FILE)
        )
        self.model_dir = directory

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Predict from a transformed matrix: P(positive) for `binary`, else the value."""
        if self.schema.task == "binary":
            return np.asarray(
                self.estimator.predict_proba(matrix)[:, 1], dtype=np.float64
            )
        return np.asarray(self.estimator.predict(matrix), dtype=np.float64).reshape(-1)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Predict from raw rows: a probability (`binary`) or a value per row."""
        return self.predict_matrix(self.transform.apply(frame))


class TfliteModel:
    """A TFLite model directory loaded for inference on the CPU with LiteRT.

    The interpreter is resized only when the batch size changes, so a stream of
    single rows (or of equal batches) reuses its buffers. Calls are serialised: one
    interpreter must not run two batches at once.
    """

    def __init__(self, model_dir: str | Path, *, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        directory = Path(model_dir)
        metadata = read_json(directory / METADATA_FILE)
        self.metadata: dict[str, Any] = metadata
        self.schema = Schema.load(directory / SCHEMA_FILE)
        self.transform = Transform.load(directory / TRANSFORM_FILE)
        self.interpreter = Interpreter(
            model_path=str(directory / metadata.get("model_file", TFLITE_MODEL_FILE)),
            num_threads=threads,
        )
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        self._batch_rows = int(self._input["shape"][0])
        self._lock = threading.Lock()
        self.model_dir = directory

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Predict from an already transformed float32 matrix; one value per row."""
        rows = np.ascontiguousarray(matrix, dtype=np.float32)
        if len(rows) == 0:
            return np.zeros(0, dtype=np.float64)
        with self._lock:
            if len(rows) != self._batch_rows:
                self.interpreter.resize_tensor_input(
                    self._input["index"], list(rows.shape), strict=True
                )
                self.interpreter.allocate_tensors()
                self._batch_rows = len(rows)
            self.interpreter.set_tensor(
                self._input["index"], _quantize(rows, self._input)
            )
            self.interpreter.invoke()
            output = self.interpreter.get_tensor(self._output["index"])
        return _dequantize(output, self._output).reshape(-1)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Predict from raw rows: a probability (`binary`) or a value per row."""
        return self.predict_matrix(self.transform.apply(frame))


def _quantize(values: np.ndarray, detail: dict) -> np.ndarray:
    # Models with int8 input (full-integer with integer I/O) take quantized values.
    dtype = detail["dtype"]
    if dtype == np.float32:
        return values
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    quantized = np.round(values / scale + zero_point)
    return np.clip(quantized, info.min, info.max).astype(dtype)


def _dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return values.astype(np.float64)
    scale, zero_point = detail["quantization"]
    return (values.astype(np.float64) - zero_point) * scale


def load_model(model_dir: str | Path, *, threads: int | None = None) -> LoadedModel:
    """Load a model directory with the runtime its `metadata.json` names.

    Raises:
        PlumbError: The directory holds no model, or its format is unknown.
    """
    directory = Path(model_dir)
    metadata_path = directory / METADATA_FILE
    if not metadata_path.is_file():
        raise PlumbError(
            f"no {METADATA_FILE} in {str(directory)!r}; point at a model directory "
            "written by plumb's train or compress step"
        )
    model_format = read_json(metadata_path).get("format", "onnx")
    if model_format == "onnx":
        return OnnxModel(directory, threads=threads)
    if model_format == "tflite":
        return TfliteModel(directory, threads=threads)
    if model_format == "sklearn":
        return SklearnModel(directory)
    raise PlumbError(
        f"unknown model format {model_format!r} in {str(metadata_path)!r}; "
        "plumb loads 'onnx', 'tflite' and 'sklearn'"
    )
