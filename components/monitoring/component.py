"""KFP adapter for the monitor step: drift of the production slice against training."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from components.common.images import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def monitor(
    config_json: str,
    reference_data: Input[Dataset],
    production_data: Input[Dataset],
    test_data: Input[Dataset],
    preprocessor: Input[Artifact],
    drift_report: Output[HTML],
    drift_summary: Output[Artifact],
    drift_metrics: Output[Metrics],
):
    """Compare the production slice (or, without one, the test split) with training."""
    from components.common.artifacts import SCHEMA_FILE, read_table, write_json
    from components.common.config import PlumbConfig
    from components.common.logs import setup_logging
    from components.monitoring.drift import compute_drift
    from components.preprocess.schema import Schema

    setup_logging()
    config = PlumbConfig.from_json(config_json)
    current = read_table(production_data.path)
    if current.empty:
        current = read_table(test_data.path)
    result = compute_drift(
        read_table(reference_data.path),
        current,
        schema=Schema.load(f"{preprocessor.path}/{SCHEMA_FILE}"),
        config=config.monitoring,
        html_path=drift_report.path,
    )
    write_json(drift_summary.path, result.to_dict())
    drift_metrics.log_metric("drift_share", result.drift_share)
    drift_metrics.log_metric("drifted_columns", result.drifted_columns)
    drift_metrics.log_metric("dataset_drifted", float(result.drifted))
