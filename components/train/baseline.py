"""The gradient-boosted tree baseline that trains beside the network.

A scikit-learn `HistGradientBoostingClassifier` (binary) or `...Regressor` fits the same
transformed features the network sees. It is saved as a model directory of format
`sklearn` (`baseline.joblib` plus the usual schema, transform and metadata), which
`components.common.model_runtime.load_model` serves like any other model, so the
evaluation step can score both through one interface.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import joblib
import pandas as pd
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)

from components.common.artifacts import (
    METADATA_FILE,
    SKLEARN_MODEL_FILE,
    copy_preprocessor,
    write_json,
)
from components.common.config import TrainingConfig
from components.preprocess.schema import Schema
from components.preprocess.transform import Transform

logger = logging.getLogger(__name__)


def train_baseline(
    config: TrainingConfig,
    *,
    train: pd.DataFrame,
    preprocessor_dir: str | Path,
    model_dir: str | Path,
) -> dict[str, float]:
    """Fit the tree baseline on the transformed training split and save it.

    Returns:
        `baseline_train_seconds` and the number of boosting iterations.
    """
    preprocessor = Path(preprocessor_dir)
    schema = Schema.load(preprocessor / "schema.json")
    transform = Transform.load(preprocessor / "transform.json")
    features = transform.apply(train)
    labels = schema.labels(train)

    estimator: HistGradientBoostingClassifier | HistGradientBoostingRegressor
    if schema.task == "binary":
        estimator = HistGradientBoostingClassifier(random_state=config.seed)
        labels = labels.astype(int)
    else:
        estimator = HistGradientBoostingRegressor(random_state=config.seed)
    started = time.perf_counter()
    estimator.fit(features, labels)
    seconds = time.perf_counter() - started
    logger.info(
        "Fitted %s baseline on %d rows in %.1f s (%d iterations)",
        type(estimator).__name__,
        len(features),
        seconds,
        estimator.n_iter_,
    )

    out = Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(estimator, out / SKLEARN_MODEL_FILE)
    copy_preprocessor(preprocessor, out)
    write_json(
        out / METADATA_FILE,
        {
            "framework": "sklearn",
            "model": type(estimator).__name__,
            "task": schema.task,
            "input_width": transform.width,
            "output": "probability" if schema.task == "binary" else "value",
            "format": "sklearn",
            "model_file": SKLEARN_MODEL_FILE,
            "compression": "none",
        },
    )
    return {
        "baseline_train_seconds": seconds,
        "baseline_iterations": float(estimator.n_iter_),
    }
