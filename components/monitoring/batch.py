"""Batch drift (`plumb drift`): the monitor's window report for two files."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from components.common.artifacts import METADATA_FILE, SCHEMA_FILE
from components.common.config import MonitoringConfig
from components.common.errors import PlumbError
from components.monitoring.drift import PREDICTION_COLUMN, compute_drift
from components.preprocess.datasets import read_file
from components.preprocess.schema import Schema, validate_frame

logger = logging.getLogger(__name__)

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"


def drift_report(
    *,
    reference_path: str | Path,
    current_path: str | Path,
    output_dir: str | Path,
    config: MonitoringConfig,
    schema_path: str | Path | None = None,
    model_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Compare two tables and write `report.json` (and `report.html`) to `output_dir`.

    The schema comes from `schema_path` or `<model_dir>/schema.json`; with a model
    directory that holds a model, both tables are also scored and the predictions
    compared (prediction drift).

    Raises:
        PlumbError: No schema given, a file is unreadable, or a table lacks a column.
    """
    if schema_path is None and model_dir is not None:
        schema_path = Path(model_dir) / SCHEMA_FILE
    if schema_path is None:
        raise PlumbError(
            "no schema: pass --schema schema.json or --model-dir with a plumb model "
            "directory"
        )
    if not Path(schema_path).is_file():
        raise PlumbError(f"schema file not found: {str(schema_path)!r}; check the path")
    schema = Schema.load(schema_path)
    reference, current = read_file(reference_path), read_file(current_path)
    for name, frame in (("reference", reference), ("current", current)):
        try:
            validate_frame(frame, schema)
        except PlumbError as err:
            raise PlumbError(f"{name} file {str(name)!r}: {err}") from err
    if model_dir is not None and (Path(model_dir) / METADATA_FILE).is_file():
        from components.common.model_runtime import load_model

        model = load_model(model_dir)
        reference[PREDICTION_COLUMN] = model.predict(reference)
        current[PREDICTION_COLUMN] = model.predict(current)

    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    result = compute_drift(
        reference,
        current,
        schema=schema,
        config=config,
        html_path=output / REPORT_HTML if config.html_reports else None,
    )
    report = {
        "reference": str(reference_path),
        "current": str(current_path),
        "created_at": time.time(),
        "rows": len(current),
        "drift_share": result.drift_share,
        "drifted": result.drifted,
        "drifted_column_names": result.drifted_column_names,
        "prediction_drift_score": (
            result.prediction_drift.score if result.prediction_drift else None
        ),
        "drift": result.to_dict(),
        "evidently": result.snapshot.dict() if result.snapshot is not None else None,
    }
    (output / REPORT_JSON).write_text(
        json.dumps(report, indent=1, default=str), encoding="utf-8"
    )
    logger.info("Wrote the drift report to %s", output)
    return report
