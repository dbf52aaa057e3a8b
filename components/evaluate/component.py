"""KFP adapter for the evaluate step."""

from typing import NamedTuple

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
    metrics: Output[Metrics],
    classification_metrics: Output[ClassificationMetrics],
    verdict: Output[Artifact],
    report: Output[HTML],
) -> NamedTuple("EvaluateOutputs", [("gate_passed", bool)]):  # type: ignore[valid-type]
    """Score the model on the test split and decide the gate."""
    from collections import namedtuple

    from components.common.artifacts import read_table, write_json
    from components.common.config import PlumbConfig
    from components.common.logs import setup_logging
    from components.evaluate.lib import evaluate_model, render_report

    setup_logging()
    config = PlumbConfig.from_json(config_json)
    evaluation = evaluate_model(
        model.path, read_table(test_data.path), config.evaluation
    )

    for name, value in evaluation.metrics.items():
        metrics.log_metric(name, value)
    if evaluation.confusion_matrix is not None:
        classification_metrics.log_confusion_matrix(
            ["0", "1"], evaluation.confusion_matrix
        )
    if evaluation.roc_curve is not None:
        classification_metrics.log_roc_curve(*evaluation.roc_curve)
    write_json(
        verdict.path, {**evaluation.verdict.to_dict(), "metrics": evaluation.metrics}
    )
    with open(report.path, "w", encoding="utf-8") as handle:
        handle.write(
            render_report(evaluation, title=f"plumb evaluation: {config.data.dataset}")
        )
    EvaluateOutputs = namedtuple("EvaluateOutputs", ["gate_passed"])  # noqa: PYI024
    return EvaluateOutputs(evaluation.verdict.passed)
