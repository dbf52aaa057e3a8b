"""The Helm chart: lint, render every scenario, schema, and parity with kustomize."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from components.common import images
from components.delivery.models import round_trip

from .checks import check_workloads, object_ids
from .conftest import CHART, MANIFESTS, helm_template, kustomize, require_tool, run_tool

SCENARIOS = sorted((CHART / "ci").glob("*-values.yaml"))
CORE_API_GROUPS = (
    "v1",
    "apps/v1",
    "rbac.authorization.k8s.io/v1",
    "networking.k8s.io/v1",
)
KSERVE_KINDS = ("InferenceService", "ServingRuntime")
HASH_SUFFIX = re.compile(r"-[a-z0-9]{10}$")


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """The chart rendered once per scenario values file."""
    return {path.name: helm_template(path) for path in SCENARIOS}


def test_there_is_a_scenario_per_feature() -> None:
    """Each optional feature of values.yaml has its own ci/<scenario>-values.yaml."""
    names = {path.name for path in SCENARIOS}
    for feature in ("canary-standard", "canary-knative", "gpu-serving", "evidently-ui"):
        assert f"{feature}-values.yaml" in names


@pytest.mark.parametrize("values", SCENARIOS, ids=lambda p: p.stem)
def test_helm_lint_strict(values: Path) -> None:
    """`helm lint --strict` passes for every scenario."""
    helm = require_tool("helm")
    output = run_tool(helm, "lint", "--strict", str(CHART), "--values", str(values))
    assert "0 chart(s) failed" in output


def test_every_scenario_renders_valid_restricted_objects(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """Each scenario renders; core kinds pass kubernetes-validate --strict, KServe kinds
    round-trip through their SDK models, and every pod meets "restricted"."""
    for name, objects in rendered.items():
        assert objects, name
        for obj in objects:
            if obj["apiVersion"] in CORE_API_GROUPS:
                kubernetes_validate.validate(obj, "1.32.0", strict=True)
            if obj["kind"] in KSERVE_KINDS:
                back = round_trip(obj)
                assert back["spec"].keys() >= obj["spec"].keys(), name
        assert check_workloads(objects) == [], name


def test_canary_takes_the_form_its_deployment_mode_honours(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """Standard mode renders spec.canary; Knative mode renders canaryTrafficPercent."""
    standard = _isvc(rendered["canary-standard-values.yaml"])
    assert standard["spec"]["canary"][0]["trafficPercent"] == 10
    assert "canaryTrafficPercent" not in standard["spec"]["predictor"]
    knative = _isvc(rendered["canary-knative-values.yaml"])
    assert knative["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == (
        "Knative"
    )
    assert knative["spec"]["predictor"]["canaryTrafficPercent"] == 20
    assert "canary" not in knative["spec"]


def test_gpu_scenario_asks_for_gpus(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """GPU serving uses the -gpu predictor image and requests nvidia.com/gpu."""
    objects = rendered["gpu-serving-values.yaml"]
    runtime = next(obj for obj in objects if obj["kind"] == "ServingRuntime")
    assert runtime["spec"]["containers"][0]["image"] == f"{images.PREDICTOR_IMAGE}-gpu"
    limits = _isvc(objects)["spec"]["predictor"]["model"]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"


def test_schema_rejects_unknown_and_out_of_range_values(tmp_path: Path) -> None:
    """values.schema.json refuses a misspelled key and a value outside its enum."""
    helm = require_tool("helm")
    import subprocess

    for bad in (
        {"inferenceService": {"deploymentMode": "Serverless"}},
        {"inferenceService": {"storageURI": "s3://x"}},
        {"inferenceService": {"canary": {"trafficPercent": 150}}},
    ):
        path = tmp_path / "bad-values.yaml"
        path.write_text(yaml.safe_dump(bad))
        result = subprocess.run(
            [helm, "template", "plumb", str(CHART), "--values", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode != 0, f"accepted {bad}"
        assert "schema" in result.stderr.lower() or "values" in result.stderr.lower()


def test_schema_documents_every_value() -> None:
    """Every key of values.yaml has a `# --` comment and a schema description."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: dict[str, Any], props: dict[str, Any], prefix: str) -> None:
        assert props.get("additionalProperties") is False, prefix or "root"
        assert set(props.get("required", [])) == set(node), prefix or "root"
        for key, value in node.items():
            sub = props["properties"][key]
            assert sub.get("description"), f"{prefix}{key} has no description"
            if isinstance(value, dict) and sub.get("properties"):
                walk(value, sub, f"{prefix}{key}.")

    walk(values, schema, "")

    # Keys the schema documents as a whole (no sub-properties) are the chart's values;
    # each needs a `# --` comment block right above its line.
    leaves: set[str] = set()

    def collect(props: dict[str, Any], prefix: str) -> None:
        for key, sub in props.get("properties", {}).items():
            # `resources` maps are documented as one value, like a leaf.
            if sub.get("properties") and key != "resources":
                collect(sub, f"{prefix}{key}.")
            else:
                leaves.add(f"{prefix}{key}")

    collect(schema, "")
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str]] = []
    seen: set[str] = set()
    for index, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z][\w.]*):", line)
        if not match:
            continue
        indent = len(match[1])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([key for _, key in stack] + [match[2]])
        stack.append((indent, match[2]))
        if path not in leaves:
            continue
        seen.add(path)
        block = []
        for prev in reversed(lines[:index]):
            if not prev.strip().startswith("#"):
                break
            block.append(prev.strip())
        assert any(c.startswith("# --") for c in block), f"{path} lacks `# --`"
    assert seen == leaves


def test_helm_and_kustomize_install_the_same_objects(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """Default chart values and manifests/base produce the same kinds and names."""
    chart = _without_tests(rendered["namespace-values.yaml"])
    base = kustomize(MANIFESTS / "base")
    normalise = {(kind, HASH_SUFFIX.sub("", name)) for kind, name in object_ids(base)}
    chart_ids = object_ids(chart)
    assert chart_ids == normalise, (
        f"only in helm: {sorted(chart_ids - normalise)}; "
        f"only in kustomize: {sorted(normalise - chart_ids)}"
    )


def test_features_match_the_kustomize_components(
    rendered: dict[str, list[dict[str, Any]]], all_components: list[dict[str, Any]]
) -> None:
    """The chart's evidently-ui and canary scenarios add what the components add."""
    base = object_ids(kustomize(MANIFESTS / "base"))
    added_by_components = object_ids(all_components) - base
    chart_default = object_ids(_without_tests(rendered["default-values.yaml"]))
    chart_features = object_ids(
        _without_tests(rendered["evidently-ui-values.yaml"])
    ) | object_ids(_without_tests(rendered["canary-standard-values.yaml"]))
    assert chart_features - chart_default == added_by_components


def test_helm_test_pod_calls_the_predictor(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """The `helm test` hook pod calls the predictor's Service on its V2/V1 routes."""
    pod = next(
        obj
        for obj in rendered["default-values.yaml"]
        if obj["kind"] == "Pod"
        and obj["metadata"]["annotations"].get("helm.sh/hook") == "test"
    )
    container = pod["spec"]["containers"][0]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["PREDICTOR_URL"] == (
        "http://plumb-model-predictor.plumb.svc.cluster.local"
    )
    script = container["command"][-1]
    assert "/v2/health/ready" in script and "/v1/models/" in script
    compile(script, "helm-test", "exec")


def test_dashboard_is_the_same_file_in_both_stacks() -> None:
    """The chart's copy of the Grafana dashboard equals the kustomize one."""
    assert (CHART / "files" / "plumb-drift.json").read_bytes() == (
        MANIFESTS / "base" / "dashboards" / "plumb-drift.json"
    ).read_bytes()


def test_chart_app_version_is_the_image_tag() -> None:
    """Chart.yaml's appVersion is the image tag images.py sets."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert chart["appVersion"] == images.TAG
    assert values["images"]["registry"] == images.REGISTRY
    assert chart["kubeVersion"]


def _isvc(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return next(obj for obj in objects if obj["kind"] == "InferenceService")


def _without_tests(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        obj
        for obj in objects
        if "helm.sh/hook" not in (obj["metadata"].get("annotations") or {})
    ]


def test_notes_tell_how_to_reach_and_test_the_model() -> None:
    """NOTES.txt (rendered by a client-side dry-run install) names the model and checks."""
    helm = require_tool("helm")
    output = run_tool(
        helm,
        "install",
        "plumb",
        str(CHART),
        "--namespace",
        "plumb",
        "--dry-run=client",
        "--values",
        str(CHART / "ci" / "canary-standard-values.yaml"),
    )
    notes = output.split("NOTES:", 1)[1]
    assert "inferenceservice/plumb-model" in notes
    assert "canary: 10% of traffic to s3://plumb-models/prod/plumb-model/v3" in notes
    assert "helm test plumb -n plumb" in notes
    assert "create secret generic plumb-monitor-token" in notes
