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
):
    """Write (and, with a cluster configured, apply) the InferenceService."""
    from components.common.config import PlumbConfig
    from components.common.logs import setup_logging
    from components.deploy.lib import deploy_model

    setup_logging()
    config = PlumbConfig.from_json(config_json)
    result = deploy_model(
        config.deployment,
        model_uri=model.uri,
        model_dir=model.path,
        verdict_path=verdict.path,
        output_path=inference_service.path,
    )
    inference_service.metadata.update(result)
