"""KFP adapter for the deploy step."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output

from components.common.images import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def deploy(
    config_json: str,
    model: Input[Model],
    verdict: Input[Artifact],
    inference_service: Output[Artifact],
    served_model: Output[Model],
):
    """Stage the model to serve with its decision threshold; write (and, with a
    cluster configured, apply) the InferenceService that serves it."""
    from components.common.config import PlumbConfig
    from components.common.logs import setup_logging
    from components.deploy.lib import deploy_model, stage_served_model

    setup_logging()
    config = PlumbConfig.from_json(config_json)
    threshold = stage_served_model(
        model.path, verdict_path=verdict.path, output_dir=served_model.path
    )
    if threshold is not None:
        served_model.metadata["decision_threshold"] = threshold
    result = deploy_model(
        config.deployment,
        model_uri=served_model.uri,
        model_dir=served_model.path,
        verdict_path=verdict.path,
        output_path=inference_service.path,
    )
    inference_service.metadata.update(result)
