"""Model quality metrics and the pass/fail gate."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from sklearn import metrics as skm

from components.common.errors import PlumbError

CLASSIFICATION_METRICS = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "log_loss",
)
REGRESSION_METRICS = ("mse", "rmse", "mae", "r2")
# For these, smaller is better: a gate threshold is a maximum.
LOWER_IS_BETTER = frozenset({"log_loss", "mse", "rmse", "mae"})


def check_gate_metrics(thresholds: dict[str, float], *, task: str) -> None:
    """Fail before any work when the gate names a metric the task does not compute.

    Raises:
        PlumbError: A threshold names an unknown metric.
    """
    known = CLASSIFICATION_METRICS if task == "binary" else REGRESSION_METRICS
    unknown = sorted(set(thresholds) - set(known))
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

    Raises:
        PlumbError: Predictions hold NaN, or the labels hold a single class.
    """
    if not np.isfinite(y_score).all():
        raise PlumbError(
            f"predictions hold {int((~np.isfinite(y_score)).sum())} NaN or infinite "
            "values; the model is broken, retrain it"
        )
    if task == "regression":
        mse = float(skm.mean_squared_error(y_true, y_score))
        return {
            "mse": mse,
            "rmse": math.sqrt(mse),
            "mae": float(skm.mean_absolute_error(y_true, y_score)),
            "r2": float(skm.r2_score(y_true, y_score)),
        }
    if len(np.unique(y_true)) < 2:
        raise PlumbError(
            "the test split holds a single class; ROC AUC needs both, so use more rows "
            "or a larger data.split.test_fraction"
        )
    y_pred = (y_score >= decision_threshold).astype(int)
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "precision": float(skm.precision_score(y_true, y_pred, zero_division=0)),
        "recall": float(skm.recall_score(y_true, y_pred, zero_division=0)),
        "f1": float(skm.f1_score(y_true, y_pred, zero_division=0)),
        "roc_auc": float(skm.roc_auc_score(y_true, y_score)),
        "log_loss": float(skm.log_loss(y_true, np.clip(y_score, 1e-7, 1 - 1e-7))),
    }


@dataclass
class GateVerdict:
    """Whether the model may ship, and why."""

    passed: bool
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def apply_gate(metrics: dict[str, float], thresholds: dict[str, float]) -> GateVerdict:
    """Compare metrics with the gate's thresholds; every check gives a reason.

    Raises:
        PlumbError: The gate names a metric this task does not compute.
    """
    unknown = sorted(set(thresholds) - set(metrics))
    if unknown:
        raise PlumbError(
            f"evaluation.gate.thresholds names unknown metric {unknown[0]!r}; "
            f"this task computes {sorted(metrics)}"
        )
    reasons = []
    passed = True
    for name, threshold in sorted(thresholds.items()):
        value = metrics[name]
        if name in LOWER_IS_BETTER:
            ok = value <= threshold
            relation = "<=" if ok else ">"
        else:
            ok = value >= threshold
            relation = ">=" if ok else "<"
        passed = passed and ok
        status = "pass" if ok else "FAIL"
        reasons.append(f"{status}: {name} {value:.4f} {relation} {threshold:.4f}")
    return GateVerdict(passed=passed, reasons=reasons)
