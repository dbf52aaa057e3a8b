"""Fixtures for evaluation tests: a tree baseline and a useless model, as model dirs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from evaluate_helpers import save_sklearn_model
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from components.preprocess.lib import PreparedData


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
