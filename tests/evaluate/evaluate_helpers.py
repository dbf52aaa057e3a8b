"""Helpers for evaluation tests: sklearn models saved in plumb's model layout."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier

from components.common.artifacts import (
    METADATA_FILE,
    SCHEMA_FILE,
    SKLEARN_MODEL_FILE,
    TRANSFORM_FILE,
    write_json,
)
from components.preprocess.schema import Schema, infer_schema
from components.preprocess.transform import Transform


def save_sklearn_model(
    estimator: object, *, schema: Schema, transform: Transform, model_dir: Path
) -> Path:
    """Write a fitted estimator as a model directory with metadata format `sklearn`."""
    model_dir.mkdir(parents=True, exist_ok=True)
    schema.save(model_dir / SCHEMA_FILE)
    transform.save(model_dir / TRANSFORM_FILE)
    joblib.dump(estimator, model_dir / SKLEARN_MODEL_FILE)
    write_json(
        model_dir / METADATA_FILE,
        {"format": "sklearn", "framework": "sklearn", "task": schema.task},
    )
    return model_dir


def fit_model_dir(
    train: pd.DataFrame,
    *,
    features: list[str],
    target: str,
    task: str,
    model_dir: Path,
    estimator: object | None = None,
    positive_class: str | None = None,
) -> Path:
    """Infer a schema, fit the transform and an estimator, and save the model dir."""
    schema = infer_schema(
        train,
        features=features,
        target=target,
        task=task,
        positive_class=positive_class,
    )
    transform = Transform.fit(train, schema)
    model = estimator or HistGradientBoostingClassifier(max_iter=50, random_state=0)
    model.fit(transform.apply(train), schema.labels(train))  # type: ignore[attr-defined]
    return save_sklearn_model(
        model, schema=schema, transform=transform, model_dir=model_dir
    )


def grouped_frame(rows: int, *, seed: int) -> pd.DataFrame:
    """Synthetic rows: `signal` drives the label except in carrier `ZZ`, where it is noise.

    `noise_a` and `noise_b` are unrelated to the label, and `carrier` alone predicts
    nothing (every carrier has about the same positive rate).
    """
    rng = np.random.default_rng(seed)
    carrier = rng.choice(["AA", "BB", "CC", "ZZ"], size=rows, p=[0.35, 0.3, 0.2, 0.15])
    signal = rng.normal(size=rows)
    informative = 1 / (1 + np.exp(-4 * signal))
    label = rng.random(rows) < np.where(carrier == "ZZ", 0.5, informative)
    return pd.DataFrame(
        {
            "signal": signal,
            "noise_a": rng.normal(size=rows),
            "noise_b": rng.uniform(size=rows),
            "carrier": carrier,
            "delayed": np.where(label, "yes", "no"),
        }
    )


class NanModel:
    """A broken classifier: every probability is NaN."""

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        return np.full((len(matrix), 2), np.nan)
