"""The drift monitor: KServe logger events in; drift reports, metrics and triggers out.

`Monitor` holds the state (the model's schema and reference rows, open windows, the
pairer, labels, reports, the retraining trigger) and a worker thread that reports on
closed windows, so a slow Evidently run never holds up `/events`. `build_app` puts it
behind HTTP with FastAPI; `serve` runs that with uvicorn. Bad input maps to HTTP codes
in one place, `_error_response`.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import os
import queue
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from components.common.artifacts import (
    METADATA_FILE,
    REFERENCE_FILE,
    SCHEMA_FILE,
    read_json,
    read_table,
    write_json,
)
from components.common.config import MonitoringConfig
from components.common.errors import PlumbError
from components.monitoring.drift import (
    PREDICTION_COLUMN,
    DriftResult,
    compute_drift,
    prepare_reference,
)
from components.monitoring.events import (
    EventError,
    decode_predictions,
    decode_rows,
    parse_event,
)
from components.monitoring.metrics import MonitorMetrics
from components.monitoring.page import render_page
from components.monitoring.reports import ReportStore
from components.monitoring.trigger import RetrainTrigger
from components.monitoring.windows import (
    REQUEST_ID_COLUMN,
    LabelStore,
    Pairer,
    Pending,
    Window,
    WindowKey,
    WindowStore,
)
from components.preprocess.schema import Schema

logger = logging.getLogger(__name__)

TOKEN_ENV = "PLUMB_MONITOR_TOKEN"
"""Environment variable holding the bearer token `/feedback` requires."""
EVENTS_TOKEN_ENV = "PLUMB_MONITOR_EVENTS_TOKEN"
"""Environment variable holding a bearer token `/events` then requires. Off by default:
KServe's request logger sends no credentials, so a NetworkPolicy guards `/events`; set
it when events arrive through a proxy or broker that can add the header."""
TICK_SECONDS = 1.0
LABEL_COLUMN = "label"


class Monitor:
    """Windows of logged traffic compared with the model's training rows."""

    def __init__(
        self,
        *,
        model_dir: str | Path,
        state_dir: str | Path,
        config: MonitoringConfig,
        feedback_token: str | None = None,
        events_token: str | None = None,
    ) -> None:
        model_path, self.state_dir = Path(model_dir), Path(state_dir)
        self.config = config
        self.feedback_token = feedback_token
        self.events_token = events_token
        self.schema, reference = _load_reference(model_path, config=config)
        self.reference = prepare_reference(reference, schema=self.schema, config=config)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.metrics = MonitorMetrics()
        self.windows = WindowStore(self.state_dir)
        self.labels = LabelStore(self.state_dir, max_labels=config.max_feedback_labels)
        self.reports = ReportStore(self.state_dir, reports_kept=config.reports_kept)
        self.trigger = RetrainTrigger(config, self.state_dir / "trigger.json")
        self.pairer = Pairer(
            timeout_seconds=config.pairing_timeout_seconds,
            max_pending=config.max_pending_events,
        )
        self._lock = threading.Lock()
        self._queue: queue.Queue[Window | None] = queue.Queue()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        # Recently closed windows' request ids and predictions, for late labels.
        self._recent: OrderedDict[str, tuple[dict[str, Any], pd.DataFrame]] = (
            OrderedDict()
        )

    # -- life cycle -------------------------------------------------------------

    def start(self) -> None:
        """Restore state from the state dir and start the worker and the ticker."""
        for window in self.windows.restore():
            self._queue.put(window)
        for window in self.windows.open.values():
            self._window_gauge(window.key)
        for summary in self.reports.history:
            self._publish_summary(summary)
        self._threads = [
            threading.Thread(
                target=self._work, name="plumb-monitor-report", daemon=True
            ),
            threading.Thread(target=self._tick, name="plumb-monitor-tick", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        logger.info(
            "Monitor started: %d reference rows, windows of %d rows or %.0f s, state in %s",
            len(self.reference.data),
            self.config.window_rows,
            self.config.window_seconds,
            self.state_dir,
        )

    def stop(self) -> None:
        """Add waiting requests to their windows and let the worker finish."""
        with self._lock:
            self._expire(time.time(), everything=True)
        self._stopping.set()
        self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=300)
        for window in self.windows.open.values():
            window.close_journal()
        logger.info("Monitor stopped")

    def drain(self, timeout_seconds: float = 300.0) -> None:
        """Wait until every closed window has its report (for batch use and tests)."""
        deadline = time.monotonic() + timeout_seconds
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)

    # -- events -----------------------------------------------------------------

    def ingest(self, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        """Take one logger event.

        Raises:
            EventError: The event is refused; its `reason` is counted.
        """
        try:
            if len(body) > self.config.max_event_bytes:
                raise EventError(
                    f"event body of {len(body)} bytes exceeds max_event_bytes "
                    f"({self.config.max_event_bytes})",
                    reason="too_large",
                )
            event = parse_event(headers, body)
            decoded: list[Any] = (
                decode_rows(event.payload, self.schema)
                if event.kind == "request"
                else decode_predictions(event.payload, self.schema)
            )
        except EventError as err:
            self.metrics.events_rejected.labels(err.reason).inc()
            logger.debug("Rejected event (%s): %s", err.reason, err)
            raise
        now = time.time()
        with self._lock:
            self.metrics.events_received.labels(event.kind).inc()
            paired = self.pairer.offer(event, decoded, now=now)
            if paired is not None:
                self._add(paired[0], predictions=paired[1].decoded, now=now)
            self._expire(now)
            self.metrics.pending_events.set(len(self.pairer))
        return {"accepted": event.kind, "id": event.event_id, "paired": bool(paired)}

    def _add(
        self, request: Pending, *, predictions: list[float] | None, now: float
    ) -> None:
        event = request.event
        if predictions is not None and len(predictions) != len(request.decoded):
            self.metrics.events_rejected.labels("prediction_count").inc()
            logger.warning(
                "Response %s holds %d predictions for %d rows; rows kept without them",
                event.event_id,
                len(predictions),
                len(request.decoded),
            )
            predictions = None
        key = WindowKey(event.inference_service, event.endpoint)
        self.windows.add(
            key,
            namespace=event.namespace,
            request_id=event.event_id,
            rows=request.decoded,
            predictions=predictions,
            now=now,
        )
        self.metrics.rows_ingested.labels(*_labels(key)).inc(len(request.decoded))
        self._close_due(now)
        self._window_gauge(key)

    def _expire(self, now: float, *, everything: bool = False) -> None:
        for pending in self.pairer.expire(now, everything=everything):
            self.metrics.events_unpaired.labels(pending.event.kind).inc()
            if pending.event.kind == "request":
                self._add(pending, predictions=None, now=now)

    def _close_due(self, now: float) -> None:
        for key in self.windows.due(
            now,
            window_rows=self.config.window_rows,
            window_seconds=self.config.window_seconds,
            min_rows=self.config.min_window_rows,
        ):
            window = self.windows.close(key, now=now)
            logger.info(
                "Closed window %s of %s with %d rows",
                window.window_id,
                key.slug,
                window.row_count,
            )
            self._window_gauge(key)
            # Until its report is written the window's rows wait in its journal.
            window.spill()
            self._queue.put(window)

    def _window_gauge(self, key: WindowKey) -> None:
        window = self.windows.open.get(key)
        self.metrics.window_rows.labels(*_labels(key)).set(
            window.row_count if window else 0
        )

    def _tick(self) -> None:
        while not self._stopping.wait(TICK_SECONDS):
            with self._lock:
                now = time.time()
                self._expire(now)
                self._close_due(now)
                self.metrics.pending_events.set(len(self.pairer))

    # -- reports ----------------------------------------------------------------

    def _work(self) -> None:
        # Import Evidently here, before the first window, and in this thread only:
        # importing it from two threads at once trips its circular imports.
        import evidently.presets  # noqa: F401

        while True:
            window = self._queue.get()
            try:
                if window is None:
                    return
                self._report(window)
            except Exception:
                # A window that cannot be reported must not stop the monitor; its
                # journal stays in closing/ and is retried after a restart.
                logger.exception(
                    "Report of window %s failed", getattr(window, "window_id", "?")
                )
                self.metrics.events_rejected.labels("report_failed").inc()
            finally:
                self._queue.task_done()

    def _report(self, window: Window) -> None:
        key = window.key
        frame = window.frame(self.schema.feature_names)
        folder = self.reports.folder(key.inference_service, key.endpoint)
        html_path = folder / f"{window.window_id}.html"
        result = compute_drift(
            self.reference,
            frame,
            schema=self.schema,
            config=self.config,
            html_path=html_path if self.config.html_reports else None,
            run_report=bool(self.config.evidently_workspace),
        )
        quality, labelled = self._quality(frame)
        base = f"/reports/{key.inference_service}/{key.endpoint}/{window.window_id}"
        summary = {
            "window_id": window.window_id,
            "inference_service": key.inference_service,
            "endpoint": key.endpoint,
            "namespace": window.namespace,
            "opened_at": window.opened_at,
            "closed_at": window.closed_at,
            "rows": len(frame),
            "drift_share": result.drift_share,
            "drifted": result.drifted,
            "drifted_column_names": result.drifted_column_names,
            "prediction_drift_score": (
                result.prediction_drift.score if result.prediction_drift else None
            ),
            "quality": quality,
            "labelled_rows": labelled,
            "json_url": f"{base}.json",
            "html_url": f"{base}.html" if self.config.html_reports else None,
        }
        summary["retrain"] = self._fire_trigger(summary, key=key)
        snapshot = result.snapshot.dict() if result.snapshot is not None else None
        report = {**summary, "drift": result.to_dict(), "evidently": snapshot}
        # The history entry is the window's "done" mark, so it is written last.
        self._publish(summary, result)
        self.reports.write(summary, report)
        if self.config.evidently_workspace and result.snapshot is not None:
            push_snapshot(
                result.snapshot,
                workspace=self.config.evidently_workspace,
                project_id=self.config.evidently_project_id,
                state_dir=self.state_dir,
            )
        self.windows.finish(window)
        with self._lock:
            self._recent[window.window_id] = (
                summary,
                frame[[REQUEST_ID_COLUMN, PREDICTION_COLUMN]].copy(),
            )
            while len(self._recent) > self.config.reports_kept:
                self._recent.popitem(last=False)
        latency = time.time() - float(window.closed_at or time.time())
        self.metrics.window_latency.observe(latency)
        logger.info(
            "Reported window %s of %s: drift share %.2f (%s) in %.1f s",
            window.window_id,
            key.slug,
            result.drift_share,
            ", ".join(result.drifted_column_names) or "no column drifted",
            latency,
        )

    def _publish(self, summary: dict[str, Any], result: DriftResult) -> None:
        key = WindowKey(summary["inference_service"], summary["endpoint"])
        labels = _labels(key)
        for name, item in result.column_drift.items():
            if item.score is not None:
                self.metrics.column_drift_score.labels(*labels, name).set(item.score)
            self.metrics.column_drifted.labels(*labels, name).set(float(item.drifted))
        for name, share in result.missing_shares.items():
            self.metrics.missing_share.labels(*labels, name).set(share)
        self.metrics.windows_closed.labels(*labels).inc()
        self._publish_summary(summary)

    def _publish_summary(self, summary: dict[str, Any]) -> None:
        labels = _labels(WindowKey(summary["inference_service"], summary["endpoint"]))
        self.metrics.drift_share.labels(*labels).set(summary["drift_share"])
        self.metrics.drifted_columns.labels(*labels).set(
            len(summary["drifted_column_names"])
        )
        self.metrics.dataset_drift.labels(*labels).set(float(summary["drifted"]))
        self.metrics.last_window_timestamp.labels(*labels).set(summary["closed_at"])
        if summary.get("prediction_drift_score") is not None:
            self.metrics.prediction_drift_score.labels(*labels).set(
                summary["prediction_drift_score"]
            )
        for name, value in (summary.get("quality") or {}).items():
            self.metrics.model_quality.labels(*labels, name).set(value)
        if summary.get("labelled_rows"):
            self.metrics.labelled_rows.labels(*labels).set(summary["labelled_rows"])

    def _fire_trigger(
        self, summary: dict[str, Any], *, key: WindowKey
    ) -> dict[str, str] | None:
        outcome = self.trigger.observe(
            key.slug,
            drifted=summary["drifted"],
            window_id=summary["window_id"],
            summary={
                "inference_service": key.inference_service,
                "endpoint": key.endpoint,
                "namespace": summary["namespace"],
                "drift_share": summary["drift_share"],
                "drifted_columns": summary["drifted_column_names"],
                "report": summary["json_url"],
            },
        )
        state = self.trigger.state(key.slug)
        self.metrics.consecutive_drifted.labels(*_labels(key)).set(
            state.consecutive_drifted
        )
        if outcome is None:
            return None
        self.metrics.retrain_triggers.labels(
            *_labels(key), outcome.action, outcome.outcome
        ).inc()
        return asdict(outcome)

    # -- labels -----------------------------------------------------------------

    def feedback(self, body: Any) -> dict[str, Any]:
        """Take labels keyed by request id; update quality of closed windows.

        Raises:
            PlumbError: The body is not `{"labels": {request_id: label or [labels]}}`
                or a label does not fit the task.
        """
        labels = _parse_labels(body, self.schema)
        self.labels.add(labels)
        self.metrics.feedback_labels.inc(sum(len(values) for values in labels.values()))
        updated = []
        with self._lock:
            recent = [
                (summary, frame)
                for summary, frame in self._recent.values()
                if frame[REQUEST_ID_COLUMN].isin(labels.keys()).any()
            ]
        for summary, frame in recent:
            quality, labelled = self._quality(frame)
            self.reports.update(
                summary, {"quality": quality, "labelled_rows": labelled}
            )
            self._publish_summary(summary)
            updated.append(summary["window_id"])
        return {"accepted": len(labels), "windows_updated": updated}

    def _quality(self, frame: pd.DataFrame) -> tuple[dict[str, float], int]:
        from components.evaluate.metrics import compute_metrics

        values: list[tuple[Any, float]] = []
        for request_id, rows in frame.groupby(
            REQUEST_ID_COLUMN, sort=False
        ).groups.items():
            stored = self.labels.get(str(request_id))
            if stored is not None and len(stored) == len(rows):
                values.extend(zip(rows, stored, strict=True))
        if not values:
            return {}, 0
        index, truth = zip(*values, strict=True)
        scores = frame.loc[list(index), PREDICTION_COLUMN].to_numpy(dtype=np.float64)
        y_true = np.asarray(truth, dtype=np.float64)
        known = np.isfinite(scores)
        try:
            quality = compute_metrics(
                y_true[known], scores[known], task=self.schema.task
            )
        except PlumbError as err:
            logger.info(
                "No model quality yet for %d labelled rows: %s", len(values), err
            )
            return {}, len(values)
        return quality, int(known.sum())

    # -- page -------------------------------------------------------------------

    def page(self) -> str:
        with self._lock:
            filling = {
                f"{key.inference_service}/{key.endpoint}": window.row_count
                for key, window in self.windows.open.items()
            }
        return render_page(
            self.reports.history,
            open_windows=filling,
            drift_share_threshold=self.config.drift_share,
            window_rows=self.config.window_rows,
        )


def push_snapshot(
    snapshot: Any, *, workspace: str, project_id: str | None, state_dir: Path
) -> str:
    """Add an Evidently snapshot to a workspace (folder or UI URL); return the project.

    Without `project_id` a project `plumb-monitor` is created once and its id kept in
    `<state_dir>/evidently_project.json`.
    """
    from evidently.ui.workspace import RemoteWorkspace, Workspace

    target: Any = (
        RemoteWorkspace(workspace)
        if workspace.startswith(("http://", "https://"))
        else Workspace(workspace)
    )
    project_file = state_dir / "evidently_project.json"
    if project_id is None and project_file.exists():
        project_id = str(read_json(project_file)["id"])
    if project_id is None:
        project_id = str(target.create_project("plumb-monitor").id)
        write_json(project_file, {"id": project_id})
    target.add_run(project_id, snapshot)
    logger.info("Added the window snapshot to Evidently project %s", project_id)
    return project_id


def _labels(key: WindowKey) -> tuple[str, str]:
    return key.inference_service, key.endpoint


def _load_reference(
    model_dir: Path, *, config: MonitoringConfig
) -> tuple[Schema, pd.DataFrame]:
    for name in (SCHEMA_FILE, REFERENCE_FILE):
        if not (model_dir / name).is_file():
            raise PlumbError(
                f"no {name} in model directory {str(model_dir)!r}; point --model-dir at "
                "a model directory written by plumb's train step"
            )
    schema = Schema.load(model_dir / SCHEMA_FILE)
    reference = read_table(model_dir / REFERENCE_FILE)
    if len(reference) > config.max_reference_rows:
        reference = reference.sample(n=config.max_reference_rows, random_state=0)
    reference = reference.reset_index(drop=True)
    if (model_dir / METADATA_FILE).is_file():
        from components.common.model_runtime import load_model

        reference[PREDICTION_COLUMN] = load_model(model_dir).predict(reference)
    else:
        logger.warning(
            "No %s in %s: prediction drift is not computed", METADATA_FILE, model_dir
        )
    return schema, reference


def _parse_labels(body: Any, schema: Schema) -> dict[str, list[float]]:
    raw = body.get("labels") if isinstance(body, dict) else None
    if not isinstance(raw, dict) or not raw:
        raise PlumbError(
            f'feedback body must be {{"labels": {{request_id: label or [labels]}}}}, '
            f"got {str(body)[:80]!r}"
        )
    parsed = {}
    for request_id, value in raw.items():
        values = value if isinstance(value, list) else [value]
        parsed[str(request_id)] = [
            _label_value(item, schema, request_id=str(request_id)) for item in values
        ]
    return parsed


def _label_value(value: Any, schema: Schema, *, request_id: str) -> float:
    if schema.task == "regression":
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value) if abs(value) <= sys.float_info.max else math.inf
            if math.isfinite(number):
                return number
    elif value == schema.positive_class or value is True or value == 1:
        return 1.0
    elif value in schema.classes or value is False or value == 0:
        return 0.0
    allowed = "a number" if schema.task == "regression" else f"one of {schema.classes}"
    raise PlumbError(
        f"label {value!r} for request {request_id!r} does not fit the model; send {allowed}"
    )


def _bearer_matches(request: Request, token: str) -> bool:
    """Compare the Authorization header with `Bearer <token>` in constant time."""
    given = request.headers.get("authorization", "").encode()
    return hmac.compare_digest(given, f"Bearer {token}".encode())


def _json_body(body: bytes, *, max_bytes: int = 0) -> Any:
    """Decode a JSON request body, refusing what would hurt the server."""
    if max_bytes and len(body) > max_bytes:
        raise EventError(
            f"feedback body of {len(body)} bytes exceeds max_event_bytes ({max_bytes}); "
            "send fewer labels per request",
            reason="too_large",
        )
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise PlumbError(f"feedback body is not JSON: {err}") from err
    except RecursionError as err:
        raise PlumbError(
            'feedback body nests too deeply; send {"labels": {request_id: label}}'
        ) from err


def build_app(monitor: Monitor) -> FastAPI:
    """Wrap a monitor in its HTTP API (FastAPI)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        monitor.start()
        yield
        monitor.stop()

    app = FastAPI(title="plumb drift monitor", lifespan=lifespan, docs_url=None)

    @app.exception_handler(PlumbError)
    async def _error_response(_: Request, err: PlumbError) -> JSONResponse:
        status = 413 if getattr(err, "reason", "") == "too_large" else 400
        return JSONResponse({"error": str(err)}, status_code=status)

    @app.post("/events")
    async def events(request: Request) -> JSONResponse:
        if monitor.events_token and not _bearer_matches(request, monitor.events_token):
            return JSONResponse(
                {"error": f"missing or wrong bearer token (see {EVENTS_TOKEN_ENV})"},
                status_code=401,
            )
        return JSONResponse(monitor.ingest(request.headers, await request.body()))

    @app.post("/feedback")
    async def feedback(request: Request) -> JSONResponse:
        if not monitor.feedback_token:
            return JSONResponse(
                {"error": f"feedback is disabled; set {TOKEN_ENV} on the monitor"},
                status_code=503,
            )
        if not _bearer_matches(request, monitor.feedback_token):
            return JSONResponse(
                {"error": "missing or wrong bearer token"}, status_code=401
            )
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            return JSONResponse(
                {
                    "error": f"feedback must be sent as application/json, got "
                    f"content type {content_type!r}"
                },
                status_code=415,
            )
        body = _json_body(
            await request.body(), max_bytes=monitor.config.max_event_bytes
        )
        return JSONResponse(monitor.feedback(body))

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(
            generate_latest(monitor.metrics.registry), media_type=CONTENT_TYPE_LATEST
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "open_windows": len(monitor.windows.open)}

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(monitor.page())

    @app.get("/reports/{inference_service}/{endpoint}/{name}")
    async def report(inference_service: str, endpoint: str, name: str) -> Response:
        try:
            path = monitor.reports.path(inference_service, endpoint, name)
        except FileNotFoundError:
            path = None
        if path is None or not path.is_file():
            return JSONResponse({"error": "no such report"}, status_code=404)
        return FileResponse(path)

    return app


def serve(
    *,
    model_dir: str | Path,
    state_dir: str | Path,
    config: MonitoringConfig,
    host: str = "127.0.0.1",
    port: int = 8080,
) -> None:
    """Run the monitor's HTTP server until it is stopped (SIGTERM or Ctrl-C)."""
    import uvicorn

    monitor = Monitor(
        model_dir=model_dir,
        state_dir=state_dir,
        config=config,
        feedback_token=os.environ.get(TOKEN_ENV) or None,
        events_token=os.environ.get(EVENTS_TOKEN_ENV) or None,
    )
    if not monitor.feedback_token:
        logger.warning("%s is not set: /feedback answers 503", TOKEN_ENV)
    uvicorn.run(build_app(monitor), host=host, port=port, log_config=None)
