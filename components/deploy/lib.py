"""The deploy step: turn an evaluated model into an InferenceService manifest."""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from components.common.artifacts import read_json
from components.common.config import DeploymentConfig
from components.common.errors import GateFailedError
from components.deploy.inference_service import build_inference_service, to_manifest

logger = logging.getLogger(__name__)


def check_verdict(verdict_path: str | Path) -> None:
    """Refuse a model whose evaluation gate did not pass.

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


def write_inference_service(
    config: DeploymentConfig,
    *,
    model_uri: str,
    verdict_path: str | Path,
    output_path: str | Path,
) -> str:
    """Write the InferenceService YAML for a model that passed its gate.

    Without a configured `storage_uri`, the manifest points at the model's artifact
    URI (local path on a laptop, object storage on a cluster).

    Returns:
        The storage URI written into the manifest.
    """
    check_verdict(verdict_path)
    storage_uri = config.storage_uri or model_uri
    service = build_inference_service(config, storage_uri=storage_uri)
    Path(output_path).write_text(
        yaml.safe_dump(to_manifest(service), sort_keys=False), encoding="utf-8"
    )
    logger.info(
        "Wrote InferenceService %s/%s for %s",
        config.namespace,
        config.name,
        storage_uri,
    )
    return storage_uri
