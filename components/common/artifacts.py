"""File names inside plumb's artifacts, and small readers and writers for them.

A preprocessor directory holds `schema.json` and `transform.json`. A model directory
holds those two plus the served model (`model.onnx`, or `model.tflite` for TensorFlow),
`metadata.json`, the framework checkpoint (`checkpoint.pt` or `model.keras`) and
`reference.parquet` (a training sample the drift monitor compares with). The model
server and every later step read that layout.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

SCHEMA_FILE = "schema.json"
TRANSFORM_FILE = "transform.json"
ONNX_MODEL_FILE = "model.onnx"
METADATA_FILE = "metadata.json"
TORCH_CHECKPOINT_FILE = "checkpoint.pt"
SKLEARN_MODEL_FILE = "baseline.joblib"
"""The scikit-learn baseline in a model directory whose metadata format is `sklearn`."""
TFLITE_MODEL_FILE = "model.tflite"
"""The served TensorFlow model (format `tflite`)."""
KERAS_MODEL_FILE = "model.keras"
"""The tf_keras model a TFLite model was converted from, for fine-tuning and compression."""
REFERENCE_FILE = "reference.parquet"
"""A sample of the training split (features and target): the drift reference."""
REFERENCE_MAX_ROWS = 50_000
VERDICT_FILE = "verdict.json"
"""The evaluation verdict of a served model, beside its files (`plumb promote` reads it)."""


def write_json(path: str | Path, data: Any) -> None:
    Path(path).write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    frame.reset_index(drop=True).to_parquet(path, index=False)


def read_table(path: str | Path) -> pd.DataFrame:
    return pd.read_parquet(path)


def copy_preprocessor(source_dir: str | Path, model_dir: str | Path) -> None:
    """Copy the schema and transform next to a model, so the model dir is self-contained."""
    for name in (SCHEMA_FILE, TRANSFORM_FILE):
        shutil.copy2(Path(source_dir) / name, Path(model_dir) / name)


def dir_size_bytes(path: str | Path) -> int:
    root = Path(path)
    if root.is_file():
        return root.stat().st_size
    return sum(file.stat().st_size for file in root.rglob("*") if file.is_file())


def write_reference(
    train: pd.DataFrame, model_dir: str | Path, *, seed: int = 0
) -> None:
    """Ship a seeded sample of the training rows with the model, for drift checks."""
    sample = train
    if len(train) > REFERENCE_MAX_ROWS:
        sample = train.sample(n=REFERENCE_MAX_ROWS, random_state=seed).sort_index()
    write_table(sample, Path(model_dir) / REFERENCE_FILE)
