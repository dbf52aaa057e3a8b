"""The evaluate step: score the model on the test split and decide the gate."""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from components.common.config import EvaluationConfig
from components.common.model_runtime import load_model
from components.evaluate.metrics import GateVerdict, apply_gate, compute_metrics

logger = logging.getLogger(__name__)

ROC_POINTS = 50


@dataclass
class Evaluation:
    """Metrics, curves and the verdict for one model on one split."""

    metrics: dict[str, float]
    verdict: GateVerdict
    rows: int
    confusion_matrix: list[list[int]] | None = None
    roc_curve: tuple[list[float], list[float], list[float]] | None = None


def evaluate_model(
    model_dir: str | Path, test: pd.DataFrame, config: EvaluationConfig
) -> Evaluation:
    """Score a model directory on raw test rows and apply the gate."""
    model = load_model(model_dir)
    y_true = model.schema.labels(test)
    y_score = model.predict(test)
    metrics = compute_metrics(
        y_true,
        y_score,
        task=model.schema.task,
        decision_threshold=config.decision_threshold,
    )
    verdict = apply_gate(metrics, config.gate.thresholds)
    logger.info(
        "Evaluated on %d test rows: %s; gate %s",
        len(test),
        ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()),
        "passed" if verdict.passed else "FAILED",
    )
    evaluation = Evaluation(metrics=metrics, verdict=verdict, rows=len(test))
    if model.schema.task == "binary":
        y_pred = (y_score >= config.decision_threshold).astype(int)
        evaluation.confusion_matrix = skm.confusion_matrix(
            y_true.astype(int), y_pred, labels=[0, 1]
        ).tolist()
        fpr, tpr, thresholds = skm.roc_curve(y_true, y_score)
        keep = np.unique(np.linspace(0, len(fpr) - 1, ROC_POINTS).astype(int))
        # roc_curve's first threshold is +inf, which KFP's metadata cannot store.
        finite = np.minimum(thresholds[keep], 1.0)
        evaluation.roc_curve = (
            fpr[keep].tolist(),
            tpr[keep].tolist(),
            finite.tolist(),
        )
    return evaluation


def render_report(evaluation: Evaluation, *, title: str) -> str:
    """Render a small, self-contained HTML page with the verdict and the metrics."""
    verdict = "PASSED" if evaluation.verdict.passed else "FAILED"
    colour = "#1a7f37" if evaluation.verdict.passed else "#cf222e"
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{value:.4f}</td></tr>"
        for name, value in evaluation.metrics.items()
    )
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in evaluation.verdict.reasons)
    matrix = ""
    if evaluation.confusion_matrix is not None:
        (tn, fp), (fn, tp) = evaluation.confusion_matrix
        matrix = (
            "<h2>Confusion matrix</h2><table><tr><th></th><th>predicted 0</th>"
            f"<th>predicted 1</th></tr><tr><th>actual 0</th><td>{tn}</td><td>{fp}</td></tr>"
            f"<tr><th>actual 1</th><td>{fn}</td><td>{tp}</td></tr></table>"
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 12px;"
        "border-bottom:1px solid #ddd;text-align:left}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f"<p style='font-size:1.4em;color:{colour}'>Gate {verdict}</p><ul>{reasons}</ul>"
        f"<h2>Metrics on {evaluation.rows} test rows</h2>"
        f"<table><tr><th>metric</th><th>value</th></tr>{rows}</table>{matrix}"
        "</body></html>"
    )
