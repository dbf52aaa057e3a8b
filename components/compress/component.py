"""KFP adapter for the compress step."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from components.common.images import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def compress(
    config_json: str,
    model: Input[Model],
    train_data: Input[Dataset],
    validation_data: Input[Dataset],
    compressed_model: Output[Model],
    compression_report: Output[Artifact],
    compression_html: Output[HTML],
    compression_metrics: Output[Metrics],
):
    """Make compressed candidates and keep the smallest one within the metric budget."""
    import tempfile

    from components.common.artifacts import read_table, write_json
    from components.common.config import PlumbConfig
    from components.common.logs import setup_logging
    from components.compress.lib import compress_model, metric_key
    from components.compress.report import render_html

    setup_logging()
    config = PlumbConfig.from_json(config_json)
    with tempfile.TemporaryDirectory() as work_dir:
        report = compress_model(
            config.compression,
            model_dir=model.path,
            train=read_table(train_data.path),
            validation=read_table(validation_data.path),
            work_dir=work_dir,
            output_dir=compressed_model.path,
        )
    write_json(compression_report.path, report)
    with open(compression_html.path, "w", encoding="utf-8") as handle:
        handle.write(
            render_html(report, title=f"plumb compression: {config.data.dataset}")
        )
    compressed_model.metadata["compression"] = report["selected"]
    compression_metrics.log_metric("none_qualified", float(report["none_qualified"]))
    for candidate in report["candidates"]:
        key = metric_key(candidate["name"])
        compression_metrics.log_metric(f"{key}_size_bytes", candidate["size_bytes"])
        compression_metrics.log_metric(
            f"{key}_{candidate['metric_name']}", candidate["metric"]
        )
        compression_metrics.log_metric(
            f"{key}_latency_ms", candidate["single_row_latency_ms"]
        )
