"""KFP adapter for the train step."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components.common.images import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def train(
    config_json: str,
    train_data: Input[Dataset],
    validation_data: Input[Dataset],
    preprocessor: Input[Artifact],
    model: Output[Model],
    baseline_model: Output[Model],
    train_metrics: Output[Metrics],
):
    """Train the configured network (and the tree baseline); export both."""
    from components.common.artifacts import read_table
    from components.common.config import PlumbConfig
    from components.common.logs import setup_logging
    from components.train.baseline import train_baseline
    from components.train.lib import train_and_export

    setup_logging()
    config = PlumbConfig.from_json(config_json)
    train_frame = read_table(train_data.path)
    results = train_and_export(
        config.training,
        train=train_frame,
        validation=read_table(validation_data.path),
        preprocessor_dir=preprocessor.path,
        model_dir=model.path,
    )
    results.update(
        train_baseline(
            config.training,
            train=train_frame,
            preprocessor_dir=preprocessor.path,
            model_dir=baseline_model.path,
        )
    )
    model.metadata["framework"] = config.training.framework
    model.metadata["model"] = config.training.model
    baseline_model.metadata["framework"] = "sklearn"
    for name, value in results.items():
        train_metrics.log_metric(name, value)
