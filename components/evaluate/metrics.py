"""Model quality metrics, the decision threshold, curves and per-slice metrics.

`compute_metrics` is the one definition of every number the gate (gate.py), the
compression step and the report use; it refuses inputs that would give a meaningless
number (NaN predictions, a single class) rather than returning one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from components.common.config import BINARY_METRICS, REGRESSION_METRICS
from components.common.errors import DataError, PlumbError

CLASSIFICATION_METRICS = BINARY_METRICS
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "mse", "rmse", "mae"})
"""For these, smaller is better: a gate threshold is a maximum."""
PRIMARY_METRIC = {"binary": "roc_auc", "regression": "r2"}
"""The metric that ranks models of a task (importance, slices, compression)."""
THRESHOLD_STRATEGIES = ("fixed", "f1", "youden")
CURVE_POINTS = 60
CALIBRATION_BINS = 10
PROBABILITY_EPSILON = 1e-7


def metric_names(task: str) -> tuple[str, ...]:
    """Return the metrics computed for a task."""
    return REGRESSION_METRICS if task == "regression" else BINARY_METRICS


def higher_is_better(name: str) -> bool:
    return name not in LOWER_IS_BETTER


def check_predictions(y_true: np.ndarray, y_score: np.ndarray, *, task: str) -> None:
    """Refuse predictions and labels no metric can be computed from.

    Raises:
        PlumbError: Predictions hold NaN or infinity, lengths differ, a `binary`
            score lies outside [0, 1], or the labels hold a single class.
    """
    if len(y_true) != len(y_score):
        raise PlumbError(
            f"got {len(y_score)} predictions for {len(y_true)} labels; "
            "score every test row once"
        )
    if len(y_true) == 0:
        raise DataError("the test split is empty; raise data.split.test_fraction")
    bad = ~np.isfinite(y_score)
    if bad.any():
        raise PlumbError(
            f"predictions hold {int(bad.sum())} NaN or infinite values (first at row "
            f"{int(np.argmax(bad))}); the model is broken, retrain it"
        )
    if not np.isfinite(y_true).all():
        raise DataError(
            "the test labels hold missing values; drop rows without a target"
        )
    if task == "regression":
        return
    if y_score.min() < 0.0 or y_score.max() > 1.0:
        raise PlumbError(
            f"binary predictions must be probabilities in [0, 1], got values from "
            f"{y_score.min():.4g} to {y_score.max():.4g}; export the model with a "
            "sigmoid output"
        )
    if len(np.unique(y_true)) < 2:
        raise DataError(
            f"the test split holds a single class ({int(y_true[0])} in all "
            f"{len(y_true)} rows); ROC AUC and precision need both, so use more rows "
            "or a larger data.split.test_fraction"
        )


def check_gate_metrics(thresholds: dict[str, float] | None, *, task: str) -> None:
    """Fail before any work when the gate names a metric the task does not compute.

    Args:
        thresholds: `evaluation.gate.thresholds`; None (the task's defaults) is valid.
        task: `binary` or `regression`.

    Raises:
        PlumbError: A threshold names an unknown metric.
    """
    known = metric_names(task)
    unknown = sorted(set(thresholds or {}) - set(known))
    if unknown:
        raise PlumbError(
            f"evaluation.gate.thresholds names unknown metric {unknown[0]!r} for a "
            f"{task} task; use one of {', '.join(known)}"
        )


def compute_metrics(
    y_true: np.ndarray,
    y_score: np.ndarray,
    *,
    task: str,
    decision_threshold: float = 0.5,
) -> dict[str, float]:
    """Compute the task's metrics from labels and predictions.

    Args:
        y_true: 1/0 labels (`binary`) or target values (`regression`).
        y_score: P(positive) (`binary`) or predicted values (`regression`).
        task: `binary` or `regression`.
        decision_threshold: Probability at or above which a row is labelled positive.

    Returns:
        Metric name to value, in `metric_names(task)` order.

    Raises:
        PlumbError: See `check_predictions`.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_score = np.asarray(y_score, dtype=np.float64)
    check_predictions(y_true, y_score, task=task)
    if task == "regression":
        mse = float(skm.mean_squared_error(y_true, y_score))
        return {
            "mse": mse,
            "rmse": math.sqrt(mse),
            "mae": float(skm.mean_absolute_error(y_true, y_score)),
            "r2": float(skm.r2_score(y_true, y_score)),
        }
    y_pred = (y_score >= decision_threshold).astype(int)
    clipped = np.clip(y_score, PROBABILITY_EPSILON, 1 - PROBABILITY_EPSILON)
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "precision": float(skm.precision_score(y_true, y_pred, zero_division=0)),
        "recall": float(skm.recall_score(y_true, y_pred, zero_division=0)),
        "f1": float(skm.f1_score(y_true, y_pred, zero_division=0)),
        "roc_auc": float(skm.roc_auc_score(y_true, y_score)),
        "pr_auc": float(skm.average_precision_score(y_true, y_score)),
        "log_loss": float(skm.log_loss(y_true, clipped, labels=[0, 1])),
        "brier": float(skm.brier_score_loss(y_true, y_score)),
    }


def primary_score(y_true: np.ndarray, y_score: np.ndarray, *, task: str) -> float:
    """The task's primary metric alone (ROC AUC or R2), cheap enough to call often.

    Equal to scikit-learn's `roc_auc_score` (the Mann-Whitney U statistic with
    average ranks for ties) and `r2_score`, without their input validation, which
    dominates the run time of permutation importance. Inputs are not checked: call
    `check_predictions` once first.
    """
    if task == "regression":
        residual = float(np.sum((y_true - y_score) ** 2))
        total = float(np.sum((y_true - np.mean(y_true)) ** 2))
        return 1.0 - residual / total if total > 0 else math.nan
    positive = y_true == 1
    positives = int(positive.sum())
    negatives = len(y_true) - positives
    ranks = rankdata(y_score)
    u_statistic = float(ranks[positive].sum()) - positives * (positives + 1) / 2
    return u_statistic / (positives * negatives)


def choose_threshold(
    y_true: np.ndarray | None,
    y_score: np.ndarray | None,
    *,
    strategy: str,
    fixed: float = 0.5,
) -> float:
    """Pick the decision threshold of a `binary` model on validation predictions.

    Args:
        y_true: Validation labels; unused for `fixed`.
        y_score: Validation probabilities; unused for `fixed`.
        strategy: `fixed` returns `fixed`; `f1` maximises F1; `youden` maximises
            TPR - FPR.
        fixed: The threshold of the `fixed` strategy.

    Raises:
        PlumbError: The strategy is unknown, or needs validation rows and got none.
    """
    if strategy not in THRESHOLD_STRATEGIES:
        raise PlumbError(
            f"unknown evaluation.threshold_strategy {strategy!r}; "
            f"choose from {list(THRESHOLD_STRATEGIES)}"
        )
    if strategy == "fixed":
        return fixed
    if y_true is None or y_score is None or len(y_true) == 0:
        raise PlumbError(
            f"evaluation.threshold_strategy {strategy!r} needs the validation split; "
            "pass it, set data.split.validation_fraction > 0, or use 'fixed'"
        )
    y_true = np.asarray(y_true, dtype=np.float64)
    y_score = np.asarray(y_score, dtype=np.float64)
    check_predictions(y_true, y_score, task="binary")
    if strategy == "f1":
        precision, recall, thresholds = skm.precision_recall_curve(y_true, y_score)
        # The last precision/recall pair has no threshold (recall 0 by convention).
        denominator = precision[:-1] + recall[:-1]
        f1 = np.divide(
            2 * precision[:-1] * recall[:-1],
            denominator,
            out=np.zeros_like(denominator),
            where=denominator > 0,
        )
        return float(thresholds[int(np.argmax(f1))])
    fpr, tpr, thresholds = skm.roc_curve(y_true, y_score)
    # The first roc_curve threshold is +inf (nothing predicted positive); skip it.
    best = 1 + int(np.argmax((tpr - fpr)[1:]))
    return float(min(thresholds[best], 1.0))


@dataclass
class Curve:
    """Points of a curve, thinned to at most `CURVE_POINTS`, for charts and KFP."""

    x: list[float]
    y: list[float]
    thresholds: list[float]


def _thin(count: int) -> np.ndarray:
    return np.unique(np.linspace(0, count - 1, min(count, CURVE_POINTS)).astype(int))


def roc_curve(y_true: np.ndarray, y_score: np.ndarray) -> Curve:
    """False positive rate (x) against true positive rate (y)."""
    fpr, tpr, thresholds = skm.roc_curve(y_true, y_score)
    keep = _thin(len(fpr))
    # roc_curve's first threshold is +inf, which KFP's metadata cannot store.
    finite = np.minimum(thresholds[keep], 1.0)
    return Curve(fpr[keep].tolist(), tpr[keep].tolist(), finite.tolist())


def pr_curve(y_true: np.ndarray, y_score: np.ndarray) -> Curve:
    """Recall (x) against precision (y)."""
    precision, recall, thresholds = skm.precision_recall_curve(y_true, y_score)
    keep = _thin(len(thresholds))
    return Curve(
        recall[keep].tolist(), precision[keep].tolist(), thresholds[keep].tolist()
    )


def reliability_curve(y_true: np.ndarray, y_score: np.ndarray) -> Curve:
    """Mean predicted probability (x) against the observed positive rate (y) per bin."""
    observed, predicted = calibration_curve(
        y_true, y_score, n_bins=CALIBRATION_BINS, strategy="uniform"
    )
    return Curve(predicted.tolist(), observed.tolist(), [])


def confusion_matrix(
    y_true: np.ndarray, y_score: np.ndarray, *, decision_threshold: float
) -> list[list[int]]:
    """Rows are actual (negative, positive), columns predicted, at the threshold."""
    y_pred = (np.asarray(y_score) >= decision_threshold).astype(int)
    matrix = skm.confusion_matrix(np.asarray(y_true).astype(int), y_pred, labels=[0, 1])
    return matrix.tolist()


@dataclass
class SliceResult:
    """Metrics of the rows that share one value (or bin) of the slice column."""

    value: str
    rows: int
    metrics: dict[str, float]


def slice_groups(
    column: pd.Series, *, max_slices: int, numeric_bins: int = 5
) -> pd.Series:
    """Label each row with its slice: the category, or a quantile bin of a number.

    Categories beyond the `max_slices - 1` most frequent are pooled as `other`;
    missing values form a `missing` slice.
    """
    if pd.api.types.is_numeric_dtype(column) and column.nunique() > max_slices:
        bins = pd.qcut(column, q=numeric_bins, duplicates="drop")
        labels = bins.astype(str)
    else:
        labels = column.astype("string").astype(object)
    labels = labels.where(column.notna(), "missing").astype(str)
    counts = labels.value_counts()
    if len(counts) > max_slices:
        keep = set(counts.index[: max_slices - 1])
        labels = labels.where(labels.isin(keep), "other")
    return labels


def slice_metrics(
    groups: pd.Series,
    y_true: np.ndarray,
    y_score: np.ndarray,
    *,
    task: str,
    decision_threshold: float,
) -> list[SliceResult]:
    """Compute per-slice metrics, largest slice first.

    A metric a slice cannot define (ROC AUC of a single-class slice, recall without
    positives, R2 of one row) is NaN rather than hidden, so the slice still shows.
    """
    results = []
    values = groups.to_numpy()
    for value in groups.value_counts().index:
        mask = values == value
        truth, score = y_true[mask], y_score[mask]
        if task == "regression":
            mse = float(skm.mean_squared_error(truth, score))
            metrics = {
                "rmse": math.sqrt(mse),
                "mae": float(np.mean(np.abs(truth - score))),
            }
            metrics["r2"] = (
                float(skm.r2_score(truth, score)) if len(truth) > 1 else math.nan
            )
        else:
            predicted = score >= decision_threshold
            both = len(np.unique(truth)) == 2
            metrics = {
                "positive_rate": float(truth.mean()),
                "accuracy": float(np.mean(predicted == (truth == 1))),
                "recall": float(predicted[truth == 1].mean())
                if truth.any()
                else math.nan,
                "roc_auc": float(skm.roc_auc_score(truth, score)) if both else math.nan,
            }
        results.append(
            SliceResult(value=str(value), rows=int(mask.sum()), metrics=metrics)
        )
    return results
