"""Drift monitor benchmark: events ingested per second, seconds per drift computation.

    python -m bench.drift [--quick]

Builds a synthetic model directory (15 numeric + 5 categorical columns, a 50,000-row
reference) and measures, one after another in this process:

- ingestion: `Monitor.ingest` (CloudEvent parse, payload decode with the schema,
  pairing, journal append) for request/response pairs of 1 and of 20 rows, in events/s
  and rows/s. The HTTP layer (uvicorn) is not included.
- drift on a 100,000-row x 20-column window (20,000 with --quick) against the 50,000
  reference rows, three ways:
  1. plain Evidently: `Report([DataDriftPreset()])` on the frames, as users run it;
  2. plumb with `html_reports: true`: the stattests plus the Evidently Report
     (DataDriftPreset, prediction drift, missing values) and its HTML;
  3. plumb with `html_reports: false`: the same Evidently stattests called directly,
     once with the raw reference and once with the reference cleaned beforehand, as
     the monitor does at start (its per-window cost).

Goal: 100k x 20 in <= 10 s. Figures depend on the machine and its load; Evidently is
imported before any timing starts. `--quick` (development, rough figures) ingests 1,000
pairs and checks a 20,000-row window; smaller sizes would save little, as an Evidently
Report costs seconds whatever the rows.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
import uuid
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from components.common.artifacts import REFERENCE_FILE, SCHEMA_FILE, write_table
from components.common.config import MonitoringConfig
from components.monitoring.drift import compute_drift, prepare_reference
from components.monitoring.service import Monitor
from components.preprocess.schema import ColumnSchema, Schema

NUMERIC, CATEGORICAL = 15, 5
REFERENCE_ROWS = 50_000
GOAL_SECONDS = 10.0


def _frame(rows: int, *, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data: dict[str, object] = {
        f"num_{i}": rng.normal(shift if i < 5 else 0.0, 1.0, rows)
        for i in range(NUMERIC)
    }
    for i in range(CATEGORICAL):
        data[f"cat_{i}"] = rng.choice([f"v{j}" for j in range(8 + i)], rows)
    data["prediction"] = rng.uniform(0.0, 1.0, rows)
    return pd.DataFrame(data)


def _schema() -> Schema:
    return Schema(
        columns=[ColumnSchema(f"num_{i}", "numeric") for i in range(NUMERIC)]
        + [ColumnSchema(f"cat_{i}", "categorical") for i in range(CATEGORICAL)],
        target="y",
        task="regression",
    )


def _headers(kind: str, event_id: str) -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-type": f"org.kubeflow.serving.inference.{kind}",
        "ce-source": "http://localhost:9081/",
        "ce-inferenceservicename": "bench",
        "ce-namespace": "plumb",
        "ce-component": "predictor",
        "ce-endpoint": "default",
        "content-type": "application/json",
    }


def bench_ingest(root: Path, *, pairs: int, rows_per_event: int) -> tuple[float, float]:
    """Return (events/s, rows/s) of `Monitor.ingest` for request/response pairs."""
    model_dir, state_dir = root / "model", root / f"state-{rows_per_event}"
    config = MonitoringConfig(window_rows=10**9, min_window_rows=1)
    monitor = Monitor(model_dir=model_dir, state_dir=state_dir, config=config)
    sample = _frame(rows_per_event, seed=3).drop(columns="prediction")
    request = json.dumps({"instances": json.loads(sample.to_json(orient="records"))})
    response = json.dumps({"predictions": [0.5] * rows_per_event})
    bodies = [request.encode(), response.encode()]
    ids = [str(uuid.uuid4()) for _ in range(pairs)]
    started = time.perf_counter()
    for event_id in ids:
        monitor.ingest(_headers("request", event_id), bodies[0])
        monitor.ingest(_headers("response", event_id), bodies[1])
    seconds = time.perf_counter() - started
    events = 2 * pairs
    return events / seconds, pairs * rows_per_event / seconds


def bench_drift(rows: int) -> dict[str, float]:
    """Seconds for one drift computation, three ways, on the same frames."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    reference, current = _frame(REFERENCE_ROWS, seed=0), _frame(rows, seed=1, shift=0.3)
    schema = _schema()
    seconds = {}

    started = time.perf_counter()
    definition = DataDefinition(
        numerical_columns=[f"num_{i}" for i in range(NUMERIC)] + ["prediction"],
        categorical_columns=[f"cat_{i}" for i in range(CATEGORICAL)],
    )
    Report([DataDriftPreset()]).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    seconds["plain Evidently DataDriftPreset Report"] = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        compute_drift(
            reference,
            current,
            schema=schema,
            config=MonitoringConfig(),
            html_path=Path(folder) / "report.html",
        )
        seconds["plumb, html_reports: true (Report + HTML)"] = (
            time.perf_counter() - started
        )

    started = time.perf_counter()
    result = compute_drift(reference, current, schema=schema, config=MonitoringConfig())
    seconds["plumb, html_reports: false (stattests)"] = time.perf_counter() - started

    # The monitor cleans its reference once at start; each window then costs this.
    prepared = prepare_reference(reference, schema=schema, config=MonitoringConfig())
    started = time.perf_counter()
    compute_drift(prepared, current, schema=schema, config=MonitoringConfig())
    seconds["plumb, html_reports: false, reference prepared"] = (
        time.perf_counter() - started
    )
    assert result.drifted_columns >= 5, "the shifted columns must be found"
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="20,000 rows, 1,000 pairs: rough figures, for development",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    import evidently.presets  # noqa: F401  (imported before timing)

    rows = 20_000 if args.quick else 100_000
    pairs = 1000 if args.quick else 5000
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "model").mkdir()
        _schema().save(root / "model" / SCHEMA_FILE)
        write_table(
            _frame(REFERENCE_ROWS, seed=0).drop(columns="prediction"),
            root / "model" / REFERENCE_FILE,
        )
        print(f"Ingestion ({pairs} request/response pairs, Monitor.ingest in-process)")
        for rows_per_event in (1, 20):
            events, row_rate = bench_ingest(
                root, pairs=pairs, rows_per_event=rows_per_event
            )
            print(
                f"  {rows_per_event:>2} rows/event: {events:8.0f} events/s, "
                f"{row_rate:9.0f} rows/s"
            )

    print(
        f"Drift, {rows:,} rows x {NUMERIC + CATEGORICAL} columns vs {REFERENCE_ROWS:,}"
    )
    seconds = bench_drift(rows)
    baseline = seconds["plain Evidently DataDriftPreset Report"]
    for name, value in seconds.items():
        print(
            f"  {name:<45} {value:6.2f} s  ({baseline / value:4.1f}x plain Evidently)"
        )
    fastest = min(seconds.values())
    verdict = "met" if fastest <= GOAL_SECONDS else "NOT met"
    if args.quick:
        verdict = "not judged (--quick: rough figures on a smaller window)"
    print(
        f"Goal <= {GOAL_SECONDS:.0f} s for the monitor's drift computation: {verdict}"
    )
    print(
        "  html_reports: true "
        f"{seconds['plumb, html_reports: true (Report + HTML)']:.2f} s, "
        f"html_reports: false {seconds['plumb, html_reports: false (stattests)']:.2f} s"
        f" ({seconds['plumb, html_reports: false, reference prepared']:.2f} s per window"
        " with the reference prepared once)"
    )


if __name__ == "__main__":
    main()
