"""Train / validation / test / production splits, at random or by time."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from components.common.config import SplitConfig
from components.common.errors import DataError

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test", "production")


def split_frame(
    frame: pd.DataFrame,
    config: SplitConfig,
    *,
    stratify: pd.Series | None = None,
    time_column: str | None = None,
) -> dict[str, pd.DataFrame]:
    """Split rows into the four slices; `production` may be empty.

    Raises:
        DataError: A slice the config asks for would get no rows.
    """
    config = config.with_defaults({})
    fractions: dict[str, float] = {
        "validation": config.validation_fraction or 0.0,
        "test": config.test_fraction or 0.0,
        "production": config.production_fraction or 0.0,
    }
    if time_column is not None:
        parts = _split_by_time(frame, fractions, time_column=time_column)
    else:
        parts = _split_at_random(frame, fractions, stratify=stratify, seed=config.seed)

    for name in SPLITS:
        wanted = name == "train" or fractions.get(name, 0.0) > 0
        if wanted and parts[name].empty:
            raise DataError(
                f"the {name} split got no rows from {len(frame)} rows; use more rows or "
                f"adjust data.split fractions (got {fractions})"
            )
    logger.info(
        "Split %d rows: %s",
        len(frame),
        ", ".join(f"{name} {len(parts[name])}" for name in SPLITS),
    )
    return parts


def _split_at_random(
    frame: pd.DataFrame,
    fractions: dict[str, float],
    *,
    stratify: pd.Series | None,
    seed: int,
) -> dict[str, pd.DataFrame]:
    parts: dict[str, pd.DataFrame] = {}
    rest = frame
    remaining = 1.0
    for name in ("production", "test", "validation"):
        share = fractions[name] / remaining
        if fractions[name] == 0:
            parts[name] = frame.iloc[0:0]
            continue
        labels = stratify.loc[rest.index] if stratify is not None else None
        try:
            rest, parts[name] = train_test_split(
                rest, test_size=share, random_state=seed, stratify=labels
            )
        except ValueError as err:
            raise DataError(
                f"cannot split {len(rest)} rows into a {name} share of "
                f"{fractions[name]}: {err}; use more rows, or a larger fraction so "
                "every class reaches each split"
            ) from err
        remaining -= fractions[name]
    parts["train"] = rest
    return {name: parts[name].sort_index() for name in SPLITS}


def _split_by_time(
    frame: pd.DataFrame, fractions: dict[str, float], *, time_column: str
) -> dict[str, pd.DataFrame]:
    # Each distinct time value goes, whole, to the slice holding the midpoint of its
    # share of rows; so months (or days) are never cut between slices.
    counts = frame[time_column].value_counts().sort_index()
    ends = counts.cumsum() / counts.sum()
    midpoints = ends - counts / counts.sum() / 2
    test_end = 1.0 - fractions["production"]
    validation_end = test_end - fractions["test"]
    train_end = validation_end - fractions["validation"]
    edges = np.array([train_end, validation_end, test_end])
    slot = np.searchsorted(edges, midpoints.to_numpy(), side="right")
    assignment = dict(zip(counts.index, slot, strict=True))
    slots = frame[time_column].map(assignment)
    parts = {name: frame.loc[slots == index] for index, name in enumerate(SPLITS)}
    for name in SPLITS:
        values = sorted(pd.unique(parts[name][time_column]).tolist())
        logger.info("%s split: %s in %s", name, time_column, values)
    return parts
