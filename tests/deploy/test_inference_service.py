"""InferenceService rendering, read back through the kserve SDK models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.common.config import DeploymentConfig
from components.common.errors import GateFailedError, PlumbError
from components.deploy.inference_service import (
    DEPLOYMENT_MODE_ANNOTATION,
    build_inference_service,
    parse_manifest,
    to_manifest,
)
from components.deploy.lib import deploy_model

NEW_URI = "s3://models/plumb/v2"
OLD_URI = "s3://models/plumb/v1"


def _render(**fields: Any) -> dict[str, Any]:
    manifest = to_manifest(
        build_inference_service(DeploymentConfig(**fields), storage_uri=NEW_URI)
    )
    # The round trip: the SDK models read back exactly what was written.
    assert to_manifest(parse_manifest(manifest)) == manifest
    return manifest


@pytest.mark.parametrize("mode", ["Standard", "Knative"])
def test_mode_annotation_and_predictor(mode: str) -> None:
    """Both modes set the deployment-mode annotation and the predictor fields."""
    manifest = _render(
        deployment_mode=mode,
        min_replicas=2,
        max_replicas=5,
        scale_target=8,
        scale_metric="concurrency",
    )
    assert manifest["metadata"]["annotations"] == {DEPLOYMENT_MODE_ANNOTATION: mode}
    predictor = manifest["spec"]["predictor"]
    assert predictor["minReplicas"] == 2
    assert predictor["maxReplicas"] == 5
    assert predictor["scaleTarget"] == 8
    assert predictor["scaleMetric"] == "concurrency"
    assert predictor["model"]["storageUri"] == NEW_URI
    assert predictor["model"]["modelFormat"] == {"name": "onnx"}
    assert predictor["model"]["runtime"] == "plumb-onnx"
    assert "canary" not in manifest["spec"]
    assert "canaryTrafficPercent" not in predictor


def test_knative_canary_is_traffic_percent_on_predictor() -> None:
    """Knative canary: canaryTrafficPercent on the predictor that holds the new model."""
    manifest = _render(deployment_mode="Knative", canary_traffic_percent=10)
    predictor = manifest["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 10
    assert predictor["model"]["storageUri"] == NEW_URI
    assert "canary" not in manifest["spec"]


def test_standard_canary_is_spec_canary_beside_stable() -> None:
    """Standard canary: spec.canary holds the new model, the predictor keeps the old."""
    manifest = _render(
        deployment_mode="Standard",
        canary_traffic_percent=25,
        stable_storage_uri=OLD_URI,
        canary_name="v2",
    )
    assert manifest["spec"]["predictor"]["model"]["storageUri"] == OLD_URI
    assert "canaryTrafficPercent" not in manifest["spec"]["predictor"]
    (canary,) = manifest["spec"]["canary"]
    assert canary["trafficPercent"] == 25
    assert canary["predictor"]["name"] == "v2"
    assert canary["predictor"]["model"]["storageUri"] == NEW_URI


def test_standard_canary_needs_stable_model() -> None:
    """A Standard-mode canary without the stable model's URI is a config error."""
    with pytest.raises(ValueError, match="stable_storage_uri"):
        DeploymentConfig(canary_traffic_percent=10)


@pytest.mark.parametrize("logger_url", [None, "http://monitor.plumb/events"])
def test_request_logger(logger_url: str | None) -> None:
    """The request logger is {mode: all, url: monitor} when set, absent when not."""
    predictor = _render(logger_url=logger_url)["spec"]["predictor"]
    if logger_url is None:
        assert "logger" not in predictor
    else:
        assert predictor["logger"] == {"mode": "all", "url": logger_url}


@pytest.mark.parametrize("gpus", [0, 2])
def test_resources_and_gpu(gpus: int) -> None:
    """CPU/memory requests and limits are set; nvidia.com/gpu only when GPUs are asked."""
    resources = _render(gpu_count=gpus)["spec"]["predictor"]["model"]["resources"]
    assert resources["requests"] == {"cpu": "500m", "memory": "512Mi"}
    assert resources["limits"]["cpu"] == "2"
    if gpus:
        assert resources["limits"]["nvidia.com/gpu"] == str(gpus)
    else:
        assert "nvidia.com/gpu" not in resources["limits"]


@pytest.mark.parametrize(
    ("path", "key"),
    [
        (["spec", "predictor", "model"], "storageURI"),
        (["spec", "predictor"], "canaryTraficPercent"),
        (["spec"], "predicter"),
        (["metadata"], "annotation"),
        (["spec", "predictor", "logger"], "mdoe"),
    ],
)
def test_unknown_or_misspelled_field_fails(path: list[str], key: str) -> None:
    """A field the SDK models do not know is refused with its dotted path."""
    manifest = _render(deployment_mode="Knative", canary_traffic_percent=5)
    node = manifest
    for part in path:
        node = node[part]
    node[key] = "x"
    with pytest.raises(PlumbError, match=f"unknown field '{'.'.join([*path, key])}'"):
        parse_manifest(manifest)


def test_wrong_type_fails() -> None:
    """A value of the wrong type (a string for replicas) is refused."""
    manifest = _render()
    manifest["spec"]["predictor"]["minReplicas"] = "two"
    with pytest.raises(PlumbError, match="spec.predictor.minReplicas"):
        parse_manifest(manifest)


def _verdict(tmp_path: Path, passed: bool) -> Path:
    path = tmp_path / "verdict.json"
    path.write_text(json.dumps({"passed": passed, "reasons": ["roc_auc 0.5 < 0.9"]}))
    return path


def test_deploy_without_cluster_only_writes_yaml(tmp_path: Path) -> None:
    """With cluster: none the deploy step writes the YAML and applies nothing."""
    output = tmp_path / "isvc.yaml"
    result = deploy_model(
        DeploymentConfig(storage_uri=NEW_URI),
        model_uri="/local/model",
        verdict_path=_verdict(tmp_path, passed=True),
        output_path=output,
    )
    assert result == {"storage_uri": NEW_URI, "applied": False}
    manifest = yaml.safe_load(output.read_text())
    assert parse_manifest(manifest).spec.predictor.model.storage_uri == NEW_URI


def test_deploy_refuses_failed_gate(tmp_path: Path) -> None:
    """A model whose gate failed is not written or deployed."""
    output = tmp_path / "isvc.yaml"
    with pytest.raises(GateFailedError, match="roc_auc"):
        deploy_model(
            DeploymentConfig(),
            model_uri="/local/model",
            verdict_path=_verdict(tmp_path, passed=False),
            output_path=output,
        )
    assert not output.exists()
