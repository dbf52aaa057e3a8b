"""Global permutation importance on the raw, human-named columns.

A column's importance is how much the task's primary metric (ROC AUC for `binary`, R2
for `regression`) drops when that column's values are shuffled across rows, breaking
its link to the target while keeping its distribution. The shuffle happens on raw rows
before the model's own transform, so a one-hot encoded category counts as one column,
named as the user knows it. Per-row attributions live in explain.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from components.evaluate.metrics import check_predictions, primary_score

logger = logging.getLogger(__name__)


@dataclass
class FeatureImportance:
    """The drop of the primary metric when one column is shuffled."""

    column: str
    importance: float
    """Mean drop over the repeats (> 0: the model relies on the column)."""
    std: float
    """Standard deviation of the drop over the repeats."""


def sample_rows(
    frame: pd.DataFrame, y_true: np.ndarray, *, task: str, max_rows: int, seed: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """Return at most `max_rows` seeded rows; `binary` keeps both classes' shares."""
    if len(frame) <= max_rows:
        return frame.reset_index(drop=True), y_true
    rng = np.random.default_rng(seed)
    if task == "regression":
        index = rng.choice(len(frame), size=max_rows, replace=False)
    else:
        fraction = max_rows / len(frame)
        chosen = []
        for label in np.unique(y_true):
            members = np.flatnonzero(y_true == label)
            count = min(len(members), max(1, round(len(members) * fraction)))
            chosen.append(rng.choice(members, size=count, replace=False))
        index = np.concatenate(chosen)
    index = np.sort(index)
    return frame.iloc[index].reset_index(drop=True), y_true[index]


def permutation_importance(
    predict: Callable[[pd.DataFrame], np.ndarray],
    frame: pd.DataFrame,
    y_true: np.ndarray,
    *,
    task: str,
    columns: list[str],
    repeats: int = 5,
    seed: int = 0,
) -> list[FeatureImportance]:
    """Rank raw columns by how much shuffling each one hurts the primary metric.

    Args:
        predict: Raw rows in, one prediction per row out (a loaded model's `predict`).
        frame: Raw rows holding every column in `columns`.
        y_true: Labels of `frame`'s rows.
        task: `binary` or `regression`.
        columns: The raw feature columns to shuffle.
        repeats: Shuffles per column; the importance is their mean drop.
        seed: Seed of the shuffles.

    Returns:
        One entry per column, most important first.
    """
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    y_true = np.asarray(y_true, dtype=np.float64)
    predictions = predict(frame)
    check_predictions(y_true, predictions, task=task)
    base = primary_score(y_true, predictions, task=task)
    results = []
    for column in columns:
        drops = []
        for _ in range(repeats):
            shuffled = frame.copy()
            shuffled[column] = rng.permutation(frame[column].to_numpy())
            predictions = predict(shuffled)
            check_predictions(y_true, predictions, task=task)
            drops.append(base - primary_score(y_true, predictions, task=task))
        results.append(
            FeatureImportance(
                column=column,
                importance=float(np.mean(drops)),
                std=float(np.std(drops)),
            )
        )
    results.sort(key=lambda item: item.importance, reverse=True)
    logger.info(
        "Permutation importance of %d columns x %d repeats on %d rows in %.1f s; "
        "top: %s",
        len(columns),
        repeats,
        len(frame),
        time.perf_counter() - started,
        ", ".join(f"{r.column} {r.importance:.4f}" for r in results[:3]),
    )
    return results
