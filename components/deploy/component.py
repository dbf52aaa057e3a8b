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
    """Write the InferenceService for a model whose evaluation gate passed."""
    from components.common.config import PlumbConfig
    from components.common.logs import setup_logging
    from components.deploy.lib import write_inference_service

    setup_logging()
    config = PlumbConfig.from_json(config_json)
    storage_uri = write_inference_service(
        config.deployment,
        model_uri=model.uri,
        verdict_path=verdict.path,
        output_path=inference_service.path,
    )
    inference_service.metadata["storage_uri"] = storage_uri
