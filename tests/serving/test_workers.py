"""`plumb serve --workers 2`: kserve's multi-process mode with plumb's start-up grace."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]

WORKER_RESTART_TIMEOUT_SECONDS = 120.0


def _serving_workers(log: str) -> list[int]:
    return [int(pid) for pid in re.findall(r"Worker process (\d+) is serving", log)]


def _wait_for_workers(server: Any, count: int) -> list[int]:
    deadline = time.monotonic() + WORKER_RESTART_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        workers = _serving_workers(server.log())
        if len(workers) >= count:
            return workers
        time.sleep(0.5)
    raise AssertionError(f"{count} workers never served:\n{server.log()}")


def test_two_workers_serve_and_a_killed_one_is_replaced(
    start_server: Any, trained_model_dir: Path, tmp_path: Path
) -> None:
    """Both workers start (however slowly), answer, cap, log 4xx; a killed one returns."""
    with start_server(
        trained_model_dir,
        tmp_path / "workers.log",
        "--workers",
        "2",
        "--max-rows",
        "50",
        "--max-body-bytes",
        "20000",
        entry=("-m", "plumb", "serve"),
    ) as server:
        first, second = _wait_for_workers(server, 2)
        url = f"{server.base_url}/v1/models/plumb-model:predict"
        width = len(
            httpx.get(f"{server.base_url}/v2/models/plumb-model").json()["inputs"]
        )
        answers = [
            httpx.post(url, json={"instances": [[1.0] * width]}) for _ in range(6)
        ]
        refused = httpx.post(url, json={"instances": [[1.0]]})
        # 60 rows fit in the byte cap but not the row cap; 400 rows fit in neither.
        too_many_rows = httpx.post(url, json={"instances": [[1.0] * width] * 60})
        too_many_bytes = httpx.post(url, json={"instances": [[1.0] * width] * 400})

        os.kill(first, signal.SIGKILL)
        replacement = _wait_for_workers(server, 3)[2]
        after = httpx.post(url, json={"instances": [[1.0] * width]})
        log = server.log()

    assert [response.status_code for response in answers] == [200] * 6
    assert refused.status_code == 400
    assert too_many_rows.status_code == 413, too_many_rows.text
    assert "more than the 50 allowed" in too_many_rows.json()["error"]
    assert too_many_bytes.status_code == 413, too_many_bytes.text
    assert "over the 20000 byte limit" in too_many_bytes.json()["error"]
    assert replacement not in (first, second)
    assert after.status_code == 200
    assert "did not start" not in log
    assert "Traceback" not in log
    assert re.search(r"WARNING components\.serving\.rest: 400 POST .*has 1 values", log)
