"""KFP adapter for the compress step."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components.common.images import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def compress(
    config_json: str,
    model: Input[Model],
    validation_data: Input[Dataset],
    compressed_model: Output[Model],
    compression_report: Output[Artifact],
    compression_metrics: Output[Metrics],
):
    """Make compressed candidates and keep the smallest one within the metric budget."""
    import tempfile

    from components.common.artifacts import read_table, write_json
    from components.common.config import PlumbConfig
    from components.common.logs import setup_logging
    from components.compress.lib import compress_model

    setup_logging()
    config = PlumbConfig.from_json(config_json)
    with tempfile.TemporaryDirectory() as work_dir:
        report = compress_model(
            config.compression,
            model_dir=model.path,
            validation=read_table(validation_data.path),
            work_dir=work_dir,
            output_dir=compressed_model.path,
        )
    write_json(compression_report.path, report)
    compressed_model.metadata["compression"] = report["selected"]
    for candidate in report["candidates"]:
        name = candidate["name"]
        compression_metrics.log_metric(f"{name}_size_bytes", candidate["size_bytes"])
        compression_metrics.log_metric(
            f"{name}_{candidate['metric_name']}", candidate["metric"]
        )
