"""compute_drift: stable data stays quiet, moved columns are named, edge cases hold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from components.common.config import MonitoringConfig
from components.common.errors import ConfigError
from components.monitoring.drift import compute_drift
from components.preprocess.schema import ColumnSchema, Schema, infer_schema


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


SCHEMA = Schema(
    columns=[
        ColumnSchema("a", "numeric"),
        ColumnSchema("b", "numeric"),
        ColumnSchema("c", "categorical"),
        ColumnSchema("d", "numeric"),
    ],
    target="y",
    task="binary",
)


def _frame(rows: int, *, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "a": rng.normal(shift, 1.0, rows),
            "b": rng.normal(0.0, 1.0, rows),
            "c": rng.choice(["x", "y", "z"], rows),
            "d": rng.uniform(0.0, 10.0, rows),
            "prediction": rng.uniform(0.0, 1.0, rows),
        }
    )


def test_shifted_column_drifts_and_others_do_not() -> None:
    """Only the shifted column drifts; the Report agrees with the direct stattests."""
    reference, current = _frame(3000, seed=0), _frame(1500, seed=1, shift=1.0)
    result = compute_drift(
        reference, current, schema=SCHEMA, config=MonitoringConfig(), run_report=True
    )
    assert result.drifted_column_names == ["a"]
    assert result.drift_share == pytest.approx(0.25)
    assert result.column_drift["a"].method == "Wasserstein distance (normed)"
    assert "> 1,000" in result.defaults
    assert result.prediction_drift is not None and not result.prediction_drift.drifted
    snapshot = result.snapshot.dict()
    (counted,) = [
        metric["value"]
        for metric in snapshot["metrics"]
        if metric["metric_name"].startswith("DriftedColumnsCount")
    ]
    assert counted["count"] == result.drifted_columns
    for metric in snapshot["metrics"]:
        if metric["metric_name"].startswith("ValueDrift(column=a,"):
            # The same stattest on the same rows: equal to float precision.
            assert metric["value"] == pytest.approx(
                result.column_drift["a"].score, rel=1e-9
            )


def test_small_reference_uses_p_value_defaults() -> None:
    """At 1,000 reference rows or fewer Evidently's K-S/chi-square defaults apply."""
    result = compute_drift(
        _frame(500, seed=0),
        _frame(500, seed=1),
        schema=SCHEMA,
        config=MonitoringConfig(),
    )
    assert result.column_drift["a"].method == "K-S p_value"
    assert result.column_drift["c"].method == "chi-square p_value"
    assert result.column_drift["a"].threshold == pytest.approx(0.05)
    assert "<= 1,000" in result.defaults


def test_all_missing_and_constant_columns_give_a_report(tmp_path) -> None:
    """An all-NaN column counts as drifted; a constant one is judged; HTML is written."""
    reference, current = _frame(2000, seed=0), _frame(800, seed=1)
    current["b"] = np.nan
    current["c"] = "x"
    current["d"] = 5.0
    reference.loc[:, "prediction"] = 0.5
    html = tmp_path / "report.html"
    result = compute_drift(
        reference, current, schema=SCHEMA, config=MonitoringConfig(), html_path=html
    )
    assert html.stat().st_size > 10_000
    b, c, d = (result.column_drift[name] for name in "bcd")
    assert b.drifted and b.score is None and b.missing_share == 1.0
    assert c.drifted and "constant" in c.note
    assert d.drifted and d.score is not None
    assert result.to_dict()["column_drift"]["b"]["score"] is None


def test_reference_column_all_missing_is_not_judged() -> None:
    """A column with no reference values gets no verdict instead of an exception."""
    reference, current = _frame(2000, seed=0), _frame(800, seed=1)
    reference["b"] = np.nan
    result = compute_drift(reference, current, schema=SCHEMA, config=MonitoringConfig())
    assert not result.column_drift["b"].drifted
    assert "reference" in result.column_drift["b"].note


def test_configured_stattest_and_unknown_name() -> None:
    """A named stattest is used; an unknown name is a ConfigError saying what to use."""
    config = MonitoringConfig(numerical_stattest="ks", stattest_threshold=0.01)
    result = compute_drift(
        _frame(2000, seed=0), _frame(800, seed=1), schema=SCHEMA, config=config
    )
    assert result.column_drift["a"].method == "K-S p_value"
    assert result.column_drift["a"].threshold == pytest.approx(0.01)
    with pytest.raises(ConfigError, match="no-such-test"):
        compute_drift(
            _frame(2000, seed=0),
            _frame(800, seed=1),
            schema=SCHEMA,
            config=MonitoringConfig(numerical_stattest="no-such-test"),
        )
