"""The compiled pipeline and a whole local run through kfp's SubprocessRunner."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from components.common.artifacts import (
    METADATA_FILE,
    ONNX_MODEL_FILE,
    SCHEMA_FILE,
    TRANSFORM_FILE,
    read_table,
)
from components.serving.model import PlumbModel
from pipelines.training import COMPILED_PIPELINE, compile_pipeline

ROOT = Path(__file__).parents[2]


def test_committed_yaml_matches_a_fresh_compile(tmp_path: Path) -> None:
    """pipelines/training.yaml is what the code compiles to; run `plumb compile` if not."""
    fresh = compile_pipeline(tmp_path / "training.yaml")
    committed = yaml.safe_load(COMPILED_PIPELINE.read_text(encoding="utf-8"))
    compiled = yaml.safe_load(fresh.read_text(encoding="utf-8"))
    # kfp stamps the SDK version only; everything else must be identical.
    assert compiled == committed, (
        "pipelines/training.yaml is stale: run `plumb compile`"
    )


def test_compiled_yaml_names_every_step_and_one_config_parameter() -> None:
    """The uploadable YAML has every stage and takes the config as one JSON parameter."""
    spec = yaml.safe_load(COMPILED_PIPELINE.read_text(encoding="utf-8"))
    executors = set(spec["deploymentSpec"]["executors"])
    for step in ("preprocess", "train", "compress", "evaluate", "deploy", "monitor"):
        assert f"exec-{step}" in executors
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == {"config_json"}


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PLUMB_LOG_LEVEL": "INFO"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "plumb",
            "run",
            "--config",
            str(ROOT / "examples/breast-cancer.yaml"),
            *args,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env=env,
    )


@pytest.mark.slow
@pytest.mark.integration
def test_local_run_on_breast_cancer_produces_every_artifact(tmp_path: Path) -> None:
    """The real pipeline runs end to end; metrics are high and every artifact exists."""
    result = _run(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for task in ("preprocess", "train", "compress", "evaluate", "deploy", "monitor"):
        assert f"Task '{task}' finished with status SUCCESS" in result.stdout

    latest = tmp_path / "runs" / "latest"
    summary = json.loads((latest / "summary.json").read_text())
    assert summary["status"] == "succeeded"
    # breast-cancer is nearly separable; a working MLP scores well above these floors.
    assert summary["metrics"]["roc_auc"] > 0.97
    assert summary["metrics"]["accuracy"] > 0.9
    assert summary["gate_passed"] is True

    model_dir = Path(summary["model_path"])
    for name in (ONNX_MODEL_FILE, SCHEMA_FILE, TRANSFORM_FILE, METADATA_FILE):
        assert (model_dir / name).is_file(), name
    service = yaml.safe_load(Path(summary["inference_service_path"]).read_text())
    assert service["kind"] == "InferenceService"
    assert service["spec"]["predictor"]["model"]["storageUri"]
    assert (
        Path(summary["evaluation_report_path"])
        .read_text()
        .startswith("<!doctype html>")
    )
    assert "Drifted Columns" in Path(summary["drift_report_path"]).read_text()
    assert summary["drift_share"] is not None
    assert (latest / "pipeline.log").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.integration
def test_failed_gate_skips_deploy_and_failed_run_keeps_earlier_runs(
    tmp_path: Path,
) -> None:
    """A gate nobody meets writes no InferenceService; a broken run leaves old runs alone."""
    result = _run(tmp_path, "--set", "evaluation.gate.thresholds={log_loss: 0.000001}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    first = (tmp_path / "runs" / "latest").resolve()
    summary = json.loads((first / "summary.json").read_text())
    assert summary["gate_passed"] is False
    assert summary["inference_service_path"] is None
    assert "Task 'deploy'" not in result.stdout
    before = {p: p.stat().st_mtime_ns for p in first.rglob("*") if p.is_file()}

    # A learning rate this large turns the loss into NaN inside the train task.
    failed = _run(tmp_path, "--set", "training.learning_rate=1e30")
    assert failed.returncode == 1
    assert "training loss became nan" in failed.stderr
    assert "Traceback" in failed.stderr  # the failing task's own traceback, shown once
    assert (tmp_path / "runs" / "latest").resolve() == first
    statuses = [
        json.loads(p.read_text())["status"]
        for p in (tmp_path / "runs").glob("*/summary.json")
        if p.parent.name != "latest"
    ]
    assert sorted(statuses) == ["failed", "succeeded"]
    assert {p: p.stat().st_mtime_ns for p in first.rglob("*") if p.is_file()} == before


@pytest.mark.slow
@pytest.mark.integration
def test_served_labels_use_the_threshold_evaluation_chose(tmp_path: Path) -> None:
    """With `threshold_strategy: f1`, the served model labels the test rows exactly as
    the evaluation did: its accuracy and F1 from served labels equal the run's."""
    result = _run(tmp_path, "--set", "evaluation.threshold_strategy=f1")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((tmp_path / "runs/latest/summary.json").read_text())
    threshold = summary["metrics"]["decision_threshold"]
    # F1's threshold is one of the validation scores, so 0.5 would mean it was lost.
    assert threshold != 0.5

    model_dir = Path(summary["model_path"])
    assert model_dir.name == "served_model"
    metadata = json.loads((model_dir / METADATA_FILE).read_text())
    assert metadata["decision_threshold"] == threshold
    assert metadata["threshold_strategy"] == "f1"
    service = yaml.safe_load(Path(summary["inference_service_path"]).read_text())
    assert service["spec"]["predictor"]["model"]["storageUri"] == str(model_dir)

    model = PlumbModel("m", model_dir)
    model.load()
    schema = model.runtime.schema
    test = read_table(next((tmp_path / "runs/latest/artifacts").rglob("test_data")))
    answer = asyncio.run(
        model.predict({"instances": test[schema.feature_names].values.tolist()})
    )
    served = np.array(
        [row["label"] == schema.positive_class for row in answer["predictions"]]
    )
    truth = schema.labels(test) == 1
    # Same model file, same rows, same threshold: the metrics agree to rounding.
    assert np.mean(served == truth) == pytest.approx(
        summary["metrics"]["accuracy"], abs=1e-12
    )
    true_positives = np.sum(served & truth)
    f1 = 2 * true_positives / (np.sum(served) + np.sum(truth))
    assert f1 == pytest.approx(summary["metrics"]["f1"], abs=1e-12)
