"""`plumb serve`: the CLI entry point of the predictor."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest


def test_missing_model_dir_exits_2(tmp_path: Path) -> None:
    """A model directory that does not exist is one error line and exit code 2."""
    result = subprocess.run(
        [sys.executable, "-m", "plumb", "serve", str(tmp_path / "nope")],
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.integration
def test_plumb_serve_answers(
    start_server: Any, trained_model_dir: Path, tmp_path: Path
) -> None:
    """`plumb serve MODEL_DIR --port N` serves V1 predictions on 127.0.0.1."""
    with start_server(
        trained_model_dir, tmp_path / "cli.log", entry=("-m", "plumb", "serve")
    ) as server:
        schema = httpx.get(f"{server.base_url}/v2/models/plumb-model").json()
        width = len(schema["inputs"])
        response = httpx.post(
            f"{server.base_url}/v1/models/plumb-model:predict",
            json={"instances": [[1.0] * width]},
        )
    assert response.status_code == 200, response.text
    assert 0.0 <= response.json()["predictions"][0]["probability"] <= 1.0
