"""Run an exported model directory: raw rows in, predictions out.

`load_model` reads `metadata.json` and picks the runtime for its `format`: onnxruntime
for `onnx`, joblib for `sklearn` (the tree baseline trained next to the network, stored
as `baseline.joblib`; joblib unpickles, so load only model directories you trust).
Evaluation, compression and the model server all predict through here, so a model is
scored the same way wherever it runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd

from components.common.artifacts import (
    METADATA_FILE,
    ONNX_MODEL_FILE,
    SCHEMA_FILE,
    SKLEARN_MODEL_FILE,
    TRANSFORM_FILE,
    read_json,
)
from components.common.errors import PlumbError
from components.preprocess.schema import Schema
from components.preprocess.transform import Transform


class OnnxModel:
    """A model directory loaded for inference on the CPU."""

    def __init__(self, model_dir: str | Path, *, threads: int | None = None) -> None:
        directory = Path(model_dir)
        metadata = read_json(directory / METADATA_FILE)
        self.metadata: dict = metadata
        self.schema = Schema.load(directory / SCHEMA_FILE)
        self.transform = Transform.load(directory / TRANSFORM_FILE)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(directory / metadata.get("model_file", ONNX_MODEL_FILE)),
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )
        self._input = self.session.get_inputs()[0].name
        self.model_dir = directory

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Predict from an already transformed float32 matrix; one value per row."""
        (output,) = self.session.run(None, {self._input: matrix.astype(np.float32)})
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


def load_model(
    model_dir: str | Path, *, threads: int | None = None
) -> OnnxModel | SklearnModel:
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
    if model_format == "sklearn":
        return SklearnModel(directory)
    raise PlumbError(
        f"unknown model format {model_format!r} in {str(metadata_path)!r}; "
        "plumb loads 'onnx' and 'sklearn'"
    )
