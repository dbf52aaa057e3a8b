"""Fixtures for evaluation tests: sklearn models saved in plumb's model layout.

The repository runs pytest with `--import-mode=importlib`, where test modules cannot
import each other; shared helpers are therefore handed out as fixtures.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from components.common.artifacts import (
    METADATA_FILE,
    SCHEMA_FILE,
    SKLEARN_MODEL_FILE,
    TRANSFORM_FILE,
    write_json,
)
from components.preprocess.lib import PreparedData
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


def _fit_model_dir(
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


def _grouped_frame(rows: int, *, seed: int) -> pd.DataFrame:
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


class _NanModel:
    """A broken classifier: every probability is NaN."""

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        return np.full((len(matrix), 2), np.nan)


@pytest.fixture(autouse=True)
def _one_openmp_thread():
    """Run scikit-learn's OpenMP code on one thread during each evaluation test.

    The shared test machine has 2 cores and many processes; HistGradientBoosting's
    default of one thread per core then spends most of its time waiting (13 s instead
    of 0.5 s to fit 1,000 rows). Scoped per test so other suites keep their threads.
    """
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="session")
def baseline_model_dir(
    tmp_path_factory: pytest.TempPathFactory, prepared_breast_cancer: PreparedData
) -> Path:
    """The tree baseline for breast-cancer, in the layout the train step writes."""
    train = prepared_breast_cancer.splits["train"]
    estimator = HistGradientBoostingClassifier(max_iter=50, random_state=0)
    with threadpool_limits(limits=1):  # session fixtures run before the autouse one
        estimator.fit(
            prepared_breast_cancer.transform.apply(train),
            prepared_breast_cancer.schema.labels(train),
        )
    return save_sklearn_model(
        estimator,
        schema=prepared_breast_cancer.schema,
        transform=prepared_breast_cancer.transform,
        model_dir=tmp_path_factory.mktemp("baseline") / "baseline",
    )


@pytest.fixture(scope="session")
def noise_model_dir(
    tmp_path_factory: pytest.TempPathFactory, prepared_breast_cancer: PreparedData
) -> Path:
    """A breast-cancer model fitted to shuffled labels: ranks test rows at random."""
    train = prepared_breast_cancer.splits["train"]
    labels = prepared_breast_cancer.schema.labels(train)
    estimator = LogisticRegression(max_iter=200)
    estimator.fit(
        prepared_breast_cancer.transform.apply(train),
        np.random.default_rng(0).permutation(labels),
    )
    return save_sklearn_model(
        estimator,
        schema=prepared_breast_cancer.schema,
        transform=prepared_breast_cancer.transform,
        model_dir=tmp_path_factory.mktemp("noise") / "noise",
    )


@pytest.fixture(scope="session")
def fit_model_dir() -> Callable[..., Path]:
    """`fit_model_dir(train, features=, target=, task=, model_dir=, ...)` -> model dir."""
    return _fit_model_dir


@pytest.fixture(scope="session")
def grouped_frame() -> Callable[..., pd.DataFrame]:
    """`grouped_frame(rows, seed=)`: synthetic rows with a planted bad carrier."""
    return _grouped_frame


@pytest.fixture
def nan_model_dir(tmp_path: Path, baseline_model_dir: Path) -> Path:
    """A breast-cancer model directory whose classifier predicts NaN."""
    broken = tmp_path / "broken"
    shutil.copytree(baseline_model_dir, broken)
    joblib.dump(_NanModel(), broken / SKLEARN_MODEL_FILE)
    return broken
