"""Batch drift through Evidently: stable data stays quiet, moved columns are named."""

import numpy as np
import pandas as pd

from components.common.config import MonitoringConfig
from components.monitoring.drift import compute_drift
from components.preprocess.schema import infer_schema


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    rows = 3000
    reference = pd.DataFrame(
        {
            "distance": rng.normal(1000, 200, rows),
            "hour": rng.integers(5, 23, rows),
            "carrier": rng.choice(["AA", "UA", "DL"], rows),
            "y": rng.choice(["a", "b"], rows),
        }
    )
    current = reference.sample(frac=1.0, random_state=1).reset_index(drop=True)
    return reference, current


def test_same_distribution_reports_no_drift() -> None:
    """A shuffled copy of the reference drifts on no column."""
    reference, current = _frames()
    schema = infer_schema(
        reference, features=["distance", "hour", "carrier"], target="y", task="binary"
    )
    result = compute_drift(reference, current, schema=schema, config=MonitoringConfig())
    assert result.drifted_columns == 0
    assert not result.drifted
    assert set(result.column_scores) == {"distance", "hour", "carrier"}


def test_shifted_columns_are_reported() -> None:
    """Shifting two of three columns drifts exactly those two and the dataset."""
    reference, current = _frames()
    current["distance"] += 600  # three reference standard deviations
    current["carrier"] = "ZZ"
    schema = infer_schema(
        reference, features=["distance", "hour", "carrier"], target="y", task="binary"
    )
    result = compute_drift(reference, current, schema=schema, config=MonitoringConfig())
    assert result.drifted_columns == 2
    assert result.drift_share == 2 / 3
    assert result.drifted
    # Default methods above 1,000 reference rows are distances with threshold 0.1.
    assert result.column_scores["distance"] > 0.1
    assert result.column_scores["hour"] < 0.1
