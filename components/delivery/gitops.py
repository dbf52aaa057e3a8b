"""GitOps promotion: move a model between environments by editing kustomize overlays.

Each environment is an overlay in `manifests/overlays/<env>/`; Argo CD syncs what is
committed there. The model an environment serves lives in two files of its overlay:

- `inferenceservice.plumb-model.yaml`, a patch of the InferenceService: `storageUri`,
  the `plumb.dev/model-version` label and, during a rollout, the canary;
- `monitor.env`, whose `PLUMB_MONITOR_MODEL_URI` points the drift monitor at the same
  model directory.

`promote` reads the evaluation verdict of the source environment's model (the JSON the
evaluate step writes: `{"passed": bool, "reasons": [...], "metrics": {...}}`), refuses a
failed or missing one, optionally refuses a candidate worse than the target's current
model, edits the target overlay and makes one commit whose message records the metrics.
`finish_canary` and `rollback_canary` end a rollout. Nothing is pushed unless asked, and
a repository with uncommitted changes is refused, so a commit holds exactly the edit.

A canary takes the form the InferenceService's deployment mode honours: `spec.canary`
(a second predictor with `trafficPercent`) in Standard mode, `canaryTrafficPercent` on
the predictor in Knative mode (KServe keeps the previous revision for the rest).
"""

from __future__ import annotations

import copy
import json
import logging
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from components.common.artifacts import VERDICT_FILE
from components.delivery.errors import GateFailedError, GitOpsError

logger = logging.getLogger(__name__)

OVERLAYS_DIR = Path("manifests/overlays")
BASE_INFERENCE_SERVICE = Path("manifests/base/inferenceservice.plumb-model.yaml")
INFERENCE_SERVICE_PATCH = "inferenceservice.plumb-model.yaml"
MONITOR_ENV = "monitor.env"
"""Name of the verdict next to a model's files, where `promote` looks by default."""

VERSION_LABEL = "plumb.dev/model-version"
CANARY_VERSION_LABEL = "plumb.dev/canary-model-version"
PREVIOUS_URI_ANNOTATION = "plumb.dev/previous-storage-uri"
PREVIOUS_VERSION_ANNOTATION = "plumb.dev/previous-model-version"
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
MONITOR_URI_KEY = "PLUMB_MONITOR_MODEL_URI"

LOWER_IS_BETTER = frozenset({"log_loss", "brier", "mse", "rmse", "mae"})
"""Metrics where a smaller value is the better model; all others: larger is better."""


@dataclass(frozen=True)
class OverlayModel:
    """The model one environment's overlay serves."""

    env: str
    storage_uri: str
    version: str
    deployment_mode: str
    canary_percent: int | None = None
    canary_storage_uri: str | None = None
    canary_version: str | None = None

    @property
    def canary_active(self) -> bool:
        """Whether a canary rollout is under way."""
        return self.canary_percent is not None


@dataclass(frozen=True)
class GitChange:
    """A commit made by a promotion command."""

    commit: str
    message: str
    files: list[str] = field(default_factory=list)
    pushed: bool = False


# -- reading --------------------------------------------------------------------------


def overlay_dir(repo: Path, env: str) -> Path:
    """The overlay folder of `env`, checked to exist.

    Raises:
        GitOpsError: There is no such overlay.
    """
    path = repo / OVERLAYS_DIR / env
    if not (path / INFERENCE_SERVICE_PATCH).is_file():
        known = sorted(
            p.name
            for p in (repo / OVERLAYS_DIR).glob("*")
            if (p / INFERENCE_SERVICE_PATCH).is_file()
        )
        raise GitOpsError(
            f"no environment {env!r}: {path / INFERENCE_SERVICE_PATCH} does not exist; "
            f"known environments: {', '.join(known) or 'none'}"
        )
    return path


def read_overlay_model(repo: Path, env: str) -> OverlayModel:
    """Read which model `env` serves (and its canary) from the overlay's patch."""
    patch = _load_patch(overlay_dir(repo, env) / INFERENCE_SERVICE_PATCH)
    metadata = patch.get("metadata") or {}
    labels = metadata.get("labels") or {}
    predictor = (patch.get("spec") or {}).get("predictor") or {}
    storage_uri = (predictor.get("model") or {}).get("storageUri")
    if not storage_uri:
        raise GitOpsError(
            f"{env}'s {INFERENCE_SERVICE_PATCH} sets no spec.predictor.model.storageUri; "
            "add the model URI the environment serves"
        )
    mode = _deployment_mode(repo, patch)
    canary_percent: int | None = None
    canary_uri: str | None = None
    canaries = (patch.get("spec") or {}).get("canary") or []
    if mode == "Knative" and predictor.get("canaryTrafficPercent") is not None:
        canary_percent = int(predictor["canaryTrafficPercent"])
        canary_uri = storage_uri
    elif canaries:
        canary = canaries[0]
        canary_percent = int(canary.get("trafficPercent", 0))
        canary_uri = ((canary.get("predictor") or {}).get("model") or {}).get(
            "storageUri"
        )
    return OverlayModel(
        env=env,
        storage_uri=storage_uri,
        version=str(labels.get(VERSION_LABEL, "unset")),
        deployment_mode=mode,
        canary_percent=canary_percent,
        canary_storage_uri=canary_uri,
        canary_version=labels.get(CANARY_VERSION_LABEL)
        or (
            labels.get(VERSION_LABEL) if mode == "Knative" and canary_percent else None
        ),
    )


def load_verdict(location: str) -> dict[str, Any]:
    """Load an evaluation verdict from a path, a file:// URI or an http(s) URL.

    Raises:
        GateFailedError: Nothing is there, or it is not a verdict.
        GitOpsError: The location's scheme cannot be read from here (s3://, gs://...).
    """
    parsed = urlparse(location)
    if parsed.scheme in ("http", "https"):
        text = _fetch_http(location)
    elif parsed.scheme in ("", "file"):
        path = Path(parsed.path if parsed.scheme == "file" else location)
        if not path.is_file():
            raise GateFailedError(
                f"no evaluation verdict at {location!r}; evaluate the model first, or "
                "pass --verdict with the path of its verdict.json"
            )
        text = path.read_text(encoding="utf-8")
    else:
        raise GitOpsError(
            f"cannot read a verdict from {location!r} ({parsed.scheme}:// is not read "
            "here); copy it locally (e.g. `aws s3 cp` / `gsutil cp`) and pass "
            "--verdict PATH"
        )
    try:
        verdict = json.loads(text)
    except json.JSONDecodeError as err:
        raise GateFailedError(
            f"the verdict at {location!r} is not JSON ({err}); expected "
            '{"passed": true|false, "reasons": [...], "metrics": {...}}'
        ) from err
    if not isinstance(verdict, dict) or not isinstance(verdict.get("passed"), bool):
        raise GateFailedError(
            f"the verdict at {location!r} has no boolean 'passed' field; expected "
            '{"passed": true|false, "reasons": [...], "metrics": {...}}'
        )
    return verdict


def verdict_location(storage_uri: str) -> str:
    """Where a model's verdict sits by default: `verdict.json` beside its files."""
    return storage_uri.rstrip("/") + "/" + VERDICT_FILE


def check_verdict(verdict: dict[str, Any], *, location: str) -> None:
    """Refuse a verdict that did not pass.

    Raises:
        GateFailedError: `passed` is not true.
    """
    if verdict.get("passed") is True:
        return
    reasons = "; ".join(str(r) for r in verdict.get("reasons") or []) or "no reasons"
    raise GateFailedError(
        f"the evaluation gate failed for the model at {location!r} ({reasons}); "
        "refusing to promote it"
    )


def compare_metrics(
    candidate: dict[str, float],
    target: dict[str, float],
    *,
    tolerance: float = 0.0,
) -> tuple[list[str], list[str]]:
    """Compare the candidate's metrics with the target's current model.

    Args:
        candidate: Metrics of the model being promoted.
        target: Metrics of the model the target environment serves.
        tolerance: How much worse (absolute) a metric may be and still pass.

    Returns:
        (regressions, deltas): one line per metric that got worse beyond the
        tolerance, and one line per shared metric with its change.
    """
    regressions: list[str] = []
    deltas: list[str] = []
    for name in sorted(set(candidate) & set(target)):
        new, old = float(candidate[name]), float(target[name])
        worse_by = (new - old) if name in LOWER_IS_BETTER else (old - new)
        deltas.append(f"{name}: {new:.4f} (target {old:.4f}, {new - old:+.4f})")
        if worse_by > tolerance:
            regressions.append(
                f"{name} {new:.4f} is worse than the target's {old:.4f} "
                f"by {worse_by:.4f} (tolerance {tolerance})"
            )
    return regressions, deltas


# -- commands -------------------------------------------------------------------------


def promote(
    repo: str | Path,
    *,
    source_env: str,
    target_env: str,
    canary_percent: int = 10,
    verdict: str | None = None,
    require_no_worse: bool = False,
    target_verdict: str | None = None,
    tolerance: float = 0.0,
    push: bool = False,
    remote: str = "origin",
) -> GitChange:
    """Promote the model `source_env` serves to `target_env`, as one git commit.

    Args:
        repo: Root of the git repository holding manifests/.
        source_env: Overlay whose model is promoted (e.g. staging).
        target_env: Overlay that receives it (e.g. prod).
        canary_percent: Share of traffic the new model gets at first; 100 switches
            all traffic at once (no canary).
        verdict: Where the candidate's verdict is; default: beside its files.
        require_no_worse: Refuse a candidate with any metric worse than the target's
            current model (beyond `tolerance`).
        target_verdict: Where the target's current verdict is; default: beside its files.
        tolerance: Allowed absolute slack for `require_no_worse`.
        push: Push the commit to `remote` afterwards.
        remote: Remote to push to.

    Returns:
        The commit made.

    Raises:
        GateFailedError: The candidate's verdict is missing, failed, or it is worse
            than the target's model.
        GitOpsError: Dirty tree, unknown environment, a rollout under way, or git failed.
    """
    root = _repo_root(Path(repo))
    _check_promotion_args(source_env, target_env, canary_percent, tolerance)
    _require_clean(root)
    source = read_overlay_model(root, source_env)
    target = read_overlay_model(root, target_env)
    if source.canary_active:
        raise GitOpsError(
            f"{source_env} is in the middle of a canary rollout; finish or roll it "
            f"back first (plumb canary finish|rollback --env {source_env})"
        )
    if target.canary_active:
        raise GitOpsError(
            f"{target_env} already runs a canary ({target.canary_storage_uri}, "
            f"{target.canary_percent}%); finish or roll it back first"
        )
    if source.storage_uri == target.storage_uri:
        raise GitOpsError(
            f"{target_env} already serves {source.storage_uri!r}; nothing to promote"
        )

    # Gate: the candidate's own verdict, then (optionally) the comparison.
    location = verdict or verdict_location(source.storage_uri)
    candidate_verdict = load_verdict(location)
    check_verdict(candidate_verdict, location=location)
    metrics = {k: float(v) for k, v in (candidate_verdict.get("metrics") or {}).items()}
    deltas: list[str] = []
    if require_no_worse:
        deltas = _check_no_worse(
            metrics,
            target_location=target_verdict or verdict_location(target.storage_uri),
            target_env=target_env,
            tolerance=tolerance,
        )

    # Edit the target overlay.
    overlay = overlay_dir(root, target_env)
    patch_path = overlay / INFERENCE_SERVICE_PATCH
    header, patch = _read_patch_with_header(patch_path)
    if canary_percent >= 100:
        _set_stable(patch, storage_uri=source.storage_uri, version=source.version)
        _set_monitor_uri(overlay / MONITOR_ENV, source.storage_uri)
    elif target.deployment_mode == "Knative":
        _start_knative_canary(patch, source, target, canary_percent)
    else:
        _start_standard_canary(patch, source, canary_percent, repo=root)
    _write_patch(patch_path, header, patch)

    # Commit.
    rollout = "all traffic" if canary_percent >= 100 else f"canary {canary_percent}%"
    message = _promotion_message(
        source=source,
        target=target,
        rollout=rollout,
        location=location,
        verdict=candidate_verdict,
        metrics=metrics,
        deltas=deltas,
    )
    files = [str(p.relative_to(root)) for p in (patch_path, overlay / MONITOR_ENV)]
    return _commit(root, files, message, push=push, remote=remote)


def finish_canary(
    repo: str | Path, *, env: str, push: bool = False, remote: str = "origin"
) -> GitChange:
    """Send all traffic to the canary's model and end the rollout, as one commit.

    Raises:
        GitOpsError: No canary is under way in `env`, a dirty tree, or git failed.
    """
    root = _repo_root(Path(repo))
    _require_clean(root)
    model = _require_canary(root, env)
    new_uri = model.canary_storage_uri or model.storage_uri
    new_version = model.canary_version or model.version
    message = (
        f"Finish canary of plumb-model {new_version} in {env}\n\n"
        f"{env} now sends all traffic to {new_uri} (was {model.canary_percent}% "
        f"canary).\n"
    )
    return _end_canary(
        root,
        env,
        storage_uri=new_uri,
        version=new_version,
        message=message,
        push=push,
        remote=remote,
    )


def rollback_canary(
    repo: str | Path, *, env: str, push: bool = False, remote: str = "origin"
) -> GitChange:
    """Drop the canary and keep (or restore) the previous model, as one commit.

    Raises:
        GitOpsError: No canary is under way in `env`, a dirty tree, or git failed.
    """
    root = _repo_root(Path(repo))
    _require_clean(root)
    model = _require_canary(root, env)
    _, patch = _read_patch_with_header(overlay_dir(root, env) / INFERENCE_SERVICE_PATCH)
    annotations = (patch.get("metadata") or {}).get("annotations") or {}
    stable_uri = annotations.get(PREVIOUS_URI_ANNOTATION, model.storage_uri)
    stable_version = annotations.get(PREVIOUS_VERSION_ANNOTATION, model.version)
    message = (
        f"Roll back canary of plumb-model in {env}\n\n"
        f"Dropped canary {model.canary_storage_uri} ({model.canary_percent}%); {env} "
        f"serves {stable_uri} ({stable_version}) again.\n"
    )
    return _end_canary(
        root,
        env,
        storage_uri=stable_uri,
        version=stable_version,
        message=message,
        push=push,
        remote=remote,
    )


def _end_canary(
    root: Path,
    env: str,
    *,
    storage_uri: str,
    version: str,
    message: str,
    push: bool,
    remote: str,
) -> GitChange:
    """Clear the canary, make `storage_uri` the stable model and commit the overlay."""
    overlay = overlay_dir(root, env)
    patch_path = overlay / INFERENCE_SERVICE_PATCH
    header, patch = _read_patch_with_header(patch_path)
    _clear_canary(patch)
    _set_stable(patch, storage_uri=storage_uri, version=version)
    _write_patch(patch_path, header, patch)
    _set_monitor_uri(overlay / MONITOR_ENV, storage_uri)
    files = [str(p.relative_to(root)) for p in (patch_path, overlay / MONITOR_ENV)]
    return _commit(root, files, message, push=push, remote=remote)


# -- helpers: checks ------------------------------------------------------------------


def _check_promotion_args(
    source_env: str, target_env: str, canary_percent: int, tolerance: float
) -> None:
    if source_env == target_env:
        raise GitOpsError(
            f"--from and --to name the same environment ({source_env!r}); promote "
            "between two environments, e.g. --from staging --to prod"
        )
    if not 1 <= canary_percent <= 100:
        raise GitOpsError(
            f"--canary-percent must be between 1 and 100, got {canary_percent} "
            "(100 switches all traffic at once)"
        )
    if tolerance < 0:
        raise GitOpsError(f"--tolerance must be >= 0, got {tolerance}")


def _check_no_worse(
    metrics: dict[str, float],
    *,
    target_location: str,
    target_env: str,
    tolerance: float,
) -> list[str]:
    try:
        target_verdict = load_verdict(target_location)
    except GateFailedError as err:
        raise GateFailedError(
            f"cannot compare with {target_env}'s current model: {err}. Pass "
            "--target-verdict, or drop --no-worse-than-target for a first deployment"
        ) from err
    target_metrics = {
        k: float(v) for k, v in (target_verdict.get("metrics") or {}).items()
    }
    regressions, deltas = compare_metrics(metrics, target_metrics, tolerance=tolerance)
    if not deltas:
        raise GateFailedError(
            f"the candidate and {target_env}'s current model share no metric "
            f"(candidate: {sorted(metrics)}, target: {sorted(target_metrics)}); "
            "cannot check --no-worse-than-target"
        )
    if regressions:
        raise GateFailedError(
            f"the candidate is worse than {target_env}'s current model: "
            + "; ".join(regressions)
        )
    return deltas


def _require_canary(root: Path, env: str) -> OverlayModel:
    model = read_overlay_model(root, env)
    if not model.canary_active:
        raise GitOpsError(
            f"{env} runs no canary (serves {model.storage_uri}, {model.version}); "
            "nothing to finish or roll back"
        )
    return model


# -- helpers: overlay editing ---------------------------------------------------------


def _load_patch(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise GitOpsError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(data, dict) or data.get("kind") != "InferenceService":
        raise GitOpsError(f"{path} is not an InferenceService patch")
    return data


def _read_patch_with_header(path: Path) -> tuple[str, dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    header = "".join(line for line in _leading_comments(lines))
    return header, _load_patch(path)


def _leading_comments(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        if not line.startswith("#"):
            break
        out.append(line)
    return out


class _NoAliasDumper(yaml.SafeDumper):
    """Write repeated values in full: reviewers read these files, not YAML anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _write_patch(path: Path, header: str, patch: dict[str, Any]) -> None:
    body = yaml.dump(
        patch, Dumper=_NoAliasDumper, sort_keys=False, default_flow_style=False
    )
    path.write_text(header + body, encoding="utf-8")


def _deployment_mode(repo: Path, patch: dict[str, Any]) -> str:
    annotations = (patch.get("metadata") or {}).get("annotations") or {}
    mode = annotations.get(DEPLOYMENT_MODE_ANNOTATION)
    if mode is None and (repo / BASE_INFERENCE_SERVICE).is_file():
        base = yaml.safe_load((repo / BASE_INFERENCE_SERVICE).read_text("utf-8")) or {}
        mode = ((base.get("metadata") or {}).get("annotations") or {}).get(
            DEPLOYMENT_MODE_ANNOTATION
        )
    return str(mode or "Standard")


def _labels(patch: dict[str, Any]) -> dict[str, Any]:
    metadata = patch.setdefault("metadata", {})
    labels: dict[str, Any] = metadata.setdefault("labels", {})
    return labels


def _annotations(patch: dict[str, Any]) -> dict[str, Any]:
    metadata = patch.setdefault("metadata", {})
    annotations: dict[str, Any] = metadata.setdefault("annotations", {})
    return annotations


def _predictor(patch: dict[str, Any]) -> dict[str, Any]:
    predictor: dict[str, Any] = patch.setdefault("spec", {}).setdefault("predictor", {})
    return predictor


def _set_stable(patch: dict[str, Any], *, storage_uri: str, version: str) -> None:
    _predictor(patch).setdefault("model", {})["storageUri"] = storage_uri
    _labels(patch)[VERSION_LABEL] = version


def _start_standard_canary(
    patch: dict[str, Any], source: OverlayModel, percent: int, *, repo: Path
) -> None:
    # The canary's pods must pass the same checks as the stable ones: same sizes,
    # same restricted security contexts, taken from the base merged with the overlay.
    stable = _merge(_base_predictor(repo), _predictor(patch))
    model = stable.get("model") or {}
    canary_model: dict[str, Any] = {
        "modelFormat": model.get("modelFormat", {"name": "onnx"}),
        "runtime": model.get("runtime", "plumb-onnx"),
        "storageUri": source.storage_uri,
    }
    for key in ("resources", "securityContext"):
        if key in model:
            canary_model[key] = copy.deepcopy(model[key])
    canary_predictor: dict[str, Any] = {"model": canary_model}
    if "securityContext" in stable:
        canary_predictor["securityContext"] = copy.deepcopy(stable["securityContext"])
    patch["spec"]["canary"] = [
        {"trafficPercent": percent, "predictor": canary_predictor}
    ]
    _labels(patch)[CANARY_VERSION_LABEL] = source.version


def _base_predictor(repo: Path) -> dict[str, Any]:
    path = repo / BASE_INFERENCE_SERVICE
    if not path.is_file():
        return {}
    base = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    predictor: dict[str, Any] = (base.get("spec") or {}).get("predictor") or {}
    return predictor


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge maps the way a strategic-merge patch merges them (lists replaced)."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _start_knative_canary(
    patch: dict[str, Any], source: OverlayModel, target: OverlayModel, percent: int
) -> None:
    annotations = _annotations(patch)
    annotations[PREVIOUS_URI_ANNOTATION] = target.storage_uri
    annotations[PREVIOUS_VERSION_ANNOTATION] = target.version
    _set_stable(patch, storage_uri=source.storage_uri, version=source.version)
    _predictor(patch)["canaryTrafficPercent"] = percent


def _clear_canary(patch: dict[str, Any]) -> None:
    spec = patch.get("spec") or {}
    spec.pop("canary", None)
    (spec.get("predictor") or {}).pop("canaryTrafficPercent", None)
    metadata = patch.get("metadata") or {}
    (metadata.get("labels") or {}).pop(CANARY_VERSION_LABEL, None)
    annotations = metadata.get("annotations") or {}
    annotations.pop(PREVIOUS_URI_ANNOTATION, None)
    annotations.pop(PREVIOUS_VERSION_ANNOTATION, None)
    if "annotations" in metadata and not annotations:
        del metadata["annotations"]


def _set_monitor_uri(path: Path, storage_uri: str) -> None:
    if not path.is_file():
        return
    text = path.read_text(encoding="utf-8")
    pattern = re.compile(rf"^{MONITOR_URI_KEY}=.*$", flags=re.MULTILINE)
    line = f"{MONITOR_URI_KEY}={storage_uri}"
    text = pattern.sub(line, text) if pattern.search(text) else text + line + "\n"
    path.write_text(text, encoding="utf-8")


def _promotion_message(
    *,
    source: OverlayModel,
    target: OverlayModel,
    rollout: str,
    location: str,
    verdict: dict[str, Any],
    metrics: dict[str, float],
    deltas: list[str],
) -> str:
    lines = [
        f"Promote plumb-model {source.version} from {source.env} to {target.env} "
        f"({rollout})",
        "",
        f"model: {source.storage_uri}",
        f"replaces: {target.storage_uri} ({target.version})",
        f"verdict: passed ({location})",
    ]
    lines += [f"  - {reason}" for reason in verdict.get("reasons") or []]
    if metrics:
        lines.append("metrics:")
        lines += [f"  {name}: {value:.4f}" for name, value in sorted(metrics.items())]
    if deltas:
        lines.append(f"compared with {target.env}'s current model:")
        lines += [f"  {delta}" for delta in deltas]
    return "\n".join(lines) + "\n"


def _fetch_http(url: str) -> str:
    import httpx

    try:
        response = httpx.get(url, timeout=30.0, follow_redirects=True)
    except httpx.TransportError as err:
        raise GateFailedError(f"cannot fetch the verdict at {url!r}: {err}") from err
    if response.status_code == 404:
        raise GateFailedError(
            f"no evaluation verdict at {url!r} (HTTP 404); evaluate the model first"
        )
    if response.status_code >= 400:
        raise GateFailedError(
            f"cannot fetch the verdict at {url!r}: HTTP {response.status_code}"
        )
    return response.text


# -- helpers: git ---------------------------------------------------------------------


def _git(root: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(root), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise GitOpsError(
            f"`git {' '.join(args)}` failed in {root}: "
            f"{(result.stderr or result.stdout).strip()}"
        )
    return result.stdout


def _repo_root(path: Path) -> Path:
    if not path.is_dir():
        raise GitOpsError(f"--repo {str(path)!r} is not a directory")
    try:
        top = _git(path, "rev-parse", "--show-toplevel").strip()
    except GitOpsError as err:
        raise GitOpsError(
            f"{str(path)!r} is not inside a git repository; run from the repository "
            "that holds manifests/ or pass --repo"
        ) from err
    return Path(top)


def _require_clean(root: Path) -> None:
    status = _git(root, "status", "--porcelain").strip()
    if status:
        first = status.splitlines()[:5]
        raise GitOpsError(
            f"the working tree at {root} has uncommitted changes "
            f"({'; '.join(line.strip() for line in first)}); commit or stash them so "
            "the promotion commit holds only its own edit"
        )


def _commit(
    root: Path, files: list[str], message: str, *, push: bool, remote: str
) -> GitChange:
    existing = [f for f in files if (root / f).is_file()]
    _git(root, "add", "--", *existing)
    _git(root, "commit", "--quiet", "-m", message, "--", *existing)
    commit = _git(root, "rev-parse", "HEAD").strip()
    logger.info("Committed %s: %s", commit[:12], message.splitlines()[0])
    if push:
        branch = _git(root, "rev-parse", "--abbrev-ref", "HEAD").strip()
        _git(root, "push", remote, f"HEAD:{branch}")
        logger.info("Pushed %s to %s/%s", commit[:12], remote, branch)
    return GitChange(commit=commit, message=message, files=existing, pushed=push)
