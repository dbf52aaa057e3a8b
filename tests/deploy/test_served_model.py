"""The served model directory: the evaluated model plus its decision threshold."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from components.common.artifacts import METADATA_FILE, read_json
from components.common.errors import GateFailedError, PlumbError
from components.delivery.gitops import load_verdict, verdict_location
from components.deploy.lib import stage_served_model
from components.preprocess.lib import PreparedData
from components.serving.model import PlumbModel


def _verdict(tmp_path: Path, *, passed: bool = True, **fields: Any) -> Path:
    path = tmp_path / "verdict.json"
    path.write_text(json.dumps({"passed": passed, "reasons": ["r"], **fields}))
    return path


def _labels(model_dir: Path, rows: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    model = PlumbModel("m", model_dir)
    model.load()
    answer = asyncio.run(model.predict({"instances": rows}))["predictions"]
    return (
        np.array([row["probability"] for row in answer]),
        np.array([row["label"] for row in answer]),
    )


def test_served_labels_follow_the_verdict_threshold(
    tmp_path: Path, trained_model_dir: Path, prepared_breast_cancer: PreparedData
) -> None:
    """The copy labels at the evaluated threshold; the evaluated model is unchanged."""
    schema = prepared_breast_cancer.schema
    rows = prepared_breast_cancer.splits["test"][schema.feature_names].values.tolist()
    probabilities, labels_at_half = _labels(trained_model_dir, rows)
    # The median probability: about half the rows change sides against 0.5.
    threshold = float(np.median(probabilities))
    before = (trained_model_dir / METADATA_FILE).read_bytes()

    verdict_path = _verdict(
        tmp_path, metrics={"decision_threshold": threshold}, threshold_strategy="f1"
    )

    written = stage_served_model(
        trained_model_dir, verdict_path=verdict_path, output_dir=tmp_path / "served"
    )

    assert written == threshold
    metadata = read_json(tmp_path / "served" / METADATA_FILE)
    assert metadata["decision_threshold"] == threshold
    assert metadata["threshold_strategy"] == "f1"
    assert (trained_model_dir / METADATA_FILE).read_bytes() == before
    # `plumb promote` finds the verdict beside the served files by default.
    served_uri = (tmp_path / "served").as_uri()
    assert load_verdict(verdict_location(served_uri)) == read_json(verdict_path)
    served_probabilities, served_labels = _labels(tmp_path / "served", rows)
    np.testing.assert_array_equal(served_probabilities, probabilities)
    positive = schema.positive_class
    np.testing.assert_array_equal(served_labels == positive, probabilities >= threshold)
    np.testing.assert_array_equal(labels_at_half == positive, probabilities >= 0.5)
    assert (served_labels != labels_at_half).any()


def test_without_a_threshold_the_copy_keeps_none(
    tmp_path: Path, trained_model_dir: Path
) -> None:
    """A verdict without a threshold (regression) leaves none in the served copy."""
    source = tmp_path / "model"
    source.mkdir()
    for path in trained_model_dir.iterdir():
        if path.is_file():
            (source / path.name).write_bytes(path.read_bytes())
    metadata = read_json(source / METADATA_FILE)
    (source / METADATA_FILE).write_text(
        json.dumps({**metadata, "decision_threshold": 0.3})
    )

    assert (
        stage_served_model(
            source,
            verdict_path=_verdict(tmp_path, metrics={}),
            output_dir=tmp_path / "s",
        )
        is None
    )
    assert "decision_threshold" not in read_json(tmp_path / "s" / METADATA_FILE)


def test_failed_gate_stages_nothing(tmp_path: Path, trained_model_dir: Path) -> None:
    """A model whose gate failed is not copied."""
    with pytest.raises(GateFailedError, match="gate failed"):
        stage_served_model(
            trained_model_dir,
            verdict_path=_verdict(tmp_path, passed=False),
            output_dir=tmp_path / "served",
        )
    assert not (tmp_path / "served").exists()


@pytest.mark.parametrize("threshold", [1.5, -0.1, "0.5", True, float("nan")])
def test_a_threshold_that_is_not_a_probability_is_refused(
    tmp_path: Path, trained_model_dir: Path, threshold: Any
) -> None:
    """A corrupt verdict threshold stops the deploy, naming the value."""
    metrics = {"decision_threshold": threshold}
    with pytest.raises(PlumbError, match="not a probability"):
        stage_served_model(
            trained_model_dir,
            verdict_path=_verdict(tmp_path, metrics=metrics),
            output_dir=tmp_path / "served",
        )
    assert not (tmp_path / "served").exists()


def test_a_directory_without_a_model_is_refused(tmp_path: Path) -> None:
    """Staging an empty directory names the missing metadata file."""
    (tmp_path / "empty").mkdir()
    with pytest.raises(PlumbError, match="no metadata.json"):
        stage_served_model(
            tmp_path / "empty",
            verdict_path=_verdict(tmp_path),
            output_dir=tmp_path / "served",
        )
