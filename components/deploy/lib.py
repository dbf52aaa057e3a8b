"""The deploy step: turn an evaluated model into an InferenceService.

`stage_served_model` copies the evaluated model into the directory the InferenceService
serves and writes the decision threshold evaluation chose into its `metadata.json`, so
served labels agree with the evaluated metrics. `deploy_model` refuses a model whose
evaluation gate failed, writes the manifest (built and re-read through the kserve SDK
models), and, when `deployment.cluster` names a cluster, applies it with server-side
apply and waits for Ready (`cluster.py`).
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path
from typing import Any

import yaml

from components.common.artifacts import (
    METADATA_FILE,
    VERDICT_FILE,
    read_json,
    write_json,
)
from components.common.config import DeploymentConfig
from components.common.errors import GateFailedError, PlumbError
from components.deploy.inference_service import (
    build_inference_service,
    parse_manifest,
    to_manifest,
)

logger = logging.getLogger(__name__)

SERVED_MODEL_FORMATS = ("onnx", "tflite")
"""The formats plumb's ServingRuntime declares (`manifests/`, `charts/plumb`)."""


def check_verdict(verdict_path: str | Path) -> dict[str, Any]:
    """Refuse a model whose evaluation gate did not pass; return the verdict.

    Raises:
        GateFailedError: The verdict is missing, unreadable or failed.
    """
    path = Path(verdict_path)
    if not path.is_file():
        raise GateFailedError(
            f"no evaluation verdict at {str(path)!r}; evaluate the model first"
        )
    verdict = read_json(path)
    if verdict.get("passed") is not True:
        reasons = "; ".join(verdict.get("reasons", [])) or "no reasons recorded"
        raise GateFailedError(
            f"the evaluation gate failed ({reasons}); refusing to deploy"
        )
    return dict(verdict)


def stage_served_model(
    model_dir: str | Path, *, verdict_path: str | Path, output_dir: str | Path
) -> float | None:
    """Copy a model that passed its gate to `output_dir`, the directory to serve.

    The copy's `metadata.json` records the decision threshold of the verdict's metrics
    (`evaluation.threshold_strategy`, or `decision_threshold` with `fixed`), which the
    predictor applies to label rows; a model without one (regression) gets none. The
    verdict itself goes beside the files as `verdict.json`, where `plumb promote`
    looks for it. The evaluated model directory is left untouched.

    Returns:
        The decision threshold written, or None.

    Raises:
        GateFailedError: The evaluation gate did not pass.
        PlumbError: `model_dir` holds no plumb model, or the verdict's threshold is not
            a probability.
    """
    verdict = check_verdict(verdict_path)
    source, target = Path(model_dir), Path(output_dir)
    if not (source / METADATA_FILE).is_file():
        raise PlumbError(
            f"no {METADATA_FILE} in the model directory {str(source)!r}; deploy a "
            "model written by plumb's train or compress step"
        )
    threshold = verdict.get("metrics", {}).get("decision_threshold")
    if threshold is not None and not (
        isinstance(threshold, int | float)
        and not isinstance(threshold, bool)
        and math.isfinite(threshold)
        and 0.0 <= threshold <= 1.0
    ):
        raise PlumbError(
            f"the verdict at {str(verdict_path)!r} has decision_threshold "
            f"{threshold!r}, not a probability in [0, 1]; re-run the evaluation"
        )
    shutil.copytree(source, target, dirs_exist_ok=True)
    metadata = read_json(target / METADATA_FILE)
    metadata.pop("decision_threshold", None)
    metadata.pop("threshold_strategy", None)
    if threshold is not None:
        metadata["decision_threshold"] = float(threshold)
        metadata["threshold_strategy"] = verdict.get("threshold_strategy", "fixed")
        logger.info(
            "Serving %s with decision threshold %.4f (%s)",
            target,
            threshold,
            metadata["threshold_strategy"],
        )
    write_json(target / METADATA_FILE, metadata)
    shutil.copyfile(verdict_path, target / VERDICT_FILE)
    return None if threshold is None else float(threshold)


def resolve_model_format(
    config: DeploymentConfig, model_dir: str | Path | None = None
) -> str:
    """The InferenceService's `modelFormat.name` for the model in `model_dir`.

    `deployment.model_format: auto` takes the format the directory's `metadata.json`
    records; a fixed value is checked against it. Without a directory (the model only
    exists at a remote `storage_uri`), `auto` means onnx.

    Raises:
        PlumbError: The directory holds no model, a format plumb's ServingRuntime does
            not serve, or one other than the configured `model_format`.
    """
    if model_dir is None:
        return "onnx" if config.model_format == "auto" else config.model_format
    metadata_path = Path(model_dir) / METADATA_FILE
    if not metadata_path.is_file():
        raise PlumbError(
            f"no {METADATA_FILE} in the model directory {str(model_dir)!r}; deploy a "
            "model written by plumb's train or compress step"
        )
    found = read_json(metadata_path).get("format", "onnx")
    if found not in SERVED_MODEL_FORMATS:
        raise PlumbError(
            f"the model in {str(model_dir)!r} has format {found!r}, which plumb's "
            f"ServingRuntime does not serve ({', '.join(SERVED_MODEL_FORMATS)}); "
            "deploy the network (train or compress output), not the tree baseline"
        )
    if config.model_format not in ("auto", found):
        raise PlumbError(
            f"deployment.model_format is {config.model_format!r} but the model in "
            f"{str(model_dir)!r} is {found!r}; set deployment.model_format to auto"
        )
    return str(found)


def write_inference_service(
    config: DeploymentConfig,
    *,
    model_uri: str,
    verdict_path: str | Path,
    output_path: str | Path,
    model_dir: str | Path | None = None,
) -> str:
    """Write the InferenceService YAML for a model that passed its gate.

    Without a configured `storage_uri`, the manifest points at the model's artifact
    URI (local path on a laptop, object storage on a cluster). The model format (and
    so the ServingRuntime KServe picks) comes from `model_dir`; see
    `resolve_model_format`.

    Returns:
        The storage URI written into the manifest.
    """
    check_verdict(verdict_path)
    model_format = resolve_model_format(config, model_dir)
    storage_uri = config.storage_uri or model_uri
    manifest = to_manifest(
        build_inference_service(
            config, storage_uri=storage_uri, model_format=model_format
        )
    )
    parse_manifest(manifest)
    Path(output_path).write_text(
        yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8"
    )
    logger.info(
        "Wrote InferenceService %s/%s for %s (modelFormat %s)",
        config.namespace,
        config.name,
        storage_uri,
        model_format,
    )
    return storage_uri


def deploy_model(
    config: DeploymentConfig,
    *,
    model_uri: str,
    verdict_path: str | Path,
    output_path: str | Path,
    model_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Write the InferenceService and, with a cluster configured, apply it.

    `model_dir` is the model directory on this machine (the KFP artifact's path); its
    `metadata.json` chooses the model format.

    Returns:
        `storage_uri`, and with a cluster also `url` and `applied: True`.

    Raises:
        GateFailedError: The evaluation gate did not pass.
        DeployError: The cluster refused the object or it did not become Ready.
    """
    storage_uri = write_inference_service(
        config,
        model_uri=model_uri,
        verdict_path=verdict_path,
        output_path=output_path,
        model_dir=model_dir,
    )
    result: dict[str, Any] = {"storage_uri": storage_uri, "applied": False}
    if config.cluster == "none":
        logger.info("deployment.cluster is none: wrote the YAML, applied nothing")
        return result

    from components.deploy.cluster import (
        apply_inference_service,
        connect,
        wait_until_ready,
    )

    manifest = yaml.safe_load(Path(output_path).read_text(encoding="utf-8"))
    api_client = connect(config)
    apply_inference_service(api_client, manifest)
    logger.info("Applied InferenceService %s/%s", config.namespace, config.name)
    status = wait_until_ready(
        api_client,
        namespace=config.namespace,
        name=config.name,
        timeout_seconds=config.ready_timeout_seconds,
    )
    result["applied"] = True
    if status.get("url"):
        result["url"] = status["url"]
    return result
