"""plumb's training pipeline: preprocess -> train -> compress -> evaluate -> deploy, monitor.

The whole run is configured by one parameter, `config_json`: the validated `PlumbConfig`
as JSON. The compiled YAML next to this file is what users upload in the Kubeflow UI;
`plumb compile` rewrites it and a test fails when it is stale.
"""

from pathlib import Path

from kfp import compiler, dsl
from kfp.dsl import Artifact, Input, Model

from components.common.config import PlumbConfig
from components.compress.component import compress
from components.deploy.component import deploy
from components.evaluate.component import evaluate
from components.monitoring.component import monitor
from components.preprocess.component import preprocess
from components.train.component import train

PIPELINE_NAME = "plumb-training"
COMPILED_PIPELINE = Path(__file__).with_name("training.yaml")
DEFAULT_CONFIG_JSON = PlumbConfig().to_json()


@dsl.pipeline(name="deploy-if-gate-passed")
def deploy_if_gate_passed(
    config_json: str, gate_passed: bool, model: Input[Model], verdict: Input[Artifact]
) -> None:
    """Deploy only a model whose evaluation gate passed; otherwise the step is skipped."""
    # The condition sits in a sub-pipeline so that it reads a pipeline input: kfp's local
    # runner (2.17) cannot resolve a condition on a sibling task's output and would
    # always skip the branch.
    with dsl.If(gate_passed == True, name="gate-passed"):  # noqa: E712
        deploy(config_json=config_json, model=model, verdict=verdict).set_display_name(
            "deploy"
        )


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Preprocess, train, compress and evaluate a tabular model; write its "
    "KServe InferenceService when the gate passes; report data drift.",
)
def training_pipeline(config_json: str = DEFAULT_CONFIG_JSON) -> None:
    """Run plumb's loop on the dataset the config names."""
    prepared = preprocess(config_json=config_json).set_display_name("preprocess")
    trained = train(
        config_json=config_json,
        train_data=prepared.outputs["train_data"],
        validation_data=prepared.outputs["validation_data"],
        preprocessor=prepared.outputs["preprocessor"],
    ).set_display_name("train")
    compressed = compress(
        config_json=config_json,
        model=trained.outputs["model"],
        validation_data=prepared.outputs["validation_data"],
    ).set_display_name("compress")
    evaluated = evaluate(
        config_json=config_json,
        model=compressed.outputs["compressed_model"],
        test_data=prepared.outputs["test_data"],
        validation_data=prepared.outputs["validation_data"],
    ).set_display_name("evaluate")
    deploy_if_gate_passed(
        config_json=config_json,
        gate_passed=evaluated.outputs["gate_passed"],
        model=compressed.outputs["compressed_model"],
        verdict=evaluated.outputs["verdict"],
    ).set_display_name("deploy-if-gate-passed")
    monitor(
        config_json=config_json,
        reference_data=prepared.outputs["train_data"],
        production_data=prepared.outputs["production_data"],
        test_data=prepared.outputs["test_data"],
        preprocessor=prepared.outputs["preprocessor"],
    ).set_display_name("monitor")


def compile_pipeline(path: str | Path = COMPILED_PIPELINE) -> Path:
    """Compile the pipeline to YAML that the Kubeflow UI accepts."""
    compiler.Compiler().compile(pipeline_func=training_pipeline, package_path=str(path))
    return Path(path)
