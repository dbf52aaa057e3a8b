"""Permutation importance finds a planted informative column on synthetic data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor

from components.common.model_runtime import load_model
from components.evaluate.importance import permutation_importance, sample_rows


def test_planted_feature_ranks_first_for_a_classifier(
    tmp_path: Path, fit_model_dir, grouped_frame
) -> None:
    """`signal` (the only informative column) is ranked first with a clear margin."""
    frame = grouped_frame(1500, seed=1)
    features = ["signal", "noise_a", "noise_b", "carrier"]
    model_dir = fit_model_dir(
        frame.iloc[:1000],
        features=features,
        target="delayed",
        task="binary",
        positive_class="yes",
        model_dir=tmp_path / "model",
    )
    model = load_model(model_dir)
    test = frame.iloc[1000:].reset_index(drop=True)
    ranking = permutation_importance(
        model.predict,
        test,
        model.schema.labels(test),
        task="binary",
        columns=features,
        repeats=3,
        seed=0,
    )
    assert [item.column for item in ranking][0] == "signal"
    # The AUC drop from shuffling the signal is large; noise columns move it little.
    assert ranking[0].importance > 0.2
    assert all(abs(item.importance) < 0.05 for item in ranking[2:])


def test_planted_feature_ranks_first_for_a_regressor(
    tmp_path: Path, fit_model_dir
) -> None:
    """For regression the R2 drop of the informative column dwarfs the others."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=800),
            "noise": rng.normal(size=800),
            "day": rng.integers(1, 8, 800),
        }
    )
    frame["y"] = 3 * frame["x"] + rng.normal(scale=0.3, size=800)
    model_dir = fit_model_dir(
        frame.iloc[:600],
        features=["x", "noise", "day"],
        target="y",
        task="regression",
        model_dir=tmp_path / "model",
        estimator=HistGradientBoostingRegressor(max_iter=50, random_state=0),
    )
    model = load_model(model_dir)
    test = frame.iloc[600:].reset_index(drop=True)
    ranking = permutation_importance(
        model.predict,
        test,
        model.schema.labels(test),
        task="regression",
        columns=["x", "noise", "day"],
        repeats=2,
    )
    assert ranking[0].column == "x"
    assert ranking[0].importance > 1.0  # R2 falls from ~0.99 to below 0
    assert ranking[1].importance < 0.05


def test_sample_rows_keeps_both_classes_and_is_seeded() -> None:
    """A stratified sample keeps the class shares and repeats with the same seed."""
    frame = pd.DataFrame({"a": np.arange(1000)})
    labels = (np.arange(1000) < 50).astype(float)
    sample, y = sample_rows(frame, labels, task="binary", max_rows=100, seed=1)
    again, _ = sample_rows(frame, labels, task="binary", max_rows=100, seed=1)
    assert len(sample) == 100
    assert y.sum() == 5
    assert sample["a"].tolist() == again["a"].tolist()
