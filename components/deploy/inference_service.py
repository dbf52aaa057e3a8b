"""The KServe InferenceService a model ships in, built with the kserve SDK models.

`build_inference_service` turns `DeploymentConfig` into a `V1beta1InferenceService`:
the predictor (model format, runtime, `storageUri`, resources, replicas, autoscaling,
request logger) and the deployment mode annotation, always set explicitly. A canary
takes the form the mode honours: `canaryTrafficPercent` on the predictor for Knative
(KServe keeps the last ready revision for the rest), and for Standard a `spec.canary`
entry (kserve 0.21: a named predictor plus `trafficPercent`) beside the stable
predictor. `parse_manifest` reads a manifest back through the same SDK models and
rejects any field they do not know, so a typo cannot slip into a cluster.
"""

from __future__ import annotations

from typing import Any

import kserve.models
from kserve import (
    V1beta1InferenceService,
    V1beta1InferenceServiceSpec,
    V1beta1LoggerSpec,
    V1beta1ModelFormat,
    V1beta1ModelSpec,
    V1beta1PredictorSpec,
)
from kubernetes import client as k8s
from kubernetes.client import V1ObjectMeta, V1ResourceRequirements

from components.common.config import DeploymentConfig
from components.common.errors import PlumbError

API_VERSION = "serving.kserve.io/v1beta1"
KIND = "InferenceService"
GROUP, VERSION = API_VERSION.split("/")
PLURAL = "inferenceservices"
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
GPU_RESOURCE = "nvidia.com/gpu"
RUN_AS_USER = 10001
"""The non-root user plumb's images create (dockerfiles/)."""
_PRIMITIVES = {"str": str, "int": int, "bool": bool, "float": float, "object": object}


def build_inference_service(
    config: DeploymentConfig,
    *,
    storage_uri: str,
    model_version: str | None = None,
    model_format: str | None = None,
) -> V1beta1InferenceService:
    """Build the InferenceService for the model directory at `storage_uri`.

    Args:
        config: The deployment section.
        storage_uri: Where the cluster finds the model directory.
        model_version: Recorded as the `plumb.dev/model-version` label.
        model_format: `modelFormat.name`, as `lib.resolve_model_format` found it; None
            takes `config.model_format` (`auto` meaning onnx).
    """
    if model_format is None:
        model_format = "onnx" if config.model_format == "auto" else config.model_format
    labels = {"app.kubernetes.io/part-of": "plumb"}
    if model_version:
        labels["plumb.dev/model-version"] = model_version
    metadata = V1ObjectMeta(
        name=config.name,
        namespace=config.namespace,
        labels=labels,
        annotations={DEPLOYMENT_MODE_ANNOTATION: config.deployment_mode},
    )
    canary = config.canary_traffic_percent
    if canary is None:
        spec = V1beta1InferenceServiceSpec(
            predictor=_predictor(config, storage_uri, model_format=model_format)
        )
    elif config.deployment_mode == "Knative":
        predictor = _predictor(config, storage_uri, model_format=model_format)
        predictor.canary_traffic_percent = canary
        spec = V1beta1InferenceServiceSpec(predictor=predictor)
    else:
        assert config.stable_storage_uri is not None  # checked by DeploymentConfig
        canary_predictor = _predictor(config, storage_uri, model_format=model_format)
        canary_predictor.name = config.canary_name
        spec = V1beta1InferenceServiceSpec(
            predictor=_predictor(
                config, config.stable_storage_uri, model_format=model_format
            ),
            canary=[
                kserve.models.V1beta1CanarySpec(
                    predictor=canary_predictor, traffic_percent=canary
                )
            ],
        )
    return V1beta1InferenceService(
        api_version=API_VERSION, kind=KIND, metadata=metadata, spec=spec
    )


def _predictor(
    config: DeploymentConfig, storage_uri: str, *, model_format: str
) -> V1beta1PredictorSpec:
    logger = (
        V1beta1LoggerSpec(mode="all", url=config.logger_url)
        if config.logger_url
        else None
    )
    return V1beta1PredictorSpec(
        min_replicas=config.min_replicas,
        max_replicas=config.max_replicas,
        scale_target=config.scale_target,
        scale_metric=config.scale_metric,
        logger=logger,
        security_context=k8s.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=RUN_AS_USER,
            run_as_group=RUN_AS_USER,
            fs_group=RUN_AS_USER,
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        ),
        model=V1beta1ModelSpec(
            model_format=V1beta1ModelFormat(name=model_format),
            runtime=config.runtime,
            storage_uri=storage_uri,
            resources=_resources(config),
            security_context=restricted_container_context(),
        ),
    )


def restricted_container_context() -> k8s.V1SecurityContext:
    """A container security context that meets the "restricted" Pod Security Standard.

    The predictor writes nothing: KServe's storage initializer puts the model in
    /mnt/models before it starts, so its root filesystem can be read-only.
    """
    return k8s.V1SecurityContext(
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        run_as_non_root=True,
        capabilities=k8s.V1Capabilities(drop=["ALL"]),
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
    )


def _resources(config: DeploymentConfig) -> V1ResourceRequirements:
    requests = {"cpu": config.cpu_request, "memory": config.memory_request}
    limits: dict[str, str] = {}
    if config.cpu_limit:
        limits["cpu"] = config.cpu_limit
    if config.memory_limit:
        limits["memory"] = config.memory_limit
    if config.gpu_count:
        # Extended resources must be requested and limited alike; the limit suffices.
        limits[GPU_RESOURCE] = str(config.gpu_count)
    return V1ResourceRequirements(requests=requests, limits=limits or None)


def to_manifest(service: V1beta1InferenceService) -> dict[str, Any]:
    """Serialise an SDK object to the camelCase dict kubectl applies."""
    return k8s.ApiClient().sanitize_for_serialization(service)


def parse_manifest(manifest: dict[str, Any]) -> V1beta1InferenceService:
    """Read a manifest into the kserve SDK models, refusing fields they do not know.

    The SDK's own deserializer drops unknown keys silently; this one names them.

    Raises:
        PlumbError: A key is not a field of the model at its path, or a value has the
            wrong type.
    """
    if manifest.get("apiVersion") != API_VERSION or manifest.get("kind") != KIND:
        raise PlumbError(
            f"expected apiVersion {API_VERSION!r} and kind {KIND!r}, got "
            f"{manifest.get('apiVersion')!r} and {manifest.get('kind')!r}"
        )
    return _deserialize(manifest, "V1beta1InferenceService", path="")


def _deserialize(data: Any, type_name: str, *, path: str) -> Any:
    if data is None:
        return None
    if type_name.startswith("list["):
        _expect(data, list, path=path)
        item = type_name[5:-1]
        return [
            _deserialize(value, item, path=f"{path}[{index}]")
            for index, value in enumerate(data)
        ]
    if type_name.startswith("dict("):
        _expect(data, dict, path=path)
        item = type_name[5:-1].split(", ", 1)[1]
        return {
            key: _deserialize(value, item, path=f"{path}.{key}")
            for key, value in data.items()
        }
    if type_name in _PRIMITIVES:
        if type_name == "float":
            _expect(data, (int, float), path=path)
        elif type_name != "object":
            _expect(data, _PRIMITIVES[type_name], path=path)
        return data
    model = getattr(kserve.models, type_name, None) or getattr(k8s, type_name, None)
    if model is None:
        return data  # An opaque type such as a quantity: kept as written.
    _expect(data, dict, path=path)
    by_json_name = {json: attr for attr, json in model.attribute_map.items()}
    unknown = [key for key in data if key not in by_json_name]
    if unknown:
        where = f"{path}.{unknown[0]}".lstrip(".")
        raise PlumbError(
            f"unknown field {where!r} in the InferenceService ({type_name} has no "
            f"{unknown[0]!r}); known fields: {sorted(by_json_name)}"
        )
    kwargs = {
        by_json_name[key]: _deserialize(
            value,
            model.openapi_types[by_json_name[key]],
            path=f"{path}.{key}",
        )
        for key, value in data.items()
    }
    try:
        return model(**kwargs)
    except ValueError as err:
        raise PlumbError(
            f"invalid InferenceService at {path.lstrip('.') or 'top level'}: {err}"
        ) from err


def _expect(data: Any, kind: type | tuple[type, ...], *, path: str) -> None:
    if not isinstance(data, kind) or (kind is int and isinstance(data, bool)):
        names = kind.__name__ if isinstance(kind, type) else "number"
        raise PlumbError(
            f"field {path.lstrip('.')!r} must be {names}, got {data!r} in the "
            "InferenceService"
        )
