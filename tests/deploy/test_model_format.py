"""The InferenceService's modelFormat follows the model, and the runtime serves it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.common.config import DeploymentConfig
from components.common.errors import PlumbError
from components.deploy.inference_service import parse_manifest
from components.deploy.lib import SERVED_MODEL_FORMATS, deploy_model

ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = ROOT / ".tools" / "bin"


def _model_dir(tmp_path: Path, model_format: str) -> Path:
    model_dir = tmp_path / f"model-{model_format}"
    model_dir.mkdir()
    (model_dir / "metadata.json").write_text(json.dumps({"format": model_format}))
    return model_dir


def _deploy(tmp_path: Path, model_dir: Path, **fields: Any) -> dict[str, Any]:
    verdict = tmp_path / "verdict.json"
    verdict.write_text(json.dumps({"passed": True, "reasons": []}))
    output = tmp_path / "isvc.yaml"
    deploy_model(
        DeploymentConfig(storage_uri="s3://models/m", **fields),
        model_uri="s3://models/m",
        verdict_path=verdict,
        output_path=output,
        model_dir=model_dir,
    )
    manifest = yaml.safe_load(output.read_text())
    parse_manifest(manifest)
    return manifest


@pytest.mark.parametrize("model_format", ["onnx", "tflite"])
@pytest.mark.parametrize("canary", [False, True])
def test_model_format_comes_from_the_model_directory(
    tmp_path: Path, model_format: str, canary: bool
) -> None:
    """`auto` writes the directory's format into every predictor, canary included."""
    fields: dict[str, Any] = {}
    if canary:
        fields = {"canary_traffic_percent": 10, "stable_storage_uri": "s3://old"}
    manifest = _deploy(tmp_path, _model_dir(tmp_path, model_format), **fields)
    predictors = [manifest["spec"]["predictor"]]
    predictors += [entry["predictor"] for entry in manifest["spec"].get("canary", [])]
    assert len(predictors) == (2 if canary else 1)
    for predictor in predictors:
        assert predictor["model"]["modelFormat"] == {"name": model_format}
        assert predictor["model"]["runtime"] == "plumb-onnx"


def test_fixed_format_must_match_the_model(tmp_path: Path) -> None:
    """`model_format: onnx` for a TFLite model is refused, naming both formats."""
    with pytest.raises(PlumbError, match="'onnx' but the model .* is 'tflite'"):
        _deploy(tmp_path, _model_dir(tmp_path, "tflite"), model_format="onnx")


def test_format_the_runtime_does_not_serve_is_refused(tmp_path: Path) -> None:
    """The sklearn baseline has no ServingRuntime: deploying it fails clearly."""
    with pytest.raises(PlumbError, match="'sklearn'.*does not serve"):
        _deploy(tmp_path, _model_dir(tmp_path, "sklearn"))


def test_directory_without_metadata_is_refused(tmp_path: Path) -> None:
    """A model directory without metadata.json is refused before anything is written."""
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PlumbError, match="no metadata.json"):
        _deploy(tmp_path, empty)
    assert not (tmp_path / "isvc.yaml").exists()


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(TOOLS_BIN))
    if found is None:
        pytest.skip(f"{name} is not installed (scripts/install-tools.sh)")
    return found


def _runtimes(documents: str) -> dict[str, dict[str, Any]]:
    return {
        doc["metadata"]["name"]: doc
        for doc in yaml.safe_load_all(documents)
        if doc and doc["kind"] in ("ServingRuntime", "ClusterServingRuntime")
    }


def test_serving_runtimes_declare_every_served_format() -> None:
    """The kustomize base and the Helm chart's runtime auto-select onnx and tflite."""
    rendered = [
        subprocess.run(
            [_tool("kubectl"), "kustomize", str(ROOT / "manifests" / "base")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout,
        subprocess.run(
            [_tool("helm"), "template", "plumb", str(ROOT / "charts" / "plumb")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout,
    ]
    runtime_name = DeploymentConfig().runtime
    for documents in rendered:
        runtime = _runtimes(documents)[runtime_name]
        formats = {
            entry["name"]: entry for entry in runtime["spec"]["supportedModelFormats"]
        }
        assert set(formats) >= set(SERVED_MODEL_FORMATS)
        assert all(formats[name]["autoSelect"] for name in SERVED_MODEL_FORMATS)
