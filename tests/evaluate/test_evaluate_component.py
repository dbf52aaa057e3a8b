"""The evaluate component through kfp's local runner, with the optional baseline wired."""

import json
from pathlib import Path

import pytest
from kfp import dsl, local
from kfp.dsl import Dataset, Model

from components.common.config import PlumbConfig
from components.evaluate.component import evaluate


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.filterwarnings("ignore:You may be attemping to run a task")
def test_component_logs_metrics_and_writes_verdict(
    tmp_path: Path,
    trained_model_dir: Path,
    baseline_model_dir: Path,
    preprocessed_dir: Path,
) -> None:
    """A real SubprocessRunner run writes the verdict, report and KFP metrics."""
    config = PlumbConfig.model_validate(
        {
            "data": {"dataset": "breast-cancer"},
            "evaluation": {
                "threshold_strategy": "f1",
                "importance_repeats": 1,
                "gate": {"baseline": {"max_regression": {"roc_auc": 0.2}}},
            },
        }
    )

    # No `from __future__ import annotations` here: kfp reads the pipeline's
    # annotations as types, and a string "str" would look like an artifact type.
    @dsl.pipeline(name="evaluate-only")
    def evaluate_only(config_json: str) -> None:
        def imported(path: Path, kind: type) -> dsl.PipelineTask:
            return dsl.importer(artifact_uri=str(path), artifact_class=kind)

        evaluate(
            config_json=config_json,
            model=imported(trained_model_dir, Model).output,
            test_data=imported(preprocessed_dir / "test.parquet", Dataset).output,
            validation_data=imported(
                preprocessed_dir / "validation.parquet", Dataset
            ).output,
            baseline_model=imported(baseline_model_dir, Model).output,
        )

    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "root"),
        workspace_root=str(tmp_path / "workspace"),
        raise_on_error=True,
    )
    evaluate_only(config_json=config.to_json())

    (task_dir,) = (tmp_path / "root").glob("*/evaluate")
    verdict = json.loads((task_dir / "verdict").read_text())
    assert verdict["passed"] is True
    assert set(verdict["comparisons"]) == {"baseline"}
    assert verdict["checks"][-1]["kind"] == "baseline"
    assert "<section id='slices'>" in (task_dir / "report").read_text()
    executor_output = json.loads((task_dir / "executor_output.json").read_text())
    assert executor_output["parameterValues"]["gate_passed"] is True
    artifacts = executor_output["artifacts"]
    logged = artifacts["metrics"]["artifacts"][0]["metadata"]
    assert {"roc_auc", "decision_threshold", "baseline_roc_auc"} <= set(logged)
    matrix = artifacts["classification_metrics"]["artifacts"][0]["metadata"]
    assert matrix["confusionMatrix"]["annotationSpecs"][1] == {
        "displayName": "malignant"
    }
