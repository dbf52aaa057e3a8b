"""plumb's training pipeline: preprocess -> train -> compress -> evaluate -> deploy, monitor.

The whole run is configured by one parameter, `config_json`: the validated `PlumbConfig`
as JSON. The compiled YAML next to this file is what users upload in the Kubeflow UI;
`plumb compile` rewrites it and a test fails when it is stale. What the cluster must
provide to a task is fixed at compile time: `build_training_pipeline(config)` asks for
GPUs on the train task (and mounts the shared training volume for cluster jobs) when
that config does; `plumb compile --config FILE` compiles for a given config.
"""

from collections.abc import Mapping
from pathlib import Path

from kfp import compiler, dsl, kubernetes
from kfp.dsl import Artifact, Input, Model
from kfp.dsl.graph_component import GraphComponent

from components.common.config import PlumbConfig, TrainingConfig
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


def request_training_resources(
    task: dsl.PipelineTask, training: TrainingConfig
) -> None:
    """Ask for the accelerators (local backend) or the shared volume (cluster jobs)."""
    if training.backend == "local" and training.gpus_per_worker:
        task.set_accelerator_type(training.accelerator_type)
        # Locally each of the `workers` processes drives one GPU of the train pod.
        task.set_accelerator_limit(training.workers)
    if training.backend != "local" and training.cluster.volume_claim:
        kubernetes.mount_pvc(
            task,
            pvc_name=training.cluster.volume_claim,
            mount_path=training.cluster.shared_path,
        )


def use_stage_cache(
    task: dsl.PipelineTask, cached_keys: Mapping[str, str] | None
) -> dsl.PipelineTask:
    """Local runs: take the task from kfp's cache under plumb's key, or run it.

    `cached_keys` maps the task names whose verified outputs `pipelines.local` put in
    kfp's local cache to their stage keys; every other task runs. None (compiling for a
    cluster) leaves the task's caching options as kfp sets them.
    """
    if cached_keys is None:
        return task
    key = cached_keys.get(task.name)
    return task.set_caching_options(enable_caching=key is not None, cache_key=key)


def build_training_pipeline(
    config: PlumbConfig | None = None,
    *,
    cached_keys: Mapping[str, str] | None = None,
) -> GraphComponent:
    """Build the pipeline; `config` is its default parameter and sets task resources.

    `cached_keys` is for local runs only (see `use_stage_cache`).
    """
    config = config or PlumbConfig()
    default_config_json = config.to_json()

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Preprocess, train, compress and evaluate a tabular model; write its "
        "KServe InferenceService when the gate passes; report data drift.",
    )
    def training_pipeline(config_json: str = default_config_json) -> None:
        """Run plumb's loop on the dataset the config names."""
        prepared = preprocess(config_json=config_json).set_display_name("preprocess")
        use_stage_cache(prepared, cached_keys)
        trained = train(
            config_json=config_json,
            train_data=prepared.outputs["train_data"],
            validation_data=prepared.outputs["validation_data"],
            preprocessor=prepared.outputs["preprocessor"],
        ).set_display_name("train")
        request_training_resources(trained, config.training)
        use_stage_cache(trained, cached_keys)
        compressed = compress(
            config_json=config_json,
            model=trained.outputs["model"],
            train_data=prepared.outputs["train_data"],
            validation_data=prepared.outputs["validation_data"],
        ).set_display_name("compress")
        use_stage_cache(compressed, cached_keys)
        evaluated = evaluate(
            config_json=config_json,
            model=compressed.outputs["compressed_model"],
            test_data=prepared.outputs["test_data"],
            validation_data=prepared.outputs["validation_data"],
            baseline_model=trained.outputs["baseline_model"],
        ).set_display_name("evaluate")
        use_stage_cache(evaluated, cached_keys)
        deploy_if_gate_passed(
            config_json=config_json,
            gate_passed=evaluated.outputs["gate_passed"],
            model=compressed.outputs["compressed_model"],
            verdict=evaluated.outputs["verdict"],
        ).set_display_name("deploy-if-gate-passed")
        monitored = monitor(
            config_json=config_json,
            reference_data=prepared.outputs["train_data"],
            production_data=prepared.outputs["production_data"],
            test_data=prepared.outputs["test_data"],
            preprocessor=prepared.outputs["preprocessor"],
        ).set_display_name("monitor")
        use_stage_cache(monitored, cached_keys)

    return training_pipeline


training_pipeline = build_training_pipeline()


def compile_pipeline(
    path: str | Path = COMPILED_PIPELINE, *, config: PlumbConfig | None = None
) -> Path:
    """Compile the pipeline (for `config`, default: the defaults) to YAML for the UI."""
    pipeline = training_pipeline if config is None else build_training_pipeline(config)
    compiler.Compiler().compile(pipeline_func=pipeline, package_path=str(path))
    return Path(path)
