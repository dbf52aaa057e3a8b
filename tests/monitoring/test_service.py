"""The real monitor (`plumb monitor`) on 127.0.0.1, fed with KServe logger events."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from monitor_helpers import (
    FlightsModel,
    MonitorProcess,
    chromium_binary,
    kserve_headers,
    open_in_chromium,
    send_rows,
    wait_for,
)
from plumb_testing import metric_value

from components.common.model_runtime import load_model
from components.evaluate.metrics import compute_metrics

pytestmark = [pytest.mark.slow, pytest.mark.integration]

WINDOW_ROWS = 1000
TOKEN = "test-token"


def _write_config(path: Path, **monitoring: Any) -> Path:
    settings = {"window_rows": WINDOW_ROWS, "min_window_rows": 10, **monitoring}
    path.write_text(yaml.safe_dump({"monitoring": settings}), encoding="utf-8")
    return path


def _predictions(model_dir: Path, frame: pd.DataFrame) -> list[float]:
    return [float(p) for p in load_model(model_dir).predict(frame)]


def _history(client: httpx.Client, state_dir: Path) -> list[dict[str, Any]]:
    path = state_dir / "history.json"
    return json.loads(path.read_text()) if path.exists() else []


@pytest.fixture(scope="module")
def monitor(
    flights_model: FlightsModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[MonitorProcess, Path]]:
    """A monitor with HTML reports, a 1 s pairing timeout and a feedback token."""
    root = tmp_path_factory.mktemp("monitor")
    config = _write_config(root / "plumb.yaml", pairing_timeout_seconds=1.0)
    state_dir = root / "state"
    process = MonitorProcess(
        model_dir=flights_model.model_dir,
        state_dir=state_dir,
        config_path=config,
        env={"PLUMB_MONITOR_TOKEN": TOKEN},
    )
    yield process, state_dir
    process.stop()


def test_training_months_do_not_drift_and_distant_months_do(
    monitor: tuple[MonitorProcess, Path], flights_model: FlightsModel
) -> None:
    """A window of training-month flights is stable; one of Oct-Dec drifts on month."""
    process, state_dir = monitor
    model_dir, features = flights_model.model_dir, flights_model.features
    same = flights_model.training_months.iloc[:WINDOW_ROWS]
    distant = flights_model.distant_months.iloc[:WINDOW_ROWS]
    assert len(distant) == WINDOW_ROWS
    with process.client() as client:
        send_rows(client, same, _predictions(model_dir, same), features=features)
        send_rows(client, distant, _predictions(model_dir, distant), features=features)
        history = wait_for(
            lambda: (
                len(_history(client, state_dir)) >= 2 and _history(client, state_dir)
            ),
            what="two window reports",
        )
        stable, moved = history[0], history[1]
        assert stable["rows"] == WINDOW_ROWS and moved["rows"] == WINDOW_ROWS
        assert "month" not in stable["drifted_column_names"]
        assert not stable["drifted"], stable
        assert "month" in moved["drifted_column_names"], moved
        report = client.get(moved["json_url"]).json()
        assert report["drift"]["column_drift"]["month"]["drifted"] is True
        assert report["drift"]["prediction_drift"]["method"]
        assert report["evidently"]["metrics"], "the Evidently snapshot is in the JSON"
        html = client.get(moved["html_url"])
        assert html.status_code == 200 and "<html" in html.text[:2000].lower()

        metrics = client.get("/metrics").text
        labels = {"inference_service": "flights", "endpoint": "default"}
        assert metric_value(metrics, "plumb_drift_share", **labels) == pytest.approx(
            moved["drift_share"], abs=1e-9
        )
        assert metric_value(metrics, "plumb_drifted_columns", **labels) == len(
            moved["drifted_column_names"]
        )
        assert (
            metric_value(metrics, "plumb_column_drifted", column="month", **labels)
            == 1.0
        )
        assert metric_value(metrics, "plumb_windows_closed_total", **labels) == 2.0
        assert metric_value(metrics, "plumb_rows_ingested_total", **labels) == 2000.0
        events = 2 * WINDOW_ROWS // 20
        for kind in ("request", "response"):
            assert (
                metric_value(metrics, "plumb_events_received_total", kind=kind)
                == events
            )
        assert metric_value(metrics, "plumb_window_latency_seconds_count") == 2.0


requires_chromium = pytest.mark.skipif(
    chromium_binary() is None,
    reason="Debian's chromium is not installed (apt-get install -y chromium); "
    "see docs/monitoring.md",
)


@requires_chromium
def test_chromium_detects_console_errors(tmp_path: Path) -> None:
    """The console check itself catches an error a page logs (so it can fail)."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><head><link rel='icon' href='data:,'></head><body>"
        "<script>console.error('deliberate failure')</script></body></html>"
    )
    _, errors = open_in_chromium(page.as_uri(), profile_dir=tmp_path / "profile")
    assert any("deliberate failure" in line for line in errors), errors


@requires_chromium
def test_page_renders_in_chromium_without_console_errors(
    monitor: tuple[MonitorProcess, Path], tmp_path: Path
) -> None:
    """`/` shows the drift-share plot and links to each window's reports."""
    process, state_dir = monitor
    history = json.loads((state_dir / "history.json").read_text())
    dom, errors = open_in_chromium(f"{process.url}/", profile_dir=tmp_path / "profile")
    assert errors == []
    assert "<svg" in dom and "<polyline" in dom
    assert "flights/default" in dom
    for window in history[-2:]:
        assert window["json_url"] in dom and window["html_url"] in dom


def test_bad_events_are_rejected_and_counted(
    monitor: tuple[MonitorProcess, Path], flights_model: FlightsModel
) -> None:
    """Broken events get a 4xx with a reason; a lone response counts as unpaired."""
    process, _ = monitor
    row = {
        name: flights_model.training_months.iloc[0][name]
        for name in flights_model.features
    }
    row = json.loads(pd.Series(row).to_json())
    good = json.dumps({"instances": [row]})
    with process.client() as client:
        cases = {
            "not_cloudevent": (
                {"Content-Type": "application/json"},
                good,
            ),
            "unknown_type": (
                {**kserve_headers("request", "x1"), "Ce-Type": "com.example.other"},
                good,
            ),
            "not_json": (kserve_headers("request", "x2"), "not json at all"),
            "schema": (
                kserve_headers("request", "x3"),
                json.dumps({"instances": [{**row, "distance": "far"}]}),
            ),
            "bad_payload": (kserve_headers("request", "x4"), json.dumps({"rows": []})),
        }
        for reason, (headers, body) in cases.items():
            reply = client.post("/events", content=body, headers=headers)
            assert reply.status_code == 400, (reason, reply.text)
            assert reply.json()["error"], reason
        lone = client.post(
            "/events",
            content=json.dumps({"predictions": [0.3]}),
            headers=kserve_headers("response", str(uuid.uuid4())),
        )
        assert lone.status_code == 200

        def unpaired() -> float | None:
            text = client.get("/metrics").text
            return metric_value(text, "plumb_events_unpaired_total", kind="response")

        assert wait_for(unpaired, timeout_seconds=20, what="unpaired count") == 1.0
        metrics = client.get("/metrics").text
        for reason in cases:
            assert (
                metric_value(metrics, "plumb_events_rejected_total", reason=reason)
                == 1.0
            ), reason
        assert client.get("/healthz").status_code == 200


def test_feedback_labels_give_model_quality(
    monitor: tuple[MonitorProcess, Path], flights_model: FlightsModel
) -> None:
    """Labels posted for a closed window's requests add model quality to its report."""
    process, state_dir = monitor
    model_dir, features = flights_model.model_dir, flights_model.features
    rows = flights_model.training_months.iloc[2000 : 2000 + WINDOW_ROWS]
    predictions = _predictions(model_dir, rows)
    with process.client() as client:
        before = len(_history(client, state_dir))
        ids = send_rows(client, rows, predictions, features=features, rows_per_event=5)
        summary = wait_for(
            lambda: (
                len(_history(client, state_dir)) > before
                and _history(client, state_dir)[-1]
            ),
            what="the labelled window's report",
        )
        assert summary["quality"] == {}
        auth = {"Authorization": f"Bearer {TOKEN}"}
        truth = rows["arr_delayed"].astype(str).tolist()
        labels = {
            event_id: truth[5 * index : 5 * index + 5]
            for index, event_id in enumerate(ids)
        }
        wrong = {"Authorization": "Bearer nope"}
        assert client.post("/feedback", json={"labels": labels}).status_code == 401
        assert (
            client.post("/feedback", json={"labels": labels}, headers=wrong).status_code
            == 401
        )
        bad = client.post(
            "/feedback", json={"labels": {ids[0]: ["maybe"] * 5}}, headers=auth
        )
        assert bad.status_code == 400 and "maybe" in bad.json()["error"]
        reply = client.post("/feedback", json={"labels": labels}, headers=auth)
        assert reply.status_code == 200, reply.text
        assert reply.json()["windows_updated"] == [summary["window_id"]]

        report = client.get(summary["json_url"]).json()
        y_true = (rows["arr_delayed"] == "delayed").to_numpy(dtype=float)
        expected = compute_metrics(y_true, np.asarray(predictions), task="binary")
        assert report["labelled_rows"] == WINDOW_ROWS
        # Same rows, same function as the evaluation gate: equal to float precision.
        assert report["quality"]["roc_auc"] == pytest.approx(
            expected["roc_auc"], abs=1e-9
        )
        metrics = client.get("/metrics").text
        assert metric_value(
            metrics,
            "plumb_model_quality",
            inference_service="flights",
            endpoint="default",
            metric="roc_auc",
        ) == pytest.approx(expected["roc_auc"], abs=1e-9)


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An HTTP server on 127.0.0.1 standing in for the retraining webhook."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/retrain", received
    server.shutdown()
    server.server_close()


def _shifted(frame: pd.DataFrame) -> pd.DataFrame:
    moved = frame.copy()
    moved["distance"] = moved["distance"] * 3.0
    moved["sched_dep_hour"] = (moved["sched_dep_hour"] + 8) % 24
    moved["origin"] = "EWR"
    moved["carrier"] = "UA"
    moved["day_of_week"] = 6
    return moved


def test_trigger_fires_once_after_k_drifted_windows_and_restart_keeps_window(
    flights_model: FlightsModel,
    tmp_path: Path,
    receiver: tuple[str, list[dict[str, Any]]],
) -> None:
    """K=2 drifted windows fire the webhook once (cool-down); a restart keeps rows."""
    url, received = receiver
    config = _write_config(
        tmp_path / "plumb.yaml",
        html_reports=False,
        retrain_after_windows=2,
        retrain_cooldown_seconds=3600,
        retrain_action="webhook",
        retrain_webhook_url=url,
    )
    state_dir = tmp_path / "state"
    model_dir, features = flights_model.model_dir, flights_model.features
    shifted = _shifted(flights_model.training_months.iloc[:4000])
    predictions = _predictions(model_dir, shifted)
    process = MonitorProcess(
        model_dir=model_dir, state_dir=state_dir, config_path=config
    )
    try:
        with process.client() as client:
            for window in range(3):
                part = slice(window * WINDOW_ROWS, (window + 1) * WINDOW_ROWS)
                send_rows(
                    client, shifted.iloc[part], predictions[part], features=features
                )
                wait_for(
                    lambda n=window: len(_history(client, state_dir)) == n + 1,
                    what=f"report of window {window}",
                )
                assert len(received) == (0 if window == 0 else 1), received
            assert all(item["drifted"] for item in _history(client, state_dir))
            assert received[0]["inference_service"] == "flights"
            assert received[0]["consecutive_drifted_windows"] == 2
            metrics = client.get("/metrics").text
            assert (
                metric_value(
                    metrics,
                    "plumb_retrain_triggers_total",
                    action="webhook",
                    outcome="fired",
                )
                == 1.0
            )
            # Half a window, then a restart: the rows must survive it.
            half = slice(3 * WINDOW_ROWS, 3 * WINDOW_ROWS + WINDOW_ROWS // 2)
            send_rows(client, shifted.iloc[half], predictions[half], features=features)
        process.stop()
        process = MonitorProcess(
            model_dir=model_dir, state_dir=state_dir, config_path=config
        )
        with process.client() as client:
            metrics = client.get("/metrics").text
            assert (
                metric_value(
                    metrics,
                    "plumb_window_rows",
                    inference_service="flights",
                    endpoint="default",
                )
                == WINDOW_ROWS // 2
            )
            rest = slice(3 * WINDOW_ROWS + WINDOW_ROWS // 2, 4 * WINDOW_ROWS)
            send_rows(client, shifted.iloc[rest], predictions[rest], features=features)
            history = wait_for(
                lambda: (
                    len(_history(client, state_dir)) == 4
                    and _history(client, state_dir)
                ),
                what="the restarted window's report",
            )
            assert history[-1]["rows"] == WINDOW_ROWS
            # Still cooling down: the 4th drifted window fires nothing.
            assert len(received) == 1
    finally:
        process.stop()
    assert np.isfinite(history[-1]["drift_share"])
