"""A real kserve ModelServer, run as `python -m components.serving` on 127.0.0.1."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from components.common.net import free_port

MODEL_NAME = "plumb-model"
START_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 15.0
MAX_ROWS = 200
MAX_BODY_BYTES = 300_000


@dataclass
class RunningServer:
    base_url: str
    port: int
    process: subprocess.Popen
    log_path: Path
    max_rows: int = 10_000
    max_body_bytes: int = 16 * 1024 * 1024

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@contextlib.contextmanager
def running_server(
    model_dir: Path,
    log_path: Path,
    *extra_args: str,
    entry: tuple[str, ...] = ("-m", "components.serving"),
) -> Iterator[RunningServer]:
    """Start the predictor, wait until the model is ready, always stop it."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            [sys.executable, *entry, str(model_dir)]
            + ["--model-name", MODEL_NAME, "--port", str(port), *extra_args],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = RunningServer(base_url, port, process, log_path)
    for flag, name in (
        ("--max-rows", "max_rows"),
        ("--max-body-bytes", "max_body_bytes"),
    ):
        if flag in extra_args:
            setattr(server, name, int(extra_args[extra_args.index(flag) + 1]))
    try:
        _wait_ready(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_SECONDS)


def _wait_ready(server: RunningServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log()}")
        try:
            response = httpx.get(f"{server.base_url}/v1/models/{MODEL_NAME}", timeout=2)
            if response.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(
        f"server not ready in {START_TIMEOUT_SECONDS} s:\n{server.log()}"
    )


@pytest.fixture(scope="module")
def server(
    trained_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """The predictor serving the session's trained model, for one test module."""
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    with running_server(
        trained_model_dir,
        log_path,
        "--max-rows",
        str(MAX_ROWS),
        "--max-body-bytes",
        str(MAX_BODY_BYTES),
    ) as running:
        yield running


@pytest.fixture(scope="session")
def start_server() -> object:
    """The `running_server` context manager, for tests that need their own server."""
    return running_server
