"""Lost processes: the monitor and the predictor killed with SIGKILL, then replaced.

SIGKILL runs no shutdown hook, as when the OOM killer or a lost node takes a pod. The
monitor must come back with the window it was filling (its rows are journaled and
flushed before they are counted) and the labels it was sent; a new predictor on the
same port must give the answers the old one gave. Killed training workers are covered
by tests/test_train_distributed.py.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from load import LoadResult, batches, run_load
from plumb_testing import metric_value
from reliability_helpers import (
    SERVICE,
    TOKEN,
    ServerProcess,
    event_headers,
    start_monitor,
    start_predictor,
)

from components.common.model_runtime import load_model

pytestmark = pytest.mark.integration

WINDOW_ROWS = 60
ROWS_PER_EVENT = 5


def _window_rows(monitor: ServerProcess) -> float | None:
    text = httpx.get(f"{monitor.url}/metrics", timeout=10).text
    return metric_value(
        text, "plumb_window_rows", inference_service=SERVICE, endpoint="default"
    )


def _send_pairs(
    monitor: ServerProcess,
    rows: list[list[float]],
    predictions: list[float],
    names: list[str],
) -> list[str]:
    """Log the rows as request/response pairs of ROWS_PER_EVENT rows; return the ids."""
    ids = []
    with httpx.Client(base_url=monitor.url, timeout=30) as client:
        for start in range(0, len(rows), ROWS_PER_EVENT):
            part = rows[start : start + ROWS_PER_EVENT]
            event_id = f"req-{len(ids)}-{time.monotonic_ns()}"
            request = {
                "instances": [dict(zip(names, row, strict=True)) for row in part]
            }
            response = {"predictions": predictions[start : start + ROWS_PER_EVENT]}
            for kind, body in (("request", request), ("response", response)):
                reply = client.post(
                    "/events",
                    content=json.dumps(body),
                    headers=event_headers(kind, event_id),
                )
                assert reply.status_code == 200, reply.text
            ids.append(event_id)
    return ids


def _history(state_dir: Path) -> list[dict]:
    path = state_dir / "history.json"
    return json.loads(path.read_text()) if path.exists() else []


def test_killed_monitor_restarts_with_its_window_and_labels(
    trained_model_dir: Path,
    good_rows: list[list[float]],
    feature_names: list[str],
    tmp_path: Path,
) -> None:
    """SIGKILL mid-window (even mid-write): the restarted monitor keeps rows and labels."""
    rows = (good_rows * 4)[:WINDOW_ROWS]
    frame = pd.DataFrame(rows, columns=feature_names)
    predictions = [float(p) for p in load_model(trained_model_dir).predict(frame)]
    state_dir = tmp_path / "state"
    settings = {"window_rows": WINDOW_ROWS, "min_window_rows": 10}
    half = WINDOW_ROWS // 2

    monitor = start_monitor(
        trained_model_dir, state_dir, tmp_path / "m1.log", **settings
    )
    try:
        ids = _send_pairs(monitor, rows[:half], predictions[:half], feature_names)
        labels = ["malignant" if p >= 0.5 else "benign" for p in predictions]
        reply = httpx.post(
            f"{monitor.url}/feedback",
            json={"labels": {ids[0]: labels[:ROWS_PER_EVENT]}},
            headers={"authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        assert _window_rows(monitor) == half
        monitor.kill()
    finally:
        monitor.stop()
    # A kill in the middle of a journal write leaves a torn last line.
    (journal,) = (state_dir / "windows" / "open").glob("*.jsonl")
    with journal.open("a", encoding="utf-8") as handle:
        handle.write('{"id": "torn", "t": 1.0, "rows": [{"mean ra')

    monitor = start_monitor(
        trained_model_dir, state_dir, tmp_path / "m2.log", **settings
    )
    try:
        assert _window_rows(monitor) == half
        assert (
            httpx.get(f"{monitor.url}/healthz", timeout=10).json()["open_windows"] == 1
        )
        assert "Skipped torn line" in monitor.log()
        _send_pairs(monitor, rows[half:], predictions[half:], feature_names)
        deadline = time.monotonic() + 120
        while not _history(state_dir):
            assert time.monotonic() < deadline, monitor.log()[-3000:]
            time.sleep(0.5)
        (summary,) = _history(state_dir)
        assert summary["rows"] == WINDOW_ROWS
        assert summary["labelled_rows"] == ROWS_PER_EVENT
        assert monitor.healthy()
    finally:
        monitor.stop()


def test_killed_predictor_is_replaced_and_answers_the_same(
    trained_model_dir: Path,
    good_rows: list[list[float]],
    feature_names: list[str],
    tmp_path: Path,
) -> None:
    """SIGKILL under load; a new predictor on the same port gives identical answers."""
    batch_list = batches(good_rows, count=40, seed=1)

    def load(
        url: str, seconds: float, stop: threading.Event | None = None
    ) -> LoadResult:
        return run_load(
            predictor_url=url,
            monitor_url=None,
            batch_list=batch_list,
            names=feature_names,
            threads=3,
            rate_per_thread=10.0,
            seconds=seconds,
            stop=stop,
        )

    first = start_predictor(trained_model_dir, tmp_path / "p1.log")
    port, url = first.port, first.url
    stop = threading.Event()
    during: list[LoadResult] = []
    try:
        before = load(url, 4.0)
        background = threading.Thread(
            target=lambda: during.append(load(url, 300.0, stop)), daemon=True
        )
        background.start()
        time.sleep(1.0)
        first.kill()
    finally:
        first.stop()
    try:
        second = start_predictor(trained_model_dir, tmp_path / "p2.log", port=port)
    finally:
        stop.set()
        background.join(timeout=60)
    try:
        after = load(url, 4.0)
    finally:
        second.stop()

    (killed,) = during
    for result in (before, killed, after):
        assert result.server_errors() == {}
    # Requests in flight at the kill lost their connection, later ones found no server
    # until the new one listened; none hung (a timeout) or got a 5xx.
    assert set(killed.errors) <= {
        "predict: ConnectError",
        "predict: ReadError",
        "predict: RemoteProtocolError",
    }, dict(killed.errors)
    assert not before.errors and not after.errors
    common = sorted(set(before.answers) & set(after.answers))
    assert len(common) >= 10, (len(before.answers), len(after.answers))
    for index in common:
        # Same model file, same onnxruntime on the same CPU: identical answers.
        np.testing.assert_array_equal(after.answers[index], before.answers[index])
