"""Content-hash stage cache for local runs (`plumb run`).

kfp's local runner caches only when asked to, keys a task by its arguments (for plumb,
the same config JSON whatever the data or the code) and trusts any artifact whose file
still exists. plumb therefore decides itself which stages a run can skip:

- each cacheable stage gets a key: a SHA-256 of the config section(s) it reads, the
  source of the plumb packages it imports, the versions of the libraries that compute
  it, the content of its outside inputs (the dataset file for preprocess, a local
  incumbent model for evaluate) and the keys of the stages it reads from;
- a stage that succeeded is stored under `<cache_dir>/<stage>/<key>/` with a manifest
  of its outputs (SHA-256 of every file, artifact metadata, output parameters), also
  when a later stage fails, so a re-run continues from it;
- before a run each stored entry is verified file by file; a verified entry is linked
  into the run folder and handed to kfp's local cache under the stage's key, so kfp
  skips that task. A missing, altered or unreadable entry is recomputed, never trusted.

`pipelines.local` drives it. deploy is never cached: it may apply the InferenceService
to a cluster, and what it writes names the model's URI in this run's folder.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from components.common.artifacts import read_json, write_json
from components.common.config import PlumbConfig
from components.preprocess.datasets import dataset_files

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
"""Bumped when keys or entries change meaning; older entries then never match."""
MANIFEST_FILE = "manifest.json"
EXECUTOR_OUTPUT_FILE = "executor_output.json"
COMPONENTS_ROOT = Path(__file__).resolve().parent.parent / "components"
# Libraries whose version can change what a stage computes.
KEYED_LIBRARIES = (
    "numpy",
    "pandas",
    "pyarrow",
    "scikit-learn",
    "torch",
    "onnx",
    "onnxruntime",
    "tensorflow",
    "evidently",
)


@dataclass(frozen=True)
class Stage:
    """A cacheable task of the training pipeline."""

    name: str
    """Task name in the pipeline's DAG."""
    package: str
    """Package under `components/` whose code (and what it imports) computes it."""
    sections: tuple[str, ...]
    """Config sections the task reads."""
    upstream: tuple[str, ...]
    """Stages whose outputs it reads."""


STAGES = (
    Stage("preprocess", "preprocess", ("data",), ()),
    Stage("train", "train", ("training",), ("preprocess",)),
    Stage("compress", "compress", ("compression",), ("preprocess", "train")),
    Stage("evaluate", "evaluate", ("evaluation",), ("preprocess", "train", "compress")),
    Stage("monitor", "monitoring", ("monitoring",), ("preprocess",)),
)
# Every stage reads `data` through preprocess, so a data change re-runs them all.


@dataclass
class StoredStage:
    """A verified cache entry: where its outputs are and what kfp needs to know."""

    stage: str
    key: str
    path: Path
    artifacts: dict[str, dict[str, Any]]
    parameters: dict[str, Any]


def stage_keys(config: PlumbConfig) -> dict[str, str | None]:
    """Key every stage of `config`'s run; None for a stage that cannot be cached."""
    keys: dict[str, str | None] = {}
    environment = _environment()
    for stage in STAGES:
        outside = _outside_inputs(stage.name, config)
        upstream = {name: keys[name] for name in stage.upstream}
        if outside is None or None in upstream.values():
            keys[stage.name] = None
            continue
        payload = {
            "format": CACHE_FORMAT,
            "stage": stage.name,
            "config": {
                section: getattr(config, section).model_dump(mode="json")
                for section in stage.sections
            },
            "source": source_digest(stage.package),
            "environment": environment,
            "inputs": outside,
            "upstream": upstream,
        }
        encoded = json.dumps(payload, sort_keys=True).encode("utf-8")
        keys[stage.name] = hashlib.sha256(encoded).hexdigest()
    return keys


def _outside_inputs(stage: str, config: PlumbConfig) -> dict[str, Any] | None:
    """Content digests of what a stage reads from outside the pipeline."""
    if stage == "preprocess":
        return {str(path): file_digest(path) for path in dataset_files(config.data)}
    if stage == "evaluate":
        incumbent = config.evaluation.incumbent_model_dir
        if incumbent is None:
            return {}
        parsed = urlparse(incumbent)
        if parsed.scheme not in ("", "file"):
            # A remote incumbent (s3://, gs://, ...) cannot be hashed from here.
            return None
        path = Path(parsed.path if parsed.scheme == "file" else incumbent)
        # A missing folder fails the evaluate task, which then stores nothing.
        return {"incumbent": tree_digest(path) if path.is_dir() else "missing"}
    return {}


def _environment() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in KEYED_LIBRARIES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


@functools.cache
def source_digest(package: str) -> str:
    """SHA-256 of the code of `components/<package>` and every plumb module it imports."""
    digest = hashlib.sha256()
    for path in sorted(_package_modules(package)):
        digest.update(str(path.relative_to(COMPONENTS_ROOT)).encode("utf-8") + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _package_modules(package: str) -> set[Path]:
    """The package's modules plus, transitively, the `components` modules they import."""
    pending = sorted((COMPONENTS_ROOT / package).rglob("*.py"))
    pending.append(COMPONENTS_ROOT / "__init__.py")
    seen: set[Path] = set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        pending.extend(_imported_modules(path) - seen)
    return seen


def _imported_modules(path: Path) -> set[Path]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    found: set[Path] = set()
    for name in names:
        parts = name.split(".")
        if parts[0] != "components":
            continue
        base = COMPONENTS_ROOT.joinpath(*parts[1:])
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                found.add(candidate)
        # A package's __init__ runs before any of its modules.
        for depth in range(1, len(parts)):
            init = COMPONENTS_ROOT.joinpath(*parts[1:depth], "__init__.py")
            if init.is_file():
                found.add(init)
    return found


def file_digest(path: Path) -> str:
    """SHA-256 of one file's bytes."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def tree_digest(root: Path) -> dict[str, str]:
    """SHA-256 of every file under `root`, by path relative to it."""
    return {
        str(path.relative_to(root)): file_digest(path)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


class StageCache:
    """Stage outputs stored by key under one folder, verified before every use."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def lookup(self, stage: str, key: str) -> StoredStage | None:
        """The verified entry of `stage` under `key`, or None (absent or unusable)."""
        entry = self.root / stage / key
        manifest_path = entry / MANIFEST_FILE
        if not manifest_path.is_file():
            return None
        try:
            manifest = read_json(manifest_path)
            problem = _verify(entry, manifest, stage=stage, key=key)
        except (OSError, ValueError, KeyError, TypeError) as err:
            problem = f"unreadable manifest: {err}"
        if problem is not None:
            logger.warning(
                "%s: cache entry %s is not usable (%s); recomputing",
                stage,
                key[:12],
                problem,
            )
            return None
        return StoredStage(
            stage=stage,
            key=key,
            path=entry,
            artifacts=manifest["artifacts"],
            parameters=manifest["parameters"],
        )

    def store(
        self,
        stage: str,
        key: str,
        *,
        task_dir: Path,
        artifact_types: dict[str, str],
    ) -> bool:
        """Store the outputs of a task that succeeded; False if it did not finish.

        Args:
            stage: Stage (task) name.
            key: The stage's key in this run.
            task_dir: The task's folder under the run's pipeline root.
            artifact_types: Output artifact name -> schema title (`system.Model`, ...).
        """
        executor_output_path = task_dir / EXECUTOR_OUTPUT_FILE
        if not executor_output_path.is_file():
            return False
        executor_output = read_json(executor_output_path)
        stage_dir = self.root / stage
        stage_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=stage_dir))
        try:
            artifacts = {
                name: _store_artifact(
                    name,
                    schema_title=schema_title,
                    executor_output=executor_output,
                    task_dir=task_dir,
                    destination=staging / name,
                )
                for name, schema_title in artifact_types.items()
            }
            write_json(
                staging / MANIFEST_FILE,
                {
                    "format": CACHE_FORMAT,
                    "stage": stage,
                    "key": key,
                    "created": datetime.now(UTC).isoformat(timespec="seconds"),
                    "parameters": executor_output.get("parameterValues", {}),
                    "artifacts": artifacts,
                },
            )
            entry = stage_dir / key
            if entry.exists():
                shutil.rmtree(entry)
            try:
                staging.rename(entry)
            except OSError:
                if not entry.is_dir():
                    raise
                # Another run stored the same key meanwhile; keep its entry.
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        return True

    def materialize(self, stored: StoredStage, destination: Path) -> dict[str, Any]:
        """Link a verified entry's outputs into `destination`; kfp's outputs dict."""
        from kfp.dsl import executor

        destination.mkdir(parents=True, exist_ok=True)
        outputs: dict[str, Any] = dict(stored.parameters)
        for name, artifact in stored.artifacts.items():
            target = destination / name
            source = stored.path / name
            if artifact["kind"] == "dir":
                shutil.copytree(source, target, copy_function=_link_or_copy)
            elif artifact["kind"] == "file":
                _link_or_copy(str(source), str(target))
            else:
                # Metrics live in metadata only; kfp's cache wants the path to exist.
                target.touch()
            outputs[name] = executor.create_artifact_instance(
                {
                    "name": name,
                    "uri": str(target),
                    "metadata": artifact["metadata"],
                    "type": {"schemaTitle": artifact["schema_title"]},
                }
            )
        return outputs


def _store_artifact(
    name: str,
    *,
    schema_title: str,
    executor_output: dict[str, Any],
    task_dir: Path,
    destination: Path,
) -> dict[str, Any]:
    listed = executor_output.get("artifacts", {}).get(name, {}).get("artifacts", [])
    source = Path(listed[0]["uri"]) if listed else task_dir / name
    record: dict[str, Any] = {
        "schema_title": schema_title,
        "metadata": listed[0].get("metadata", {}) if listed else {},
    }
    if source.is_dir():
        shutil.copytree(source, destination, copy_function=_link_or_copy)
        record.update(kind="dir", files=tree_digest(destination))
    elif source.is_file():
        _link_or_copy(str(source), str(destination))
        record.update(kind="file", sha256=file_digest(destination))
    else:
        record.update(kind="absent")
    return record


def _verify(
    entry: Path, manifest: dict[str, Any], *, stage: str, key: str
) -> str | None:
    """What is wrong with a stored entry, or None when every file matches."""
    if manifest.get("format") != CACHE_FORMAT:
        return f"format {manifest.get('format')!r}, expected {CACHE_FORMAT}"
    if manifest.get("stage") != stage or manifest.get("key") != key:
        return "manifest names another stage or key"
    for name, artifact in manifest["artifacts"].items():
        path = entry / name
        if artifact["kind"] == "file":
            if not path.is_file():
                return f"{name} is missing"
            if file_digest(path) != artifact["sha256"]:
                return f"{name} changed (SHA-256 differs)"
        elif artifact["kind"] == "dir":
            if not path.is_dir():
                return f"{name}/ is missing"
            if tree_digest(path) != artifact["files"]:
                return f"files under {name}/ differ from the manifest"
    return None


def _link_or_copy(source: str, destination: str) -> str:
    """Hard-link a file (instant, no extra disk); copy across file systems."""
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)
    return destination
