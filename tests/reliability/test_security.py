"""Locked-down pods everywhere plumb creates them, secrets only from Secrets, pinned deps.

tests/delivery checks the kustomize overlays and every Helm scenario pod by pod; this
module adds the pods plumb's code creates at run time (the InferenceService the deploy
step emits, the training jobs the train step submits), then looks across all stacks at
once: the monitor's feedback token only ever comes from a Secret, no Secret value is
committed outside the dev-only stacks, RBAC grants no wildcard and no cluster scope,
and every dependency is pinned.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.common.config import PlumbConfig
from components.deploy.inference_service import build_inference_service, to_manifest
from components.train.cluster import render_pytorchjob, render_tfjob, render_trainjob

ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = ROOT / ".tools" / "bin"
DEV_ONLY = {"dev", "dev-token-values"}
"""Stacks allowed to carry a throwaway feedback token (laptop clusters only)."""


def _load_checks() -> Any:
    # tests/delivery/checks.py holds the "restricted" and sizing checks; it is loaded
    # by path so this module does not depend on how pytest imports that package.
    spec = importlib.util.spec_from_file_location(
        "delivery_checks", ROOT / "tests" / "delivery" / "checks.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


checks = _load_checks()


def _tool(name: str) -> str:
    local = TOOLS_BIN / name
    found = str(local) if os.access(local, os.X_OK) else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed; run scripts/install-tools.sh")
    return found


def _render(*args: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        list(args), cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def stacks() -> dict[str, list[dict[str, Any]]]:
    """Every kustomize overlay and every Helm scenario, rendered once."""
    kubectl = _tool("kubectl")
    helm = _tool("helm")
    rendered = {
        overlay.name: _render(kubectl, "kustomize", str(overlay))
        for overlay in sorted((ROOT / "manifests" / "overlays").iterdir())
    }
    chart = ROOT / "charts" / "plumb"
    for values in sorted((chart / "ci").glob("*-values.yaml")):
        rendered[values.stem] = _render(
            helm,
            "template",
            "plumb",
            str(chart),
            "--namespace",
            "plumb",
            "-f",
            str(values),
        )
    return rendered


def _deployment(**deployment: Any) -> PlumbConfig:
    return PlumbConfig.model_validate({"deployment": deployment})


@pytest.mark.parametrize(
    "deployment",
    [
        pytest.param({}, id="standard"),
        pytest.param({"deployment_mode": "Knative"}, id="knative"),
        pytest.param(
            {"deployment_mode": "Knative", "canary_traffic_percent": 10},
            id="knative-canary",
        ),
        pytest.param(
            {
                "canary_traffic_percent": 10,
                "stable_storage_uri": "pvc://plumb-models/stable",
            },
            id="standard-canary",
        ),
        pytest.param({"gpu_count": 1}, id="gpu"),
    ],
)
def test_emitted_inference_service_is_restricted_and_sized(
    deployment: dict[str, Any],
) -> None:
    """The InferenceService the deploy step writes meets "restricted" in every form."""
    config = _deployment(**deployment).deployment
    manifest = to_manifest(
        build_inference_service(config, storage_uri="pvc://plumb-models/new")
    )
    pods = list(checks.pod_specs(manifest))
    assert len(pods) == (2 if "stable_storage_uri" in deployment else 1)
    for where, pod, containers in pods:
        assert checks.restricted_violations(where, pod, containers, runtime=False) == []
        assert checks.sizing_violations(where, containers) == []


def _training(**cluster: Any) -> PlumbConfig:
    return PlumbConfig.model_validate(
        {"training": {"backend": "pytorchjob", "workers": 2, "cluster": cluster}}
    )


def _trainjob_pods(body: dict[str, Any]) -> list[tuple[str, dict, list[dict]]]:
    (patch,) = body["spec"]["runtimePatches"]
    (job,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    pod = job["template"]["spec"]["template"]["spec"]
    # The runtime's trainer container gets resourcesPerNode and this patch merged in.
    containers = [
        {**container, "resources": body["spec"]["trainer"]["resourcesPerNode"]}
        for container in pod["containers"]
    ]
    return [("TrainJob node", pod, containers)]


def _v1_job_pods(body: dict[str, Any]) -> list[tuple[str, dict, list[dict]]]:
    replicas = body["spec"].get("pytorchReplicaSpecs") or body["spec"]["tfReplicaSpecs"]
    return [
        (
            f"{body['kind']} {role}",
            spec["template"]["spec"],
            spec["template"]["spec"]["containers"],
        )
        for role, spec in replicas.items()
    ]


@pytest.mark.parametrize("volume_claim", [None, "plumb-shared"])
def test_training_job_pods_are_restricted_and_sized(volume_claim: str | None) -> None:
    """TrainJob, PyTorchJob and TFJob workers run restricted, with a writable /tmp."""
    training = _training(volume_claim=volume_claim).training
    pods = _trainjob_pods(render_trainjob(training, name="t", spec_path="/s.json"))
    pods += _v1_job_pods(render_pytorchjob(training, name="t", spec_path="/s.json"))
    pods += _v1_job_pods(
        render_tfjob(training, name="t", command=["python", "-m", "x"])
    )
    assert len(pods) == 4  # TrainJob, PyTorchJob Master and Worker, TFJob Worker
    for where, pod, containers in pods:
        assert checks.restricted_violations(where, pod, containers, runtime=False) == []
        assert checks.sizing_violations(where, containers) == []
        (container,) = containers
        mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
        assert "/tmp" in mounts
        if volume_claim:
            assert "/mnt/plumb" in mounts


def test_monitor_token_only_ever_comes_from_a_secret(
    stacks: dict[str, list[dict[str, Any]]],
) -> None:
    """In every stack the monitor reads PLUMB_MONITOR_TOKEN from a Secret reference."""
    for name, objects in stacks.items():
        (monitor,) = [
            obj
            for obj in objects
            if obj["kind"] == "Deployment"
            and obj["metadata"]["name"].endswith("monitor")
        ]
        (container,) = monitor["spec"]["template"]["spec"]["containers"]
        (token,) = [
            env for env in container["env"] if env["name"] == "PLUMB_MONITOR_TOKEN"
        ]
        assert "value" not in token, name
        assert token["valueFrom"]["secretKeyRef"]["key"], name


def test_no_secret_value_outside_the_dev_stacks(
    stacks: dict[str, list[dict[str, Any]]],
) -> None:
    """Only the dev overlay and the dev-token scenario render a Secret with data."""
    holding = {
        name
        for name, objects in stacks.items()
        for obj in objects
        if obj["kind"] == "Secret" and (obj.get("data") or obj.get("stringData"))
    }
    assert holding <= DEV_ONLY, holding
    assert {"prod", "staging", "default-values"} <= set(stacks)


SECRET_PATTERNS = {
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36}\b"),
    "Slack token": re.compile(r"\bxox[abpr]-[A-Za-z0-9-]{10,}"),
    "bearer literal": re.compile(r"Bearer [A-Za-z0-9._~+/-]{24,}"),
}


def test_no_credential_is_committed() -> None:
    """No tracked file holds a private key or a cloud, GitHub, Slack or bearer token."""
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    found = []
    for name in files:
        path = ROOT / name
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        text = path.read_text(encoding="utf-8", errors="ignore")
        found += [
            f"{name}: {what}" for what, p in SECRET_PATTERNS.items() if p.search(text)
        ]
    assert found == []


def test_rbac_has_no_wildcards_secrets_or_cluster_scope(
    stacks: dict[str, list[dict[str, Any]]],
) -> None:
    """Every Role grants named verbs on named resources, never Secrets or cluster scope."""
    for name, objects in stacks.items():
        kinds = {obj["kind"] for obj in objects}
        assert not kinds & {"ClusterRole", "ClusterRoleBinding"}, name
        for role in (obj for obj in objects if obj["kind"] == "Role"):
            for rule in role["rules"]:
                assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
                assert "secrets" not in rule["resources"], name
        for account in (obj for obj in objects if obj["kind"] == "ServiceAccount"):
            # Pods that do not call the API get no token mounted.
            if account["metadata"]["name"].endswith("monitor"):
                assert account.get("automountServiceAccountToken") is False, name


def test_every_stack_denies_ingress_by_default(
    stacks: dict[str, list[dict[str, Any]]],
) -> None:
    """Each stack denies ingress by default, unless its values turn policies off."""
    # A cluster that brings its own policies sets networkPolicy.enabled false.
    opted_out = {
        path.stem
        for path in (ROOT / "charts" / "plumb" / "ci").glob("*-values.yaml")
        if (yaml.safe_load(path.read_text()).get("networkPolicy") or {}).get("enabled")
        is False
    }
    assert opted_out == {"minimal-values"}
    for name, objects in stacks.items():
        if name in opted_out:
            continue
        policies = [obj for obj in objects if obj["kind"] == "NetworkPolicy"]
        assert any(
            policy["spec"]["podSelector"] == {}
            and policy["spec"].get("policyTypes") == ["Ingress"]
            and not policy["spec"].get("ingress")
            for policy in policies
        ), name


def test_every_dependency_is_pinned_exactly() -> None:
    """Runtime and dev dependencies in pyproject.toml are all `name==version`."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [
        item for extra in project["optional-dependencies"].values() for item in extra
    ]
    loose = [
        item
        for item in requirements
        if not re.fullmatch(r"[\w.\-\[\]]+==[\w.+]+", item)
    ]
    assert loose == []


def test_events_token_when_set_guards_ingest(
    trained_model_dir: Path,
    tmp_path: Path,
    good_rows: list[list[float]],
    feature_names: list[str],
) -> None:
    """With an events token set, /events answers 401 without it or with another token."""
    from fastapi.testclient import TestClient
    from reliability_helpers import event_headers

    from components.monitoring.service import Monitor, build_app

    monitor = Monitor(
        model_dir=trained_model_dir,
        state_dir=tmp_path / "state",
        config=PlumbConfig().monitoring,
        feedback_token="feedback-secret",
        events_token="events-secret",
    )
    body = json.dumps(
        {"instances": [dict(zip(feature_names, good_rows[0], strict=True))]}
    )
    with TestClient(build_app(monitor)) as client:
        for auth, status in (
            (None, 401),
            ("Bearer feedback-secret", 401),
            ("Bearer events-secret", 200),
        ):
            headers = event_headers("request")
            if auth:
                headers["Authorization"] = auth
            reply = client.post("/events", content=body, headers=headers)
            assert reply.status_code == status, reply.text


def test_serving_runtime_caps_request_size_in_every_stack(
    stacks: dict[str, list[dict[str, Any]]],
) -> None:
    """The predictor container is started with explicit row and byte caps everywhere."""
    for name, objects in stacks.items():
        for runtime in (obj for obj in objects if obj["kind"] == "ServingRuntime"):
            (container,) = runtime["spec"]["containers"]
            caps = {
                arg.split("=")[0]: int(arg.split("=")[1])
                for arg in container["args"]
                if arg.startswith(("--max-rows=", "--max-body-bytes="))
            }
            assert set(caps) == {"--max-rows", "--max-body-bytes"}, name
            assert all(value >= 1 for value in caps.values()), name
