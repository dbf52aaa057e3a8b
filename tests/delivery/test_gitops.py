"""`plumb promote` and `plumb canary` on a temporary git repository with real overlays."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.delivery.errors import GateFailedError, GitOpsError
from components.delivery.gitops import (
    finish_canary,
    promote,
    read_overlay_model,
    rollback_canary,
)
from components.delivery.models import round_trip

from .checks import check_workloads
from .conftest import MANIFESTS, ROOT, kustomize

METRICS = {"roc_auc": 0.991, "accuracy": 0.956, "log_loss": 0.12}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def _commits(repo: Path) -> int:
    return int(_git(repo, "rev-list", "--count", "HEAD").strip())


def _model_dir(root: Path, name: str, verdict: dict[str, Any] | None) -> str:
    folder = root / "models" / name
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"onnx")
    if verdict is not None:
        (folder / "verdict.json").write_text(json.dumps(verdict))
    return folder.as_uri()


def _set_overlay_uri(repo: Path, env: str, uri: str, version: str) -> None:
    path = repo / "manifests" / "overlays" / env / "inferenceservice.plumb-model.yaml"
    text = path.read_text()
    header = "".join(line for line in text.splitlines(True) if line.startswith("#"))
    patch = yaml.safe_load(text)
    patch["spec"]["predictor"]["model"]["storageUri"] = uri
    patch["metadata"]["labels"]["plumb.dev/model-version"] = version
    path.write_text(header + yaml.safe_dump(patch, sort_keys=False))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repo holding plumb's manifests; staging serves v2 (passed), prod v1."""
    root = tmp_path / "gitops"
    shutil.copytree(MANIFESTS, root / "manifests")
    v1 = _model_dir(tmp_path, "v1", {"passed": True, "reasons": [], "metrics": METRICS})
    v2 = _model_dir(
        tmp_path,
        "v2",
        {
            "passed": True,
            "reasons": ["roc_auc 0.9950 >= 0.6"],
            "metrics": {"roc_auc": 0.995, "accuracy": 0.960, "log_loss": 0.10},
        },
    )
    _set_overlay_uri(root, "staging", v2, "v2")
    _set_overlay_uri(root, "prod", v1, "v1")
    _git(root, "init", "--quiet", "--initial-branch=main")
    _git(root, "config", "user.email", "ci@plumb.invalid")
    _git(root, "config", "user.name", "plumb ci")
    _git(root, "add", "-A")
    _git(root, "commit", "--quiet", "-m", "initial")
    return root


def test_passed_gate_makes_one_commit_with_the_new_uri(repo: Path) -> None:
    """A passed verdict: one commit; prod's overlay runs the new model as a 10% canary."""
    staging = read_overlay_model(repo, "staging")
    change = promote(repo, source_env="staging", target_env="prod", canary_percent=10)

    assert _commits(repo) == 2
    assert _git(repo, "status", "--porcelain") == ""
    assert "roc_auc: 0.9950" in change.message and "(canary 10%)" in change.message
    assert _git(repo, "log", "-1", "--format=%B").strip() == change.message.strip()
    patch_text = (
        repo / "manifests/overlays/prod/inferenceservice.plumb-model.yaml"
    ).read_text()
    assert staging.storage_uri in patch_text
    assert patch_text.startswith("# The model prod serves.")

    prod = read_overlay_model(repo, "prod")
    assert prod.canary_percent == 10
    assert prod.canary_storage_uri == staging.storage_uri
    assert prod.canary_version == "v2" and prod.version == "v1"

    # The edited overlay still renders into a valid, restricted InferenceService.
    objects = kustomize(repo / "manifests/overlays/prod")
    isvc = next(obj for obj in objects if obj["kind"] == "InferenceService")
    assert isvc["spec"]["canary"][0]["predictor"]["model"]["storageUri"] == (
        staging.storage_uri
    )
    round_trip(isvc)
    assert check_workloads([isvc]) == []


@pytest.mark.parametrize(
    "verdict",
    [
        {"passed": False, "reasons": ["roc_auc 0.41 < 0.6"], "metrics": {}},
        None,
        "not json",
    ],
    ids=["failed", "missing", "corrupt"],
)
def test_failed_or_missing_gate_makes_no_commit(
    repo: Path, tmp_path: Path, verdict: Any
) -> None:
    """A failed, missing or unreadable verdict is refused and nothing changes."""
    bad = tmp_path / "bad"
    bad.mkdir()
    if isinstance(verdict, dict):
        (bad / "verdict.json").write_text(json.dumps(verdict))
    elif isinstance(verdict, str):
        (bad / "verdict.json").write_text(verdict)
    _set_overlay_uri(repo, "staging", bad.as_uri(), "v3")
    _git(repo, "commit", "--quiet", "-am", "staging serves v3")
    before = _git(repo, "rev-parse", "HEAD")

    with pytest.raises(GateFailedError) as info:
        promote(repo, source_env="staging", target_env="prod")

    assert _git(repo, "rev-parse", "HEAD") == before
    assert _git(repo, "status", "--porcelain") == ""
    if isinstance(verdict, dict):
        assert "roc_auc 0.41 < 0.6" in str(info.value)


def test_dirty_tree_is_refused(repo: Path) -> None:
    """Uncommitted changes stop the promotion before anything is edited."""
    (repo / "notes.txt").write_text("work in progress")
    with pytest.raises(GitOpsError, match="uncommitted changes"):
        promote(repo, source_env="staging", target_env="prod")
    assert _commits(repo) == 1


def test_no_worse_than_target(repo: Path, tmp_path: Path) -> None:
    """A candidate worse than prod's model is refused; within tolerance it passes."""
    worse = tmp_path / "worse-target.json"
    worse.write_text(
        json.dumps({"passed": True, "metrics": {"roc_auc": 0.999, "log_loss": 0.05}})
    )
    with pytest.raises(GateFailedError, match="roc_auc 0.9950 is worse"):
        promote(
            repo,
            source_env="staging",
            target_env="prod",
            require_no_worse=True,
            target_verdict=str(worse),
        )
    assert _commits(repo) == 1

    change = promote(
        repo,
        source_env="staging",
        target_env="prod",
        require_no_worse=True,
        target_verdict=str(worse),
        tolerance=0.06,
    )
    assert "compared with prod's current model" in change.message
    assert _commits(repo) == 2


def test_no_worse_check_against_the_default_target_verdict(repo: Path) -> None:
    """Without --target-verdict the check reads verdict.json beside prod's model."""
    change = promote(
        repo, source_env="staging", target_env="prod", require_no_worse=True
    )
    assert "log_loss: 0.1000 (target 0.1200, -0.0200)" in change.message


def test_finish_and_rollback_a_canary(repo: Path) -> None:
    """finish moves all traffic to the canary's model; rollback keeps the old one."""
    staging = read_overlay_model(repo, "staging")
    old = read_overlay_model(repo, "prod")
    promote(repo, source_env="staging", target_env="prod", canary_percent=25)
    rollback_canary(repo, env="prod")
    after_rollback = read_overlay_model(repo, "prod")
    assert not after_rollback.canary_active
    assert after_rollback.storage_uri == old.storage_uri

    promote(repo, source_env="staging", target_env="prod", canary_percent=25)
    finish_canary(repo, env="prod")
    prod = read_overlay_model(repo, "prod")
    assert not prod.canary_active
    assert (prod.storage_uri, prod.version) == (staging.storage_uri, "v2")
    env_file = (repo / "manifests/overlays/prod/monitor.env").read_text()
    assert f"PLUMB_MONITOR_MODEL_URI={staging.storage_uri}\n" in env_file
    assert _commits(repo) == 5
    with pytest.raises(GitOpsError, match="runs no canary"):
        finish_canary(repo, env="prod")


def test_knative_mode_uses_canary_traffic_percent(repo: Path) -> None:
    """In Knative mode the predictor gets canaryTrafficPercent; rollback restores."""
    path = repo / "manifests/overlays/prod/inferenceservice.plumb-model.yaml"
    patch = yaml.safe_load(path.read_text())
    patch["metadata"]["annotations"] = {"serving.kserve.io/deploymentMode": "Knative"}
    path.write_text(yaml.safe_dump(patch, sort_keys=False))
    _git(repo, "commit", "--quiet", "-am", "prod on Knative")
    old = read_overlay_model(repo, "prod")

    promote(repo, source_env="staging", target_env="prod", canary_percent=20)
    objects = kustomize(repo / "manifests/overlays/prod")
    isvc = next(obj for obj in objects if obj["kind"] == "InferenceService")
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 20
    assert "canary" not in isvc["spec"]

    rollback_canary(repo, env="prod")
    prod = read_overlay_model(repo, "prod")
    assert (prod.storage_uri, prod.version) == (old.storage_uri, old.version)
    assert not prod.canary_active


def test_full_switch_without_canary(repo: Path) -> None:
    """--canary-percent 100 switches the stable model and the monitor at once."""
    staging = read_overlay_model(repo, "staging")
    promote(repo, source_env="staging", target_env="prod", canary_percent=100)
    prod = read_overlay_model(repo, "prod")
    assert prod.storage_uri == staging.storage_uri and not prod.canary_active


def test_push_only_when_asked(repo: Path, tmp_path: Path) -> None:
    """Without push the remote is untouched; with push it receives the commit."""
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "--bare", "--quiet", str(remote)], check=True)
    _git(repo, "remote", "add", "origin", str(remote))
    _git(repo, "push", "--quiet", "origin", "main")
    change = promote(repo, source_env="staging", target_env="prod")
    assert not change.pushed
    assert _git(remote, "rev-parse", "main") != change.commit + "\n"
    finish = finish_canary(repo, env="prod", push=True)
    assert _git(remote, "rev-parse", "main").strip() == finish.commit


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source_env": "prod", "target_env": "prod"}, "same environment"),
        ({"source_env": "qa", "target_env": "prod"}, "no environment 'qa'"),
        ({"source_env": "staging", "target_env": "prod", "canary_percent": 0}, "1 and"),
    ],
)
def test_bad_arguments(repo: Path, kwargs: dict[str, Any], message: str) -> None:
    """Unknown environments and out-of-range percentages are clear errors."""
    with pytest.raises(GitOpsError, match=message):
        promote(repo, **kwargs)


def test_cli_refuses_a_failed_gate_with_exit_2(repo: Path, tmp_path: Path) -> None:
    """`plumb promote` prints one error line and exits 2 when the gate failed."""
    verdict = tmp_path / "failed.json"
    verdict.write_text(json.dumps({"passed": False, "reasons": ["too weak"]}))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "plumb",
            "promote",
            "--from",
            "staging",
            "--to",
            "prod",
            "--repo",
            str(repo),
            "--verdict",
            str(verdict),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: the evaluation gate failed")
    assert "too weak" in result.stderr
    assert _commits(repo) == 1
