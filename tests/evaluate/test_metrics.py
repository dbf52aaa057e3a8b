"""Metric values against scikit-learn, threshold strategies and per-slice metrics."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from components.common.errors import DataError, PlumbError
from components.evaluate.metrics import (
    choose_threshold,
    compute_metrics,
    confusion_matrix,
    primary_score,
    slice_groups,
    slice_metrics,
)

# Exact agreement is expected: the same scikit-learn functions on the same arrays; the
# tolerance only absorbs float formatting.
TOLERANCE = 1e-12


@pytest.fixture
def fixed_binary() -> tuple[np.ndarray, np.ndarray]:
    y_true = np.array([0, 0, 1, 1, 0, 1, 1, 0, 1, 0, 1, 1], dtype=float)
    y_score = np.array(
        [0.1, 0.4, 0.35, 0.8, 0.62, 0.9, 0.55, 0.2, 0.45, 0.05, 0.7, 0.3]
    )
    return y_true, y_score


def test_binary_metrics_match_sklearn(fixed_binary) -> None:
    """Every binary metric equals scikit-learn's on fixed predictions at threshold 0.5."""
    y_true, y_score = fixed_binary
    got = compute_metrics(y_true, y_score, task="binary", decision_threshold=0.5)
    y_pred = (y_score >= 0.5).astype(int)
    expected = {
        "accuracy": skm.accuracy_score(y_true, y_pred),
        "precision": skm.precision_score(y_true, y_pred),
        "recall": skm.recall_score(y_true, y_pred),
        "f1": skm.f1_score(y_true, y_pred),
        "roc_auc": skm.roc_auc_score(y_true, y_score),
        "pr_auc": skm.average_precision_score(y_true, y_score),
        "log_loss": skm.log_loss(y_true, y_score),
        "brier": skm.brier_score_loss(y_true, y_score),
    }
    assert list(got) == list(expected)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=TOLERANCE), name
    # Hand-checked anchors, so a shared mistake with scikit-learn would still show.
    assert got["accuracy"] == pytest.approx(8 / 12)
    assert got["recall"] == pytest.approx(4 / 7)


def test_decision_threshold_moves_label_metrics(fixed_binary) -> None:
    """A higher threshold changes precision/recall but not the ranking metrics."""
    y_true, y_score = fixed_binary
    low = compute_metrics(y_true, y_score, task="binary", decision_threshold=0.3)
    high = compute_metrics(y_true, y_score, task="binary", decision_threshold=0.75)
    assert low["recall"] > high["recall"]
    assert low["roc_auc"] == high["roc_auc"]
    assert confusion_matrix(y_true, y_score, decision_threshold=0.75) == [
        [5, 0],
        [5, 2],
    ]


def test_regression_metrics_match_sklearn() -> None:
    """MSE, RMSE, MAE and R2 equal scikit-learn's on fixed predictions."""
    y_true = np.array([3.0, -0.5, 2.0, 7.0, 4.2])
    y_score = np.array([2.5, 0.0, 2.0, 8.0, 3.9])
    got = compute_metrics(y_true, y_score, task="regression")
    mse = skm.mean_squared_error(y_true, y_score)
    assert got["mse"] == pytest.approx(mse, abs=TOLERANCE)
    assert got["rmse"] == pytest.approx(math.sqrt(mse), abs=TOLERANCE)
    assert got["mae"] == pytest.approx(
        skm.mean_absolute_error(y_true, y_score), abs=TOLERANCE
    )
    assert got["r2"] == pytest.approx(skm.r2_score(y_true, y_score), abs=TOLERANCE)


def test_single_class_test_set_is_refused() -> None:
    """A test split with one class raises a DataError naming the fix."""
    with pytest.raises(DataError, match="single class.*test_fraction"):
        compute_metrics(np.ones(5), np.full(5, 0.7), task="binary")


def test_nan_predictions_are_refused() -> None:
    """NaN predictions raise, naming how many and where, instead of a NaN metric."""
    scores = np.array([0.2, np.nan, 0.8, np.nan])
    with pytest.raises(PlumbError, match="2 NaN or infinite values .*row 1"):
        compute_metrics(np.array([0, 1, 1, 0.0]), scores, task="binary")
    with pytest.raises(PlumbError, match="NaN"):
        compute_metrics(
            np.array([1.0, 2.0]), np.array([np.inf, 1.0]), task="regression"
        )


def test_binary_scores_outside_unit_interval_are_refused() -> None:
    """Logits passed as probabilities raise rather than give a wrong log loss."""
    with pytest.raises(PlumbError, match=r"probabilities in \[0, 1\]"):
        compute_metrics(np.array([0, 1.0]), np.array([-2.0, 3.0]), task="binary")


def test_f1_strategy_picks_the_best_f1_threshold(fixed_binary) -> None:
    """`f1` returns the threshold whose F1 is the best among all candidate cut-offs."""
    y_true, y_score = fixed_binary
    chosen = choose_threshold(y_true, y_score, strategy="f1")
    best = max(
        skm.f1_score(y_true, (y_score >= t).astype(int)) for t in np.unique(y_score)
    )
    assert skm.f1_score(y_true, (y_score >= chosen).astype(int)) == pytest.approx(best)
    assert chosen in set(y_score)


def test_youden_strategy_maximises_tpr_minus_fpr(fixed_binary) -> None:
    """`youden` returns a threshold whose TPR - FPR is the largest achievable."""
    y_true, y_score = fixed_binary

    def youden(t: float) -> float:
        pred = y_score >= t
        return pred[y_true == 1].mean() - pred[y_true == 0].mean()

    chosen = choose_threshold(y_true, y_score, strategy="youden")
    assert youden(chosen) == pytest.approx(max(youden(t) for t in np.unique(y_score)))


def test_fixed_strategy_and_missing_validation() -> None:
    """`fixed` needs no data; `f1` without validation rows is a clear error."""
    assert choose_threshold(None, None, strategy="fixed", fixed=0.3) == 0.3
    with pytest.raises(PlumbError, match="needs the validation split"):
        choose_threshold(None, None, strategy="f1")
    with pytest.raises(PlumbError, match="unknown evaluation.threshold_strategy"):
        choose_threshold(None, None, strategy="median")


def test_slice_groups_pool_rare_categories_and_bin_numbers() -> None:
    """Rare categories become `other`, missing values `missing`, numbers quantile bins."""
    column = pd.Series(["a"] * 5 + ["b"] * 4 + ["c", "d", None])
    groups = slice_groups(column, max_slices=3)
    assert groups.tolist() == ["a"] * 5 + ["b"] * 4 + ["other"] * 3
    numbers = slice_groups(pd.Series(np.arange(100.0)), max_slices=10)
    assert numbers.nunique() == 5
    assert numbers.value_counts().min() == 20


def test_slice_metrics_expose_a_bad_group() -> None:
    """A group whose predictions are unrelated to the label gets a low slice ROC AUC."""
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, size=400).astype(float)
    good = np.clip(y_true * 0.6 + rng.uniform(0, 0.4, size=400), 0, 1)
    groups = pd.Series(np.where(np.arange(400) < 300, "good", "bad"))
    y_score = np.where(groups == "bad", rng.uniform(size=400), good)
    results = {
        r.value: r
        for r in slice_metrics(
            groups, y_true, y_score, task="binary", decision_threshold=0.5
        )
    }
    assert results["good"].rows == 300
    assert results["good"].metrics["roc_auc"] > 0.99
    assert results["bad"].metrics["roc_auc"] < 0.7


def test_primary_score_equals_sklearn_with_ties() -> None:
    """The fast ROC AUC and R2 used by permutation importance equal scikit-learn's."""
    rng = np.random.default_rng(4)
    y_true = rng.integers(0, 2, size=300).astype(float)
    y_score = np.round(rng.uniform(size=300) * 0.5 + y_true * 0.3, 1)  # many ties
    assert primary_score(y_true, y_score, task="binary") == pytest.approx(
        skm.roc_auc_score(y_true, y_score), abs=TOLERANCE
    )
    values = rng.normal(size=300)
    guesses = values + rng.normal(scale=0.5, size=300)
    assert primary_score(values, guesses, task="regression") == pytest.approx(
        skm.r2_score(values, guesses), abs=TOLERANCE
    )
