"""checkov over manifests/ and charts/: every finding is fixed or skipped with a reason."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import CHART, MANIFESTS, ROOT, require_tool, run_tool

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """One checkov run over both stacks (kubernetes, helm and kustomize frameworks)."""
    checkov = require_tool("checkov")
    require_tool("helm")
    require_tool("kubectl")
    out_dir = tmp_path_factory.mktemp("checkov")
    run_tool(
        checkov,
        "--directory",
        str(MANIFESTS.relative_to(ROOT)),
        "--directory",
        str(CHART.parent.relative_to(ROOT)),
        "--framework",
        "kubernetes,helm,kustomize",
        "--skip-download",
        "--output",
        "json",
        "--output-file-path",
        str(out_dir),
        timeout=600,
    )
    data = json.loads((out_dir / "results_json.json").read_text())
    return data if isinstance(data, list) else [data]


def test_checkov_finds_no_unskipped_failure(reports: list[dict[str, Any]]) -> None:
    """No failed check in any framework, and all three frameworks scanned something."""
    failures = [
        f"{report['check_type']}: {check['check_id']} {check['resource']} "
        f"({check['file_path']}): {check['check_name']}"
        for report in reports
        for check in report["results"].get("failed_checks", [])
    ]
    assert failures == []
    scanned = {r["check_type"]: r["summary"]["passed"] for r in reports}
    assert set(scanned) == {"kubernetes", "helm", "kustomize"}
    assert all(count > 50 for count in scanned.values()), scanned


def test_every_skip_carries_a_written_reason(reports: list[dict[str, Any]]) -> None:
    """Each skipped check was skipped in the manifest with a reason of a sentence."""
    skipped = [
        check for report in reports for check in report["results"]["skipped_checks"]
    ]
    assert skipped, "expected the documented digest/namespace skips"
    for check in skipped:
        reason = (check.get("check_result") or {}).get("suppress_comment") or ""
        assert len(reason.split()) >= 5, f"{check['check_id']} skipped without reason"
