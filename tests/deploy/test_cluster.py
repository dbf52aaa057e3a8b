"""Applying and waiting for an InferenceService, against a mocked Kubernetes API.

There is no Kubernetes API server here, so `FakeApiClient` stands in for
`kubernetes.client.ApiClient.call_api`: it records each request and answers with
scripted InferenceService objects, as the API server and the KServe controller would.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from components.common.config import DeploymentConfig
from components.deploy import cluster
from components.deploy.cluster import (
    DeployError,
    apply_inference_service,
    connect,
    wait_until_ready,
)
from components.deploy.inference_service import build_inference_service, to_manifest
from components.deploy.lib import deploy_model

PATH = "/apis/serving.kserve.io/v1beta1/namespaces/plumb/inferenceservices/plumb-model"


class FakeApiClient:
    """Records call_api requests; answers GETs from a script of statuses."""

    def __init__(
        self, statuses: list[dict[str, Any]], error: ApiException | None = None
    ):
        self.statuses = statuses
        self.error = error
        self.calls: list[dict[str, Any]] = []

    def call_api(self, path: str, method: str, **kwargs: Any) -> dict[str, Any]:
        self.calls.append({"path": path, "method": method, **kwargs})
        if self.error is not None:
            raise self.error
        if method == "PATCH":
            return kwargs["body"]
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return {"status": status}


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _not_ready(message: str) -> dict[str, Any]:
    return {
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "Pending",
                "message": message,
            }
        ]
    }


READY = {
    "url": "http://plumb-model.plumb.example.com",
    "conditions": [{"type": "Ready", "status": "True"}],
}


def _manifest() -> dict[str, Any]:
    return to_manifest(
        build_inference_service(DeploymentConfig(), storage_uri="s3://m")
    )


def test_apply_is_server_side_apply() -> None:
    """apply PATCHes with the apply-patch content type, field manager plumb, force."""
    api = FakeApiClient([READY])
    manifest = _manifest()
    apply_inference_service(api, manifest)  # type: ignore[arg-type]
    (call,) = api.calls
    assert call["path"] == PATH
    assert call["method"] == "PATCH"
    assert call["header_params"]["Content-Type"] == "application/apply-patch+yaml"
    assert ("fieldManager", "plumb") in call["query_params"]
    assert ("force", "true") in call["query_params"]
    assert call["body"] == manifest


def test_apply_refused_keeps_api_message() -> None:
    """A refusal by the API server becomes a DeployError carrying its message."""
    error = ApiException(status=422, reason="Unprocessable Entity")
    error.body = json.dumps({"message": "spec.predictor.minReplicas: Invalid value"})
    api = FakeApiClient([READY], error=error)
    with pytest.raises(DeployError, match="422.*minReplicas: Invalid value"):
        apply_inference_service(api, _manifest())  # type: ignore[arg-type]


def test_wait_returns_when_ready() -> None:
    """wait polls through not-ready states and returns the Ready status."""
    api = FakeApiClient([_not_ready("pulling image"), _not_ready("starting"), READY])
    clock = FakeClock()
    status = wait_until_ready(
        api,  # type: ignore[arg-type]
        namespace="plumb",
        name="plumb-model",
        timeout_seconds=60,
        poll_seconds=5,
        clock=clock,
        sleep=clock.sleep,
    )
    assert status["url"] == READY["url"]
    assert len(api.calls) == 3
    assert clock.now == 10


def test_wait_times_out_with_controller_message() -> None:
    """At the timeout, the error carries the controller's last condition message."""
    api = FakeApiClient(
        [_not_ready("0/1 nodes available: insufficient nvidia.com/gpu")]
    )
    clock = FakeClock()
    with pytest.raises(DeployError, match="insufficient nvidia.com/gpu"):
        wait_until_ready(
            api,  # type: ignore[arg-type]
            namespace="plumb",
            name="plumb-model",
            timeout_seconds=30,
            poll_seconds=5,
            clock=clock,
            sleep=clock.sleep,
        )
    assert clock.now == 30


def test_wait_fails_fast_when_model_fails_to_load() -> None:
    """A FailedToLoad model state ends the wait at once with the failure message."""
    failed = {
        **_not_ready("predictor not ready"),
        "modelStatus": {
            "states": {"targetModelState": "FailedToLoad"},
            "lastFailureInfo": {
                "reason": "ModelLoadFailed",
                "message": "no metadata.json",
            },
        },
    }
    api = FakeApiClient([failed])
    clock = FakeClock()
    with pytest.raises(DeployError, match="ModelLoadFailed: no metadata.json"):
        wait_until_ready(
            api,  # type: ignore[arg-type]
            namespace="plumb",
            name="plumb-model",
            timeout_seconds=600,
            clock=clock,
            sleep=clock.sleep,
        )
    assert clock.now == 0


def test_connect_without_kubeconfig_fails_clearly(tmp_path: Path) -> None:
    """A missing kubeconfig is a DeployError that says how to only write the YAML."""
    config = DeploymentConfig(
        cluster="kubeconfig", kubeconfig=str(tmp_path / "missing-kubeconfig")
    )
    with pytest.raises(DeployError, match="cluster: none"):
        connect(config)


def test_deploy_with_cluster_applies_and_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a cluster configured, deploy writes, applies, waits and reports the URL."""
    api = FakeApiClient([_not_ready("starting"), READY])
    monkeypatch.setattr(cluster, "connect", lambda config: api)
    monkeypatch.setattr(cluster.time, "sleep", lambda seconds: None)
    verdict = tmp_path / "verdict.json"
    verdict.write_text(json.dumps({"passed": True}))
    result = deploy_model(
        DeploymentConfig(cluster="in-cluster", storage_uri="s3://m"),
        model_uri="/local/model",
        verdict_path=verdict,
        output_path=tmp_path / "isvc.yaml",
    )
    assert result == {"storage_uri": "s3://m", "applied": True, "url": READY["url"]}
    assert [call["method"] for call in api.calls] == ["PATCH", "GET", "GET"]
