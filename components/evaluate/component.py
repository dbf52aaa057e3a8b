"""KFP adapter for the evaluate step."""

from typing import NamedTuple, Optional

from kfp import dsl
from kfp.dsl import (
    HTML,
    Artifact,
    ClassificationMetrics,
    Dataset,
    Input,
    Metrics,
    Model,
    Output,
)

from components.common.images import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def evaluate(
    config_json: str,
    model: Input[Model],
    test_data: Input[Dataset],
    validation_data: Input[Dataset],
    metrics: Output[Metrics],
    classification_metrics: Output[ClassificationMetrics],
    verdict: Output[Artifact],
    report: Output[HTML],
    # kfp strips only typing.Optional (not `X | None`) to mark an input optional.
    baseline_model: Optional[Input[Model]] = None,  # noqa: UP045
) -> NamedTuple("EvaluateOutputs", [("gate_passed", bool)]):  # type: ignore[valid-type]
    """Score the model on the test split, compare it and decide the gate."""
    from collections import namedtuple

    from components.common.artifacts import read_table
    from components.common.config import PlumbConfig
    from components.common.logs import setup_logging
    from components.evaluate.lib import (
        evaluate_model,
        resolve_slice_column,
        scalar_metrics,
        write_outputs,
    )

    setup_logging()
    config = PlumbConfig.from_json(config_json)
    evaluation = evaluate_model(
        model.path,
        read_table(test_data.path),
        config.evaluation,
        validation=read_table(validation_data.path),
        baseline_model_dir=None if baseline_model is None else baseline_model.path,
        slice_column=resolve_slice_column(config),
    )

    for name, value in scalar_metrics(evaluation).items():
        metrics.log_metric(name, value)
    if evaluation.confusion_matrix is not None:
        classification_metrics.log_confusion_matrix(
            list(evaluation.class_names), evaluation.confusion_matrix
        )
    roc = evaluation.curves.get("roc", {}).get("candidate")
    if roc is not None:
        classification_metrics.log_roc_curve(roc.x, roc.y, roc.thresholds)
    write_outputs(
        evaluation,
        verdict_path=verdict.path,
        report_path=report.path,
        title=f"plumb evaluation: {config.data.dataset}",
    )
    verdict.metadata["passed"] = evaluation.verdict.passed
    EvaluateOutputs = namedtuple("EvaluateOutputs", ["gate_passed"])  # noqa: PYI024
    return EvaluateOutputs(evaluation.verdict.passed)
