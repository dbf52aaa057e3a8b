"""A genuine server-side failure (5xx) is logged at ERROR with its traceback."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from components.common.artifacts import (
    SCHEMA_FILE,
    TRANSFORM_FILE,
    read_json,
    write_json,
)

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _mismatched_model_dir(trained_model_dir: Path, target: Path) -> Path:
    """A model directory whose schema and transform lost a column the network reads."""
    shutil.copytree(trained_model_dir, target)
    schema = read_json(target / SCHEMA_FILE)
    dropped = schema["columns"].pop()["name"]
    write_json(target / SCHEMA_FILE, schema)
    transform = read_json(target / TRANSFORM_FILE)
    transform["numeric"] = [s for s in transform["numeric"] if s["name"] != dropped]
    write_json(target / TRANSFORM_FILE, transform)
    return target


def test_model_failure_is_500_with_traceback(
    start_server: Any, trained_model_dir: Path, tmp_path: Path
) -> None:
    """onnxruntime refusing the matrix is a 500, logged at ERROR with a traceback."""
    model_dir = _mismatched_model_dir(trained_model_dir, tmp_path / "broken")
    width = len(read_json(model_dir / SCHEMA_FILE)["columns"])
    with start_server(model_dir, tmp_path / "server.log") as server:
        response = httpx.post(
            f"{server.base_url}/v1/models/plumb-model:predict",
            json={"instances": [[1.0] * width]},
        )
        log = server.log()
    assert response.status_code == 500
    assert "kserve ERROR" in log
    assert "Traceback" in log
    assert "onnxruntime" in log
