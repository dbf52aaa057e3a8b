"""Data drift between reference (training) rows and current (production) rows.

One function, `compute_drift`, wraps Evidently's `DataDriftPreset` so the pipeline's
monitor step, `plumb drift` and the drift monitor service all judge drift the same way.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

from components.common.config import MonitoringConfig
from components.preprocess.schema import Schema

logger = logging.getLogger(__name__)


@dataclass
class DriftResult:
    """The dataset-level verdict and each column's score."""

    drifted: bool
    drift_share: float
    drifted_columns: int
    columns: int
    column_scores: dict[str, float] = field(default_factory=dict)
    reference_rows: int = 0
    current_rows: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compute_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    schema: Schema,
    config: MonitoringConfig,
    html_path: str | Path | None = None,
    seed: int = 0,
) -> DriftResult:
    """Compare current rows with reference rows column by column.

    Args:
        reference: Rows the model was trained on.
        current: Rows to check.
        schema: The training schema; its columns and kinds drive the comparison.
        config: Drift share and per-column threshold.
        html_path: Where to write Evidently's HTML report, if anywhere.
        seed: Seed of the reference sample.
    """
    started = time.perf_counter()
    if len(reference) > config.max_reference_rows:
        reference = reference.sample(n=config.max_reference_rows, random_state=seed)
    definition = DataDefinition(
        numerical_columns=[c.name for c in schema.columns if c.kind == "numeric"],
        categorical_columns=[c.name for c in schema.columns if c.kind == "categorical"],
    )
    columns = schema.feature_names
    report = Report(
        [
            DataDriftPreset(
                drift_share=config.drift_share, threshold=config.stattest_threshold
            )
        ]
    )
    snapshot = report.run(
        current_data=Dataset.from_pandas(
            _prepare(current, schema), data_definition=definition
        ),
        reference_data=Dataset.from_pandas(
            _prepare(reference, schema), data_definition=definition
        ),
    )
    if html_path is not None:
        snapshot.save_html(str(html_path))

    count, share, scores = _read_snapshot(snapshot.dict(), columns)
    result = DriftResult(
        drifted=share >= config.drift_share,
        drift_share=share,
        drifted_columns=count,
        columns=len(columns),
        column_scores=scores,
        reference_rows=len(reference),
        current_rows=len(current),
        seconds=time.perf_counter() - started,
    )
    logger.info(
        "Drift: %d of %d columns drifted (share %.2f, dataset %s) on %d vs %d rows in %.1f s",
        count,
        len(columns),
        share,
        "drifted" if result.drifted else "stable",
        len(current),
        len(reference),
        result.seconds,
    )
    return result


def _prepare(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    prepared = pd.DataFrame(index=frame.index)
    for column in schema.columns:
        values = frame[column.name]
        if column.kind == "numeric":
            prepared[column.name] = pd.to_numeric(values, errors="coerce").astype(
                "float64"
            )
        else:
            prepared[column.name] = values.astype("string").astype(object)
    return prepared.reset_index(drop=True)


def _read_snapshot(
    data: dict[str, Any], columns: list[str]
) -> tuple[int, float, dict[str, float]]:
    # Each metric carries its config: {"type": "evidently:metric_v2:<Name>", "column": ...}.
    count, share = 0, 0.0
    scores: dict[str, float] = {}
    for metric in data.get("metrics", []):
        config = metric.get("config", {})
        kind = str(config.get("type", "")).rsplit(":", 1)[-1]
        value = metric.get("value")
        if kind == "DriftedColumnsCount" and isinstance(value, dict):
            count, share = int(value["count"]), float(value["share"])
        elif kind == "ValueDrift" and config.get("column") in columns:
            if isinstance(value, int | float):
                scores[str(config["column"])] = float(value)
    return count, share, scores
