"""The KServe InferenceService a model ships in, built with the kserve SDK models."""

from __future__ import annotations

from typing import Any

from kserve import (
    V1beta1InferenceService,
    V1beta1InferenceServiceSpec,
    V1beta1LoggerSpec,
    V1beta1ModelFormat,
    V1beta1ModelSpec,
    V1beta1PredictorSpec,
)
from kubernetes.client import V1ObjectMeta

from components.common.config import DeploymentConfig

API_VERSION = "serving.kserve.io/v1beta1"
KIND = "InferenceService"
MODEL_FORMAT = "onnx"
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"


def build_inference_service(
    config: DeploymentConfig, *, storage_uri: str, model_version: str | None = None
) -> V1beta1InferenceService:
    """Build the InferenceService for a model directory at `storage_uri`."""
    logger = (
        V1beta1LoggerSpec(mode="all", url=config.logger_url)
        if config.logger_url
        else None
    )
    labels = {"app.kubernetes.io/part-of": "plumb"}
    if model_version:
        labels["plumb.dev/model-version"] = model_version
    return V1beta1InferenceService(
        api_version=API_VERSION,
        kind=KIND,
        metadata=V1ObjectMeta(
            name=config.name,
            namespace=config.namespace,
            labels=labels,
            annotations={DEPLOYMENT_MODE_ANNOTATION: config.deployment_mode},
        ),
        spec=V1beta1InferenceServiceSpec(
            predictor=V1beta1PredictorSpec(
                min_replicas=config.min_replicas,
                max_replicas=config.max_replicas,
                logger=logger,
                model=V1beta1ModelSpec(
                    model_format=V1beta1ModelFormat(name=MODEL_FORMAT),
                    runtime=config.runtime,
                    storage_uri=storage_uri,
                ),
            )
        ),
    )


def to_manifest(service: V1beta1InferenceService) -> dict[str, Any]:
    """Serialise an SDK object to the camelCase dict kubectl applies."""
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(service)
