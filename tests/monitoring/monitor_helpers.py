"""Helpers for the monitor tests: KServe-format logger events and a monitor process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from components.common.net import free_port

REPO = Path(__file__).resolve().parents[2]


@dataclass
class FlightsModel:
    """A flights model directory and rows to replay as production traffic."""

    model_dir: Path
    features: list[str]
    training_months: pd.DataFrame
    """Rows from the training months that are not in the training split."""
    distant_months: pd.DataFrame
    """Rows from the last months of the year (the production split)."""


def kserve_headers(
    kind: str,
    event_id: str,
    *,
    inference_service: str = "flights",
    endpoint: str = "default",
) -> dict[str, str]:
    """The headers KServe's logger sends (cloudevents sdk-go, binary mode)."""
    return {
        "Ce-Specversion": "1.0",
        "Ce-Id": event_id,
        "Ce-Type": f"org.kubeflow.serving.inference.{kind}",
        "Ce-Source": "http://localhost:9081/",
        "Ce-Time": datetime.now(tz=UTC).isoformat(),
        "Ce-Inferenceservicename": inference_service,
        "Ce-Namespace": "plumb",
        "Ce-Component": "predictor",
        "Ce-Endpoint": endpoint,
        "Ce-Metadata": "{}",
        "Content-Type": "application/json",
    }


def v1_instances(frame: pd.DataFrame, features: list[str]) -> list[dict[str, Any]]:
    rows = frame[features].astype(object).where(frame[features].notna(), None)
    return json.loads(rows.to_json(orient="records"))


def send_rows(
    client: httpx.Client,
    frame: pd.DataFrame,
    predictions: list[float],
    *,
    features: list[str],
    rows_per_event: int = 20,
    **attributes: str,
) -> list[str]:
    """Post the rows as request/response event pairs, as KServe's logger would.

    Returns:
        The event id (KServe's request id) of each event pair, in order.
    """
    ids = []
    for start in range(0, len(frame), rows_per_event):
        part = frame.iloc[start : start + rows_per_event]
        event_id = str(uuid.uuid4())
        ids.append(event_id)
        request = {"instances": v1_instances(part, features)}
        response = {"predictions": predictions[start : start + rows_per_event]}
        for kind, body in (("request", request), ("response", response)):
            reply = client.post(
                "/events",
                content=json.dumps(body),
                headers=kserve_headers(kind, event_id, **attributes),
            )
            assert reply.status_code == 200, reply.text
    return ids


class MonitorProcess:
    """`plumb monitor` in a subprocess on 127.0.0.1; always terminated by `stop`."""

    def __init__(
        self,
        *,
        model_dir: Path,
        state_dir: Path,
        config_path: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = state_dir.parent / f"monitor-{self.port}.log"
        command = [
            sys.executable,
            "-m",
            "plumb",
            "monitor",
            "--model-dir",
            str(model_dir),
            "--state-dir",
            str(state_dir),
            "--config",
            str(config_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                command,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PLUMB_LOG_LEVEL": "INFO", **(env or {})},
            )
        self._wait_ready()

    def _wait_ready(self, timeout_seconds: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"monitor exited:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"monitor not ready:\n{self.log.read_text()[-3000:]}")

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def wait_for(predicate: Any, *, timeout_seconds: float = 90.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=3000",
    "--dump-dom",
]


def chromium_binary() -> str | None:
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


def open_in_chromium(url: str, *, profile_dir: Path) -> tuple[str, list[str]]:
    """Load a page in headless Chromium; return its DOM and console errors.

    Chromium with `--enable-logging=stderr` writes every console message and
    uncaught exception of the page as an `INFO:CONSOLE` line (and failed loads as
    "Failed to load resource"); those are the errors returned.
    """
    binary = chromium_binary()
    assert binary is not None
    completed = subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    errors = [
        line
        for line in completed.stderr.splitlines()
        if ":CONSOLE" in line or "Uncaught" in line or "Failed to load resource" in line
    ]
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout, errors
