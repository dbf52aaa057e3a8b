"""Data drift between reference (training) rows and current (production) rows.

One function, `compute_drift`, judges drift so that the pipeline's monitor step,
`plumb drift` and the drift monitor service (`plumb monitor`) agree. Each column is
compared with the stattest Evidently's `DataDriftPreset` would pick (or the one the
config names), called directly; when an HTML report is asked for, the same comparison
also runs as an Evidently `Report` (`DataDriftPreset`, prediction drift, missing values)
whose HTML and snapshot are kept. The direct call skips the Report's plots, which take
most of its time on large windows (see `bench/drift.py`).

Evidently's defaults change with the size of the reference: at 1,000 rows or fewer
numeric columns use the K-S test and categorical columns chi-square (z-test for two
values), judged on p-value < 0.05; above 1,000 rows they use the normed Wasserstein
distance and the Jensen-Shannon distance, judged on distance >= 0.1. Columns with five
distinct values or fewer count as categorical for that choice. `DriftResult.defaults`
says which applied.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.common.config import MonitoringConfig
from components.common.errors import ConfigError
from components.preprocess.schema import Schema

logger = logging.getLogger(__name__)

PREDICTION_COLUMN = "prediction"
"""Column of a window that holds the model's prediction (probability or value)."""
EVIDENTLY_SMALL_REFERENCE_ROWS = 1000
"""Evidently switches from p-value tests to distances above this many reference rows."""


@dataclass
class ColumnDrift:
    """One column's comparison: the stattest, its score and the verdict."""

    column: str
    kind: str
    method: str
    threshold: float | None
    score: float | None
    drifted: bool
    missing_share: float
    reference_missing_share: float
    note: str = ""


@dataclass
class DriftResult:
    """The dataset-level verdict, each column's comparison and the missing values."""

    drifted: bool
    drift_share: float
    drifted_columns: int
    columns: int
    column_scores: dict[str, float] = field(default_factory=dict)
    reference_rows: int = 0
    current_rows: int = 0
    seconds: float = 0.0
    column_drift: dict[str, ColumnDrift] = field(default_factory=dict)
    prediction_drift: ColumnDrift | None = None
    missing_shares: dict[str, float] = field(default_factory=dict)
    defaults: str = ""
    snapshot: Any = field(default=None, repr=False, compare=False)
    """The Evidently snapshot, when a Report ran (not serialised by `to_dict`)."""

    @property
    def drifted_column_names(self) -> list[str]:
        return [name for name, item in self.column_drift.items() if item.drifted]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("snapshot")
        return _finite(data)


@dataclass
class PreparedReference:
    """Reference rows cleaned once for many comparisons (the monitor's windows)."""

    data: pd.DataFrame
    kinds: dict[str, str]
    distinct: dict[str, int]
    """Distinct non-missing values per column, capped at 6 (all the default needs)."""


def prepare_reference(
    reference: pd.DataFrame, *, schema: Schema, config: MonitoringConfig, seed: int = 0
) -> PreparedReference:
    """Sample and clean the reference rows once, for repeated `compute_drift` calls."""
    if len(reference) > config.max_reference_rows:
        reference = reference.sample(n=config.max_reference_rows, random_state=seed)
    kinds: dict[str, str] = {column.name: column.kind for column in schema.columns}
    if PREDICTION_COLUMN in reference:
        kinds[PREDICTION_COLUMN] = "numeric"
    data = _prepare(reference, kinds)
    distinct = {name: _distinct(data[name].dropna(), cap=6) for name in kinds}
    return PreparedReference(data=data, kinds=kinds, distinct=distinct)


def compute_drift(
    reference: pd.DataFrame | PreparedReference,
    current: pd.DataFrame,
    *,
    schema: Schema,
    config: MonitoringConfig,
    html_path: str | Path | None = None,
    seed: int = 0,
    run_report: bool | None = None,
) -> DriftResult:
    """Compare current rows with reference rows column by column.

    A `prediction` column present in both frames is compared too (prediction drift)
    but does not count towards the drift share. All-missing and constant columns give
    a verdict, not an exception: a column missing everywhere in the current rows
    counts as drifted (the feature stopped arriving), one missing everywhere in the
    reference is not judged.

    Args:
        reference: Rows the model was trained on.
        current: Rows to check.
        schema: The training schema; its columns and kinds drive the comparison.
        config: Drift share, stattests and per-column threshold.
        html_path: Where to write Evidently's HTML report, if anywhere.
        seed: Seed of the reference sample.
        run_report: Run the Evidently Report (for its HTML and snapshot) even without
            `html_path`; None runs it only when `html_path` is given.

    Returns:
        The verdict; `snapshot` holds the Evidently snapshot when the Report ran.

    Raises:
        ConfigError: The config names a stattest Evidently does not know.
    """
    started = time.perf_counter()
    if not isinstance(reference, PreparedReference):
        reference = prepare_reference(
            reference, schema=schema, config=config, seed=seed
        )
    columns = schema.feature_names
    kinds = dict(reference.kinds)
    if PREDICTION_COLUMN not in current or current[PREDICTION_COLUMN].isna().all():
        # No predictions at all (unpaired requests only): nothing to compare.
        kinds.pop(PREDICTION_COLUMN, None)
    reference_data = reference.data
    current_data = _prepare(current, kinds)

    # Compare: one Evidently stattest per column.
    compared = {
        name: _compare_column(
            reference_data[name],
            current_data[name],
            name=name,
            kind=kind,
            config=config,
            reference_distinct=reference.distinct[name],
        )
        for name, kind in kinds.items()
    }
    features = {name: compared[name] for name in columns}
    count = sum(item.drifted for item in features.values())
    share = count / len(columns) if columns else 0.0

    snapshot = None
    if html_path is not None or run_report:
        snapshot = _run_report(
            reference_data[list(kinds)], current_data, kinds=kinds, config=config
        )
        if html_path is not None:
            snapshot.save_html(str(html_path))

    result = DriftResult(
        drifted=share >= config.drift_share,
        drift_share=share,
        drifted_columns=count,
        columns=len(columns),
        column_scores={
            name: item.score
            for name, item in features.items()
            if item.score is not None
        },
        reference_rows=len(reference_data),
        current_rows=len(current_data),
        seconds=time.perf_counter() - started,
        column_drift=features,
        prediction_drift=compared.get(PREDICTION_COLUMN),
        missing_shares={name: item.missing_share for name, item in compared.items()},
        defaults=_describe_defaults(len(reference_data), config),
        snapshot=snapshot,
    )
    logger.info(
        "Drift: %d of %d columns drifted (share %.2f, dataset %s) on %d vs %d rows in %.1f s",
        count,
        len(columns),
        share,
        "drifted" if result.drifted else "stable",
        len(current_data),
        len(reference_data),
        result.seconds,
    )
    return result


def _prepare(frame: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    prepared = {}
    for name, kind in kinds.items():
        values = frame[name] if name in frame else pd.Series(np.nan, index=frame.index)
        if kind == "numeric":
            numbers = pd.to_numeric(values, errors="coerce").astype("float64")
            prepared[name] = numbers.replace([np.inf, -np.inf], np.nan)
        else:
            text = values.astype("string").astype(object)
            prepared[name] = text.where(values.notna(), None)
    return pd.DataFrame(prepared).reset_index(drop=True)


def _compare_column(
    reference: pd.Series,
    current: pd.Series,
    *,
    name: str,
    kind: str,
    config: MonitoringConfig,
    reference_distinct: int,
) -> ColumnDrift:
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    missing = float(current.isna().mean()) if len(current) else 0.0
    reference_missing = float(reference.isna().mean()) if len(reference) else 0.0
    present, reference_present = current.dropna(), reference.dropna()

    def verdict(
        method: str,
        threshold: float | None,
        score: float | None,
        drifted: bool,
        note: str,
    ) -> ColumnDrift:
        return ColumnDrift(
            column=name,
            kind=kind,
            method=method,
            threshold=threshold,
            score=score,
            drifted=drifted,
            missing_share=missing,
            reference_missing_share=reference_missing,
            note=note,
        )

    if reference_present.empty:
        return verdict("none", None, None, False, "all values missing in the reference")
    if present.empty:
        return verdict(
            "none", None, None, True, "all values missing in the current rows"
        )

    column_type = ColumnType.Numerical if kind == "numeric" else ColumnType.Categorical
    method = (
        config.numerical_stattest if kind == "numeric" else config.categorical_stattest
    )
    try:
        stattest = (
            get_stattest(reference_present, present, column_type, method)
            if method is not None
            else _default_stattest(
                reference_present,
                present,
                kind=kind,
                reference_distinct=reference_distinct,
            )
        )
    except ValueError as err:
        raise ConfigError(
            f"unknown {kind} stattest {method!r} in monitoring config: {err}; use an "
            "Evidently stattest name such as wasserstein, ks, psi, jensenshannon, "
            "chisquare"
        ) from err
    outcome = stattest(
        reference_present, present, column_type, config.stattest_threshold
    )
    note = "constant in the current rows" if _distinct(present, cap=2) == 1 else ""
    return verdict(
        stattest.display_name,
        float(outcome.actual_threshold),
        float(outcome.drift_score),
        bool(outcome.drifted),
        note,
    )


def _default_stattest(
    reference: pd.Series, current: pd.Series, *, kind: str, reference_distinct: int
) -> Any:
    """The stattest Evidently's DataDriftPreset picks when none is configured.

    The same rule as Evidently's `_get_default_stattest`, without its two `nunique`
    passes over reference and current rows per column: the distinct count matters
    only up to 5, so the cached reference count settles it whenever the reference
    alone has more than 5 values.
    """
    from evidently.legacy.calculations import stattests

    def distinct_values() -> int:
        if reference_distinct > 5:
            return reference_distinct
        return _distinct(pd.concat([reference, current]), cap=6)

    if len(reference) <= EVIDENTLY_SMALL_REFERENCE_ROWS:
        if kind == "numeric" and distinct_values() > 5:
            return stattests.ks_stat_test
        return (
            stattests.chi_stat_test if distinct_values() > 2 else stattests.z_stat_test
        )
    if kind == "numeric" and distinct_values() > 5:
        return stattests.wasserstein_stat_test
    return stattests.jensenshannon_stat_test


def _distinct(values: pd.Series, *, cap: int) -> int:
    # Distinct values, counted only up to `cap`: a sample settles most columns.
    head = values.iloc[:2000]
    count = int(head.nunique())
    if count >= cap:
        return cap
    return min(int(values.nunique()), cap)


def _run_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    kinds: dict[str, str],
    config: MonitoringConfig,
) -> Any:
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import MissingValueCount, ValueDrift
    from evidently.presets import DataDriftPreset

    # Evidently raises on a column that is empty on either side; such columns are
    # judged by `_compare_column` and left out of the Report's drift metrics.
    judged = [
        name
        for name in kinds
        if current[name].notna().any() and reference[name].notna().any()
    ]
    features = [name for name in judged if name != PREDICTION_COLUMN]
    definition = DataDefinition(
        numerical_columns=[name for name, kind in kinds.items() if kind == "numeric"],
        categorical_columns=[
            name for name, kind in kinds.items() if kind == "categorical"
        ],
    )
    items: list[Any] = [
        DataDriftPreset(
            columns=features,
            drift_share=config.drift_share,
            num_method=config.numerical_stattest,
            cat_method=config.categorical_stattest,
            threshold=config.stattest_threshold,
        )
    ]
    if PREDICTION_COLUMN in judged:
        items.append(
            ValueDrift(
                column=PREDICTION_COLUMN,
                method=config.numerical_stattest,
                threshold=config.stattest_threshold,
            )
        )
    items.extend(MissingValueCount(column=name) for name in kinds)
    return Report(items).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )


def _describe_defaults(reference_rows: int, config: MonitoringConfig) -> str:
    chosen = []
    if config.numerical_stattest:
        chosen.append(f"numeric columns: {config.numerical_stattest}")
    if config.categorical_stattest:
        chosen.append(f"categorical columns: {config.categorical_stattest}")
    if reference_rows <= EVIDENTLY_SMALL_REFERENCE_ROWS:
        default = (
            f"Evidently defaults for {reference_rows} reference rows (<= 1,000): K-S "
            "for numeric, chi-square (z-test for 2 values) for categorical; drift when "
            "p-value < 0.05"
        )
    else:
        default = (
            f"Evidently defaults for {reference_rows} reference rows (> 1,000): normed "
            "Wasserstein distance for numeric, Jensen-Shannon distance for categorical; "
            "drift when distance >= 0.1"
        )
    if config.stattest_threshold is not None:
        default += f" (threshold overridden to {config.stattest_threshold})"
    return "; ".join([*chosen, default]) if chosen else default


def _finite(value: Any) -> Any:
    # JSON has no NaN; a score Evidently could not compute becomes null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value
