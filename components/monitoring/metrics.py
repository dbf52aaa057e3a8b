"""The monitor's Prometheus metrics, all prefixed `plumb_` (listed in docs/monitoring.md).

Each monitor owns a registry, so tests and benchmarks can build several in one process.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

WINDOW = ("inference_service", "endpoint")


class MonitorMetrics:
    """Counters of events and gauges of the latest window per endpoint."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_received = Counter(
            "plumb_events_received",
            "Logger events received, by CloudEvent kind (request/response).",
            ["kind"],
            registry=r,
        )
        self.events_rejected = Counter(
            "plumb_events_rejected",
            "Events refused or skipped, by reason.",
            ["reason"],
            registry=r,
        )
        self.events_unpaired = Counter(
            "plumb_events_unpaired",
            "Requests or responses whose partner did not arrive in time.",
            ["kind"],
            registry=r,
        )
        self.rows_ingested = Counter(
            "plumb_rows_ingested",
            "Rows added to windows.",
            WINDOW,
            registry=r,
        )
        self.window_rows = Gauge(
            "plumb_window_rows",
            "Rows in the open window.",
            WINDOW,
            registry=r,
        )
        self.windows_closed = Counter(
            "plumb_windows_closed",
            "Windows reported on.",
            WINDOW,
            registry=r,
        )
        self.drift_share = Gauge(
            "plumb_drift_share",
            "Share of drifted feature columns in the latest window.",
            WINDOW,
            registry=r,
        )
        self.drifted_columns = Gauge(
            "plumb_drifted_columns",
            "Drifted feature columns in the latest window.",
            WINDOW,
            registry=r,
        )
        self.dataset_drift = Gauge(
            "plumb_dataset_drift",
            "1 when the latest window's drift share reached the configured drift_share.",
            WINDOW,
            registry=r,
        )
        self.column_drift_score = Gauge(
            "plumb_column_drift_score",
            "Stattest score (p-value or distance) of each column in the latest window.",
            [*WINDOW, "column"],
            registry=r,
        )
        self.column_drifted = Gauge(
            "plumb_column_drifted",
            "1 when the column drifted in the latest window.",
            [*WINDOW, "column"],
            registry=r,
        )
        self.missing_share = Gauge(
            "plumb_missing_share",
            "Share of missing values of each column in the latest window.",
            [*WINDOW, "column"],
            registry=r,
        )
        self.prediction_drift_score = Gauge(
            "plumb_prediction_drift_score",
            "Stattest score of the model's predictions in the latest window.",
            WINDOW,
            registry=r,
        )
        self.model_quality = Gauge(
            "plumb_model_quality",
            "Model quality on the labelled rows of the latest labelled window.",
            [*WINDOW, "metric"],
            registry=r,
        )
        self.labelled_rows = Gauge(
            "plumb_labelled_rows",
            "Rows with a feedback label in the latest labelled window.",
            WINDOW,
            registry=r,
        )
        self.feedback_labels = Counter(
            "plumb_feedback_labels",
            "Labels received on /feedback.",
            registry=r,
        )
        self.consecutive_drifted = Gauge(
            "plumb_consecutive_drifted_windows",
            "Drifted windows in a row, as the retraining trigger counts them.",
            WINDOW,
            registry=r,
        )
        self.retrain_triggers = Counter(
            "plumb_retrain_triggers",
            "Retraining triggers, by action and outcome (fired, dry_run, error).",
            [*WINDOW, "action", "outcome"],
            registry=r,
        )
        self.window_latency = Histogram(
            "plumb_window_latency_seconds",
            "Seconds from a window closing to its report being written.",
            registry=r,
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
        )
        self.last_window_timestamp = Gauge(
            "plumb_last_window_timestamp_seconds",
            "Unix time the latest window of the endpoint closed.",
            WINDOW,
            registry=r,
        )
        self.pending_events = Gauge(
            "plumb_pending_events",
            "Events waiting for their request or response.",
            registry=r,
        )
