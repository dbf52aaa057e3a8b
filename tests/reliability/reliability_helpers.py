"""Helpers of the reliability tests: the predictor and the monitor as real processes.

Both run as they do in a pod (`python -m components.serving`, `plumb monitor`), bound to
127.0.0.1, on the session's breast-cancer model. Each helper ends its process itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import yaml

from components.common.net import free_port

REPO = Path(__file__).resolve().parents[2]
MODEL_NAME = "plumb-model"
SERVICE = "bc"
TOKEN = "reliability-token"
START_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 30.0


class ServerProcess:
    """A server subprocess on 127.0.0.1 that is ready once `ready_path` answers 200."""

    def __init__(
        self,
        command: list[str],
        *,
        port: int,
        ready_path: str,
        log_path: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.ready_path = ready_path
        self.log_path = log_path
        with log_path.open("w", encoding="utf-8") as log:
            self.process = subprocess.Popen(
                command,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PLUMB_LOG_LEVEL": "INFO", **(env or {})},
            )
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def healthy(self) -> bool:
        """True when the process runs and its readiness path answers 200."""
        if self.process.poll() is not None:
            return False
        try:
            return httpx.get(self.url + self.ready_path, timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout_seconds: float = START_TIMEOUT_SECONDS) -> None:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()[-3000:]}")
            if self.healthy():
                return
            time.sleep(0.3)
        raise RuntimeError(f"server not ready in {timeout_seconds} s:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, as when a node or the OOM killer takes a pod."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT_SECONDS)

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)


def start_predictor(
    model_dir: Path, log_path: Path, *extra_args: str, port: int | None = None
) -> ServerProcess:
    """`python -m components.serving MODEL_DIR` on 127.0.0.1, ready to answer."""
    port = port or free_port()
    command = [sys.executable, "-m", "components.serving", str(model_dir)]
    command += ["--model-name", MODEL_NAME, "--port", str(port), *extra_args]
    return ServerProcess(
        command,
        port=port,
        ready_path=f"/v2/models/{MODEL_NAME}/ready",
        log_path=log_path,
    )


def start_monitor(
    model_dir: Path,
    state_dir: Path,
    log_path: Path,
    *,
    port: int | None = None,
    **monitoring: Any,
) -> ServerProcess:
    """`plumb monitor` on 127.0.0.1 with a feedback token and the given settings."""
    port = port or free_port()
    config = state_dir.parent / f"{state_dir.name}.yaml"
    settings = {"html_reports": False, **monitoring}
    config.write_text(yaml.safe_dump({"monitoring": settings}), encoding="utf-8")
    command = [sys.executable, "-m", "plumb", "monitor", "--model-dir", str(model_dir)]
    command += ["--state-dir", str(state_dir), "--config", str(config)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    return ServerProcess(
        command,
        port=port,
        ready_path="/healthz",
        log_path=log_path,
        env={"PLUMB_MONITOR_TOKEN": TOKEN},
    )


def event_headers(kind: str, event_id: str | None = None) -> dict[str, str]:
    """The binary-mode CloudEvent headers KServe's request logger sends."""
    return {
        "Ce-Specversion": "1.0",
        "Ce-Id": event_id or str(uuid.uuid4()),
        "Ce-Type": f"org.kubeflow.serving.inference.{kind}",
        "Ce-Source": "http://localhost:9081/",
        "Ce-Inferenceservicename": SERVICE,
        "Ce-Namespace": "plumb",
        "Ce-Component": "predictor",
        "Ce-Endpoint": "default",
        "Content-Type": "application/json",
    }


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, from the kernel's own accounting (/proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")
