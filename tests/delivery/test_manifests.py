"""The kustomize stack: it renders, validates, and meets plumb's delivery rules."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from components.common import images
from components.delivery.models import KINDS, ModelFieldError, round_trip

from .checks import check_workloads, object_ids
from .conftest import ENVIRONMENTS, MANIFESTS

CORE_API_GROUPS = (
    "v1",
    "apps/v1",
    "rbac.authorization.k8s.io/v1",
    "networking.k8s.io/v1",
)
KUBERNETES_VERSION = "1.32.0"


def _core(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["apiVersion"] in CORE_API_GROUPS]


def _find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"].startswith(name):
            return obj
    raise AssertionError(f"no {kind}/{name} in {sorted(object_ids(objects))}")


def _is_subset(small: Any, big: Any) -> bool:
    """Whether every field of `small` appears, equal, in `big` (SDK defaults aside)."""
    if isinstance(small, dict):
        return isinstance(big, dict) and all(
            key in big and _is_subset(value, big[key]) for key, value in small.items()
        )
    if isinstance(small, list):
        return (
            isinstance(big, list)
            and len(small) == len(big)
            and all(_is_subset(a, b) for a, b in zip(small, big, strict=True))
        )
    return bool(small == big)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_overlay_renders_into_its_namespace(
    overlays: dict[str, list[dict[str, Any]]], env: str
) -> None:
    """Each overlay renders with kubectl kustomize, every object in plumb-<env>."""
    objects = overlays[env]
    namespaced = [obj for obj in objects if obj["kind"] != "Namespace"]
    assert {obj["metadata"].get("namespace") for obj in namespaced} == {f"plumb-{env}"}
    assert _find(objects, "Namespace", f"plumb-{env}")
    isvc = _find(objects, "InferenceService", "plumb-model")
    predictor = isvc["spec"]["predictor"]
    assert predictor["model"]["storageUri"].startswith(f"s3://plumb-models/{env}/")
    assert predictor["logger"]["url"] == (
        f"http://plumb-monitor.plumb-{env}.svc.cluster.local/events"
    )
    binding = _find(objects, "RoleBinding", "plumb-pipeline")
    assert binding["subjects"][0]["namespace"] == f"plumb-{env}"
    config = _find(objects, "ConfigMap", "plumb-monitor-config")
    assert config["data"]["PLUMB_MONITOR_MODEL_URI"] == predictor["model"]["storageUri"]


def test_overlays_differ_in_size_and_features(
    overlays: dict[str, list[dict[str, Any]]],
) -> None:
    """prod runs more replicas than dev; dev has the Evidently UI, prod the canary rules."""
    dev = _find(overlays["dev"], "InferenceService", "plumb-model")["spec"]["predictor"]
    prod = _find(overlays["prod"], "InferenceService", "plumb-model")["spec"][
        "predictor"
    ]
    assert prod["minReplicas"] > dev["minReplicas"]
    assert ("Deployment", "plumb-evidently-ui") in object_ids(overlays["dev"])
    assert ("PrometheusRule", "plumb-canary") in object_ids(overlays["prod"])
    assert ("Secret", "plumb-monitor-token") in object_ids(overlays["dev"])
    assert ("Secret", "plumb-monitor-token") not in object_ids(overlays["prod"])


def test_every_component_renders(all_components: list[dict[str, Any]]) -> None:
    """The base with gpu-serving, canary and evidently-ui together renders and patches."""
    runtime = _find(all_components, "ServingRuntime", "plumb-onnx")
    assert runtime["spec"]["containers"][0]["image"] == f"{images.PREDICTOR_IMAGE}-gpu"
    isvc = _find(all_components, "InferenceService", "plumb-model")
    limits = isvc["spec"]["predictor"]["model"]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"
    assert limits["cpu"] == "1", "the GPU patch must keep the base's CPU limit"
    assert ("Deployment", "plumb-evidently-ui") in object_ids(all_components)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_core_kinds_pass_kubernetes_validate_strict(
    overlays: dict[str, list[dict[str, Any]]], env: str
) -> None:
    """Core objects validate against Kubernetes' schemas with unknown fields rejected."""
    core = _core(overlays[env])
    assert len(core) >= 12
    for obj in core:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_kubernetes_validate_catches_a_misspelled_field(
    overlays: dict[str, list[dict[str, Any]]],
) -> None:
    """The strict validation used above rejects an unknown field (it can fail)."""
    deployment = copy.deepcopy(_find(overlays["dev"], "Deployment", "plumb-monitor"))
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_custom_resources_round_trip_through_the_kserve_models(
    overlays: dict[str, list[dict[str, Any]]], env: str
) -> None:
    """InferenceService and ServingRuntime load strictly into kserve's SDK models."""
    kinds = {kind for _, kind in KINDS}
    customs = [obj for obj in overlays[env] if obj["kind"] in kinds]
    assert {obj["kind"] for obj in customs} == {"InferenceService", "ServingRuntime"}
    for obj in customs:
        back = round_trip(obj)
        assert _is_subset(obj, back), f"{obj['kind']} changed in the round trip"


def test_round_trip_rejects_a_misspelled_field(
    overlays: dict[str, list[dict[str, Any]]],
) -> None:
    """A misspelled InferenceService field is an error naming its path."""
    isvc = copy.deepcopy(_find(overlays["prod"], "InferenceService", "plumb-model"))
    isvc["spec"]["predictor"]["model"]["storageUrl"] = "s3://x"
    with pytest.raises(ModelFieldError, match=r"spec\.predictor\.model\.storageUrl"):
        round_trip(isvc)


def test_monitoring_objects_target_the_monitor(
    overlays: dict[str, list[dict[str, Any]]],
) -> None:
    """ServiceMonitor selects the monitor's Service port; the alert reads plumb_drift_share."""
    objects = overlays["prod"]
    service = _find(objects, "Service", "plumb-monitor")
    monitor = _find(objects, "ServiceMonitor", "plumb-monitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    port_names = {port["name"] for port in service["spec"]["ports"]}
    assert {ep["port"] for ep in monitor["spec"]["endpoints"]} <= port_names
    assert service["spec"]["ports"][0]["port"] == 80
    rules = _find(objects, "PrometheusRule", "plumb-drift")["spec"]["groups"][0][
        "rules"
    ]
    drift = next(rule for rule in rules if rule["alert"] == "PlumbDataDrift")
    assert "plumb_drift_share" in drift["expr"]
    dashboard = _find(objects, "ConfigMap", "plumb-grafana-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert "plumb_drift_share" in dashboard["data"]["plumb-drift.json"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_pods_meet_restricted_pod_security_and_have_sizes(
    overlays: dict[str, list[dict[str, Any]]], env: str
) -> None:
    """Every pod is "restricted"-compliant, read-only, and has requests and limits."""
    assert check_workloads(overlays[env]) == []
    namespace = _find(overlays[env], "Namespace", f"plumb-{env}")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == (
        "restricted"
    )


def test_restricted_check_catches_a_root_container(
    overlays: dict[str, list[dict[str, Any]]],
) -> None:
    """The Pod Security check above fails on a container that may escalate (it can fail)."""
    deployment = copy.deepcopy(_find(overlays["dev"], "Deployment", "plumb-monitor"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["allowPrivilegeEscalation"] = True
    del container["resources"]["limits"]
    problems = check_workloads([deployment])
    assert any("allowPrivilegeEscalation" in p for p in problems)
    assert any("no cpu limit" in p for p in problems)


def test_pipeline_role_is_least_privilege(
    overlays: dict[str, list[dict[str, Any]]],
) -> None:
    """The pipeline may create InferenceServices and training jobs, and nothing more."""
    role = _find(overlays["prod"], "Role", "plumb-pipeline")
    writes: set[tuple[str, str]] = set()
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
        assert "secrets" not in rule["resources"]
        for resource in rule["resources"]:
            for group in rule["apiGroups"]:
                if set(rule["verbs"]) & {"create", "update", "patch", "delete"}:
                    writes.add((group, resource))
    assert writes == {
        ("serving.kserve.io", "inferenceservices"),
        ("trainer.kubeflow.org", "trainjobs"),
        ("kubeflow.org", "pytorchjobs"),
        ("kubeflow.org", "tfjobs"),
    }
    assert not any(obj["kind"].startswith("Cluster") for obj in overlays["prod"])


def test_network_policies_cover_every_pod(
    overlays: dict[str, list[dict[str, Any]]],
) -> None:
    """A default-deny policy exists and each workload has a policy letting its port in."""
    objects = overlays["dev"]
    policies = [obj for obj in objects if obj["kind"] == "NetworkPolicy"]
    assert any(p["spec"]["podSelector"] == {} for p in policies)
    for deployment in (obj for obj in objects if obj["kind"] == "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        ports = {
            port["containerPort"]
            for c in deployment["spec"]["template"]["spec"]["containers"]
            for port in c.get("ports", [])
        }
        allowed = {
            rule_port["port"]
            for policy in policies
            if policy["spec"]["podSelector"].get("matchLabels", {}).items()
            <= labels.items()
            and policy["spec"]["podSelector"]
            for rule in policy["spec"].get("ingress", [])
            for rule_port in rule.get("ports", [])
        }
        assert ports <= allowed, (
            f"{deployment['metadata']['name']}: {ports} vs {allowed}"
        )


def test_images_come_from_components_common_images() -> None:
    """Every plumb image in manifests/ is one images.py names (one place sets the tag)."""
    known = {image.ref for image in images.IMAGES}
    known |= {f"{images.PREDICTOR_IMAGE}-gpu"}
    pattern = re.compile(rf"image:\s*({re.escape(images.REGISTRY)}/\S+)")
    found = {
        match
        for path in MANIFESTS.rglob("*.yaml")
        for match in pattern.findall(path.read_text(encoding="utf-8"))
    }
    assert found, "no plumb image found in manifests/"
    assert found <= known, f"images not named in images.py: {found - known}"


def test_files_are_named_kind_dot_name() -> None:
    """Each manifest file is <kind>.<name>.yaml after the object it holds."""
    for path in MANIFESTS.rglob("*.yaml"):
        if path.name == "kustomization.yaml":
            continue
        docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        assert len(docs) == 1, f"{path}: one object per file"
        expected = f"{docs[0]['kind'].lower()}.{docs[0]['metadata']['name']}.yaml"
        assert path.name == expected, f"{path} should be named {expected}"


def test_every_generator_literal_has_a_comment() -> None:
    """Each literal/file/env entry of a generator has a comment line right above it."""
    checked = 0
    for path in MANIFESTS.rglob("kustomization.yaml"):
        lines = path.read_text(encoding="utf-8").splitlines()
        key_indent: int | None = None
        for index, line in enumerate(lines):
            stripped = line.strip()
            indent = len(line) - len(line.lstrip())
            if stripped in ("literals:", "files:", "envs:"):
                key_indent = indent
                continue
            if key_indent is None or stripped.startswith("#"):
                continue
            if stripped.startswith("- ") and indent >= key_indent:
                previous = lines[index - 1].strip()
                assert previous.startswith("#"), f"{path}:{index + 1} lacks a comment"
                checked += 1
            else:
                key_indent = None
    for path in MANIFESTS.rglob("*.env"):
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        for index, line in enumerate(lines):
            if line and not line.startswith("#"):
                assert lines[index - 1].startswith("#"), f"{path}:{index + 1}"
                checked += 1
    assert checked >= 10


def test_argocd_applications_point_at_the_overlays() -> None:
    """Argo CD covers every overlay with server-side apply; prod syncs by hand only."""
    from .conftest import kustomize

    objects = kustomize(MANIFESTS / "argocd")
    appset = _find(objects, "ApplicationSet", "plumb")
    envs = {el["env"] for el in appset["spec"]["generators"][0]["list"]["elements"]}
    prod = _find(objects, "Application", "plumb-prod")
    assert envs | {"prod"} == set(ENVIRONMENTS)
    template = appset["spec"]["template"]["spec"]
    for spec in (template, prod["spec"]):
        assert "ServerSideApply=true" in spec["syncPolicy"]["syncOptions"]
        assert spec["source"]["path"].startswith("manifests/overlays/")
    assert "automated" not in prod["spec"]["syncPolicy"]
    for env in ENVIRONMENTS:
        assert (MANIFESTS / "overlays" / env / "kustomization.yaml").is_file()
