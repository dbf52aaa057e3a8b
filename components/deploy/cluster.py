"""Apply an InferenceService to a cluster and wait until KServe reports it Ready.

`connect` builds a Kubernetes `ApiClient` from a kubeconfig or the pod's service
account. `apply_inference_service` sends the manifest as a server-side apply (field
manager `plumb`), so re-running a deploy updates only the fields plumb owns.
`wait_until_ready` polls the object's status: it returns when the `Ready` condition is
`True`, fails at once when the controller reports that the model failed to load, and
fails at the timeout with the controller's last condition message.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from components.common.config import DeploymentConfig
from components.common.errors import PlumbError
from components.deploy.inference_service import GROUP, PLURAL, VERSION

logger = logging.getLogger(__name__)

FIELD_MANAGER = "plumb"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
POLL_SECONDS = 5.0


class DeployError(PlumbError):
    """The cluster refused the InferenceService or it did not become Ready."""


def connect(config: DeploymentConfig) -> k8s.ApiClient:
    """Return an API client for the cluster `config.cluster` names.

    Raises:
        DeployError: No usable kubeconfig or service account was found.
    """
    try:
        if config.cluster == "in-cluster":
            k8s_config.load_incluster_config()
            return k8s.ApiClient()
        return k8s_config.new_client_from_config(
            config_file=config.kubeconfig, context=config.kube_context
        )
    except (ConfigException, FileNotFoundError) as err:
        raise DeployError(
            f"cannot reach a cluster with deployment.cluster={config.cluster!r} "
            f"(kubeconfig={config.kubeconfig!r}, context={config.kube_context!r}): "
            f"{err}; fix the kubeconfig or set deployment.cluster: none to only "
            "write the YAML"
        ) from err


def _path(namespace: str, name: str | None = None) -> str:
    base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    return f"{base}/{name}" if name else base


def apply_inference_service(
    api_client: k8s.ApiClient, manifest: dict[str, Any]
) -> dict[str, Any]:
    """Server-side apply `manifest`; return the object the API server stored.

    Raises:
        DeployError: The API server refused the object (its message is kept).
    """
    namespace = manifest["metadata"]["namespace"]
    name = manifest["metadata"]["name"]
    # The generated CustomObjectsApi.patch_* always sends merge-patch; server-side
    # apply needs its own content type, so the call goes through call_api.
    try:
        return api_client.call_api(
            _path(namespace, name),
            "PATCH",
            query_params=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            header_params={
                "Content-Type": APPLY_CONTENT_TYPE,
                "Accept": "application/json",
            },
            body=manifest,
            response_type="object",
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
        )
    except ApiException as err:
        raise DeployError(
            f"the API server refused InferenceService {namespace}/{name}: "
            f"{err.status} {err.reason}: {_api_message(err)}"
        ) from err


def get_inference_service(
    api_client: k8s.ApiClient, *, namespace: str, name: str
) -> dict[str, Any]:
    """Read the InferenceService as stored, status included."""
    return api_client.call_api(
        _path(namespace, name),
        "GET",
        header_params={"Accept": "application/json"},
        response_type="object",
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )


def wait_until_ready(
    api_client: k8s.ApiClient,
    *,
    namespace: str,
    name: str,
    timeout_seconds: float,
    poll_seconds: float = POLL_SECONDS,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Poll until the InferenceService is Ready; return its status.

    Raises:
        DeployError: The model failed to load, or `timeout_seconds` passed; the message
            carries the controller's condition.
    """
    clock = clock or time.monotonic
    sleep = sleep or time.sleep
    deadline = clock() + timeout_seconds
    last = "no status reported yet"
    while True:
        try:
            service = get_inference_service(api_client, namespace=namespace, name=name)
        except ApiException as err:
            raise DeployError(
                f"cannot read InferenceService {namespace}/{name}: {err.status} "
                f"{err.reason}: {_api_message(err)}"
            ) from err
        status = service.get("status") or {}
        ready = _condition(status, "Ready")
        if ready and ready.get("status") == "True":
            logger.info(
                "InferenceService %s/%s is Ready at %s",
                namespace,
                name,
                status.get("url"),
            )
            return status
        failure = _load_failure(status)
        if failure:
            raise DeployError(
                f"InferenceService {namespace}/{name} failed: {failure}; check the "
                "model directory at its storageUri and the predictor pod's logs"
            )
        if ready:
            last = f"{ready.get('reason', 'NotReady')}: {ready.get('message', '')}"
        if clock() >= deadline:
            raise DeployError(
                f"InferenceService {namespace}/{name} not Ready after "
                f"{timeout_seconds:.0f} s; controller says {last.strip()!r}; raise "
                "deployment.ready_timeout_seconds or inspect `kubectl describe "
                f"inferenceservice -n {namespace} {name}`"
            )
        logger.info("Waiting for %s/%s: %s", namespace, name, last)
        sleep(poll_seconds)


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == kind:
            return condition
    return None


def _load_failure(status: dict[str, Any]) -> str | None:
    states = (status.get("modelStatus") or {}).get("states") or {}
    if states.get("targetModelState") != "FailedToLoad":
        return None
    info = (status.get("modelStatus") or {}).get("lastFailureInfo") or {}
    return f"{info.get('reason', 'ModelLoadFailed')}: {info.get('message', '')}".strip()


def _api_message(err: ApiException) -> str:
    try:
        return str(json.loads(err.body or "{}").get("message") or err.body)
    except ValueError:
        return str(err.body)
