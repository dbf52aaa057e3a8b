"""The tree baseline: trained beside the network, loaded through `load_model`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from plumb_testing import quick_config

from components.common.model_runtime import SklearnModel, load_model
from components.preprocess.lib import PreparedData, prepare, write_prepared
from components.preprocess.split import SPLITS
from components.train.baseline import train_baseline
from components.train.loop import r2, roc_auc


def test_classifier_baseline_loads_and_scores(
    tmp_path: Path, prepared_breast_cancer: PreparedData, preprocessed_dir: Path
) -> None:
    """A binary task gets a classifier whose probabilities score well on test."""
    config = quick_config()
    metrics = train_baseline(
        config.training,
        train=prepared_breast_cancer.splits["train"],
        preprocessor_dir=preprocessed_dir / "preprocessor",
        model_dir=tmp_path / "baseline",
    )
    assert metrics["baseline_iterations"] >= 1

    model = load_model(tmp_path / "baseline")
    assert isinstance(model, SklearnModel)
    assert model.metadata["format"] == "sklearn"
    assert model.metadata["model"] == "HistGradientBoostingClassifier"
    test = prepared_breast_cancer.splits["test"]
    probabilities = model.predict(test)
    assert probabilities.shape == (len(test),)
    assert np.all((probabilities >= 0) & (probabilities <= 1))
    # Gradient boosting reaches ~0.99 AUC on breast-cancer; 0.95 leaves seed slack.
    assert roc_auc(model.schema.labels(test), probabilities) >= 0.95
    np.testing.assert_array_equal(
        probabilities, model.predict_matrix(model.transform.apply(test))
    )
    assert model.schema.feature_names == prepared_breast_cancer.schema.feature_names


def test_regressor_baseline_for_regression(tmp_path: Path) -> None:
    """A regression task gets a regressor that fits a smooth target well."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=600), "b": rng.normal(size=600)})
    frame["y"] = 3 * frame["a"] - 2 * frame["b"] + rng.normal(scale=0.1, size=600)
    frame.to_csv(tmp_path / "table.csv", index=False)
    config = quick_config(
        data={
            "dataset": str(tmp_path / "table.csv"),
            "target": "y",
            "task": "regression",
        }
    )
    prepared = prepare(config)
    write_prepared(
        prepared,
        split_paths={name: str(tmp_path / f"{name}.parquet") for name in SPLITS},
        preprocessor_dir=str(tmp_path / "pre"),
    )
    train_baseline(
        config.training,
        train=prepared.splits["train"],
        preprocessor_dir=tmp_path / "pre",
        model_dir=tmp_path / "baseline",
    )
    model = load_model(tmp_path / "baseline")
    assert model.metadata["model"] == "HistGradientBoostingRegressor"
    test = prepared.splits["test"]
    assert r2(test["y"].to_numpy(), model.predict(test)) >= 0.9


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    """A model directory of another format names the formats plumb loads."""
    (tmp_path / "metadata.json").write_text('{"format": "pickle"}')
    with pytest.raises(ValueError, match="plumb loads 'onnx', 'tflite' and 'sklearn'"):
        load_model(tmp_path)
