"""Per-prediction attributions on the raw, human-named columns.

An attribution is the prediction minus the prediction with one column replaced by its
baseline value (the training median for numbers, the unknown bucket for categories),
all other columns unchanged: positive when the row's value raises the prediction.
Evaluation and the model server's `:explain` endpoint both call `explain_rows`, so a
person sees the same numbers in the report and from the API.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd

from components.preprocess.transform import UNKNOWN, Transform


class _Predictor(Protocol):
    transform: Transform

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray: ...


def baseline_row(transform: Transform) -> dict[str, object]:
    """The reference value of each raw column that attributions are measured against."""
    values: dict[str, object] = {step.name: step.median for step in transform.numeric}
    values.update({step.name: UNKNOWN for step in transform.categorical})
    return values


def explain_matrix(model: _Predictor, frame: pd.DataFrame) -> np.ndarray:
    """Return attributions as a (rows, raw columns) array in `transform.input_columns` order."""
    transform = model.transform
    columns = transform.input_columns
    encoded = transform.apply(frame)
    predictions = model.predict_matrix(encoded)
    baseline = baseline_row(transform)
    attributions = np.zeros((len(frame), len(columns)), dtype=np.float64)
    for index, column in enumerate(columns):
        # Re-encode with one column swapped for its baseline; predictions drop or rise by
        # what that column contributed to this row.
        occluded = frame[columns].copy()
        occluded[column] = baseline[column]
        attributions[:, index] = predictions - model.predict_matrix(
            transform.apply(occluded)
        )
    return attributions


def explain_rows(model: _Predictor, frame: pd.DataFrame) -> list[dict[str, float]]:
    """Return one `{column: attribution}` mapping per row."""
    columns = model.transform.input_columns
    matrix = explain_matrix(model, frame)
    return [dict(zip(columns, map(float, row), strict=True)) for row in matrix]
