"""Checks shared by the manifest and chart tests: Pod Security "restricted", sizing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

ALLOWED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
"""Volume types the "restricted" Pod Security Standard allows."""


def pod_specs(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], list[dict]]]:
    """Yield (where, pod-level spec, containers) for every pod an object describes.

    Covers core workloads, the ServingRuntime's container template and the predictor
    (stable and canary) of an InferenceService, whose pod fields sit on the predictor
    and whose container is the `model` entry.
    """
    kind = obj["kind"]
    name = f"{kind}/{obj['metadata']['name']}"
    spec = obj.get("spec") or {}
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        pod = spec["template"]["spec"]
        yield name, pod, pod.get("initContainers", []) + pod["containers"]
    elif kind == "Pod":
        yield name, spec, spec.get("initContainers", []) + spec["containers"]
    elif kind in ("ServingRuntime", "ClusterServingRuntime"):
        yield name, {}, spec["containers"]
    elif kind == "InferenceService":
        predictor = spec["predictor"]
        yield f"{name} predictor", predictor, [predictor["model"]]
        for index, canary in enumerate(spec.get("canary") or []):
            pred = canary["predictor"]
            yield f"{name} canary[{index}]", pred, [pred["model"]]


def restricted_violations(
    where: str, pod: dict[str, Any], containers: list[dict[str, Any]], *, runtime: bool
) -> list[str]:
    """List what keeps a pod from the "restricted" Pod Security Standard.

    Args:
        where: Name used in the messages.
        pod: Pod-level fields (securityContext, volumes, host*).
        containers: The containers (init ones included).
        runtime: True for a ServingRuntime template, whose containers must carry the
            pod-level settings themselves (KServe merges them into the predictor pod).
    """
    problems: list[str] = []
    pod_ctx = pod.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            problems.append(f"{where}: {flag} is set")
    for volume in pod.get("volumes") or []:
        types = set(volume) - {"name"}
        if not types <= ALLOWED_VOLUME_TYPES:
            problems.append(f"{where}: volume {volume['name']} uses {sorted(types)}")
    for container in containers:
        cname = f"{where} container {container.get('name', 'model')}"
        ctx = container.get("securityContext") or {}
        if ctx.get("privileged"):
            problems.append(f"{cname}: privileged")
        if ctx.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{cname}: allowPrivilegeEscalation is not false")
        if ctx.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{cname}: readOnlyRootFilesystem is not true")
        caps = ctx.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            problems.append(f"{cname}: capabilities do not drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{cname}: adds capabilities {caps['add']}")
        non_root = ctx.get(
            "runAsNonRoot", None if runtime else pod_ctx.get("runAsNonRoot")
        )
        if non_root is not True:
            problems.append(f"{cname}: runAsNonRoot is not true")
        if ctx.get("runAsUser", pod_ctx.get("runAsUser")) == 0:
            problems.append(f"{cname}: runs as UID 0")
        seccomp = (
            ctx.get("seccompProfile") or pod_ctx.get("seccompProfile") or {}
        ).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{cname}: seccompProfile is {seccomp!r}")
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                problems.append(f"{cname}: hostPort {port['hostPort']}")
    return problems


def sizing_violations(where: str, containers: list[dict[str, Any]]) -> list[str]:
    """List containers without cpu and memory requests and limits."""
    problems = []
    for container in containers:
        resources = container.get("resources") or {}
        for bound in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in (resources.get(bound) or {}):
                    problems.append(
                        f"{where} container {container.get('name', 'model')}: "
                        f"no {resource} {bound[:-1]}"
                    )
    return problems


def check_workloads(objects: list[dict[str, Any]]) -> list[str]:
    """All restricted-PSS and sizing problems of a rendered stack."""
    problems: list[str] = []
    for obj in objects:
        runtime = obj["kind"] in ("ServingRuntime", "ClusterServingRuntime")
        for where, pod, containers in pod_specs(obj):
            problems += restricted_violations(where, pod, containers, runtime=runtime)
            problems += sizing_violations(where, containers)
    return problems


def object_ids(objects: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(kind, name) of every object."""
    return {(obj["kind"], obj["metadata"]["name"]) for obj in objects}
