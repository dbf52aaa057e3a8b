"""KFP adapter for the preprocess step."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Metrics, Output

from components.common.images import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def preprocess(
    config_json: str,
    train_data: Output[Dataset],
    validation_data: Output[Dataset],
    test_data: Output[Dataset],
    production_data: Output[Dataset],
    preprocessor: Output[Artifact],
    data_metrics: Output[Metrics],
):
    """Load the dataset, record its schema, split it and fit the transform."""
    from components.common.config import PlumbConfig
    from components.common.logs import setup_logging
    from components.preprocess.lib import prepare, write_prepared

    setup_logging()
    prepared = prepare(PlumbConfig.from_json(config_json))
    write_prepared(
        prepared,
        split_paths={
            "train": train_data.path,
            "validation": validation_data.path,
            "test": test_data.path,
            "production": production_data.path,
        },
        preprocessor_dir=preprocessor.path,
    )
    for name, frame in prepared.splits.items():
        data_metrics.log_metric(f"{name}_rows", len(frame))
    data_metrics.log_metric("features", len(prepared.schema.columns))
    data_metrics.log_metric("encoded_width", prepared.transform.width)
