"""plumb's configuration: one YAML file, validated when it is loaded.

`load_config` reads `plumb.yaml` (or the file given), applies `PLUMB_<SECTION>__<FIELD>`
environment overrides and returns a `PlumbConfig`. Every pipeline component receives the
same validated config as a JSON string, so the CLI, the local runner and a cluster run all
see identical settings.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from components.common.errors import ConfigError
from components.common.images import PIPELINE_IMAGE

DEFAULT_CONFIG_FILE = "plumb.yaml"
ENV_PREFIX = "PLUMB_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class SplitConfig(_Section):
    """How rows are divided into train, validation, test and production slices.

    A fraction left unset (None) takes the built-in dataset's choice, else the generic
    default in `SPLIT_DEFAULTS`.
    """

    validation_fraction: float | None = Field(None, ge=0.0, lt=1.0)
    """Share of rows for validation (early stopping, compression checks); default 0.15."""

    test_fraction: float | None = Field(None, ge=0.0, lt=1.0)
    """Share of rows held out for the evaluation gate; default 0.15."""

    production_fraction: float | None = Field(None, ge=0.0, lt=1.0)
    """Share of the latest rows kept aside to play production traffic for the drift
    monitor; default 0 (flights: 0.25, October to December). 0 makes the monitor
    compare the test split with the training data."""

    time_column: str | None = None
    """Order rows by this column and split by time (earliest rows train, latest rows
    play production); boundaries fall between distinct values, so a month is never cut
    in two. None takes the built-in dataset's (flights: `month`), else splits at random,
    stratified by the target for classification."""

    seed: int = 42
    """Seed of the random split."""

    @model_validator(mode="after")
    def _fractions_leave_training_rows(self) -> SplitConfig:
        self.with_defaults({})
        return self

    def with_defaults(self, defaults: Mapping[str, Any]) -> SplitConfig:
        """Fill unset fractions from `defaults`, then `SPLIT_DEFAULTS`, and check them."""
        values = self.model_dump()
        for name, generic in SPLIT_DEFAULTS.items():
            if values[name] is None:
                values[name] = defaults.get(name, generic)
        if values["time_column"] is None:
            values["time_column"] = defaults.get("time_column")
        held_out = sum(values[name] for name in SPLIT_DEFAULTS)
        if held_out >= 0.9:
            raise ValueError(
                f"validation, test and production fractions add up to {held_out:.2f}; "
                "keep their sum below 0.9 so training has rows"
            )
        return SplitConfig.model_construct(**values)


SPLIT_DEFAULTS = {
    "validation_fraction": 0.15,
    "test_fraction": 0.15,
    "production_fraction": 0.0,
}


class DataConfig(_Section):
    """Which table to learn from and what to predict."""

    dataset: str = "flights"
    """A built-in dataset (`flights`, `credit`, `breast-cancer`) or the path of a CSV or
    Parquet file."""

    target: str | None = None
    """Column to predict. None takes the built-in dataset's target; required for files."""

    task: Literal["binary", "regression"] | None = None
    """`binary` classification or `regression`. None takes the built-in dataset's task,
    or `binary` for files."""

    positive_class: str | None = None
    """For `binary`: the target value counted as positive. None takes the built-in
    dataset's choice, or the larger value when sorted."""

    features: list[str] | None = None
    """Columns the model sees. None takes the built-in dataset's features, or every
    column but the target for files."""

    max_rows: int | None = Field(None, gt=0)
    """Keep at most this many rows (a seeded sample) for quick runs. None keeps all."""

    split: SplitConfig = SplitConfig()
    """How rows are split."""


class ClusterConfig(_Section):
    """Where and how the training job runs when `training.backend` is a cluster job."""

    namespace: str = "plumb"
    """Namespace the TrainJob / PyTorchJob / TFJob is created in."""

    image: str = PIPELINE_IMAGE
    """Container image of every training worker; it must hold plumb and its
    dependencies (the pipeline image does)."""

    runtime: str = "torch-distributed"
    """ClusterTrainingRuntime a `trainjob` refers to (Kubeflow Trainer v2)."""

    shared_path: str = "/mnt/plumb"
    """A directory the component pod and every worker pod see at the same path (mount a
    ReadWriteMany volume there, see `volume_claim`): the component stages the splits and
    the preprocessor there, the workers write checkpoints and the trained model there."""

    volume_claim: str | None = None
    """PersistentVolumeClaim mounted at `shared_path` in the worker pods. None mounts
    nothing (the image or the runtime must provide the path)."""

    cpu: str = "2"
    """CPU request and limit of each worker (Kubernetes quantity)."""

    memory: str = "4Gi"
    """Memory request and limit of each worker (Kubernetes quantity)."""

    node_selector: dict[str, str] = Field(default_factory=dict)
    """Node labels every worker pod must match, e.g. `{nvidia.com/gpu.present: "true"}`."""

    tolerations: list[dict[str, str]] = Field(default_factory=list)
    """Pod tolerations in Kubernetes form (`key`, `operator`, `value`, `effect`), e.g.
    to run on tainted GPU nodes."""

    poll_seconds: float = Field(10.0, gt=0.0)
    """How often the component reads the job's status while it waits."""

    timeout_seconds: float = Field(24 * 3600.0, gt=0.0)
    """Give up (and fail the component) when the job has not finished by then."""


class TrainingConfig(_Section):
    """The model and how it is trained."""

    framework: Literal["pytorch", "tensorflow"] = "pytorch"
    """Deep learning framework of the trained network."""

    model: Literal["mlp", "logistic"] = "mlp"
    """`mlp` (hidden layers below) or `logistic` (a single linear layer: logistic
    regression for `binary`, linear regression for `regression`)."""

    hidden_units: list[int] = Field(default_factory=lambda: [64, 32])
    """Width of each hidden layer of the MLP, input side first."""

    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    """Dropout after each hidden layer of the MLP."""

    batch_norm: bool = False
    """Batch normalisation after each hidden linear layer of the MLP (before ReLU)."""

    epochs: int = Field(20, ge=1)
    """Maximum passes over the training split."""

    batch_size: int | None = Field(None, ge=1)
    """Rows per optimisation step (per worker when training is distributed). None picks
    about 1% of the training rows, between 32 and 1,024."""

    learning_rate: float = Field(3e-3, gt=0.0)
    """Adam learning rate."""

    early_stopping_patience: int = Field(3, ge=0)
    """Stop after this many epochs without a better `early_stopping_metric`; 0
    disables."""

    early_stopping_metric: Literal["loss", "metric"] = "loss"
    """What early stopping watches on the validation split: `loss` (lower is better) or
    `metric` (ROC AUC for `binary`, R2 for `regression`; higher is better). The weights
    of the best epoch by this measure are the ones exported."""

    workers: int = Field(2, ge=1)
    """Training processes. 1 trains in the component's own process; more launches
    `torchrun` with that many local processes (backend `local`) or that many worker
    pods (cluster backends)."""

    backend: Literal["local", "trainjob", "pytorchjob", "tfjob"] = "local"
    """Where training runs: `local` (in or beside the component's process), `trainjob`
    (a Kubeflow Trainer v2 TrainJob, PyTorch), `pytorchjob` or `tfjob` (Kubeflow
    Training Operator v1 jobs, for clusters that still run the operator)."""

    gpus_per_worker: int = Field(0, ge=0)
    """CUDA devices per worker; 0 trains on the CPU (gloo). With GPUs the workers use
    NCCL and autocast, and the compiled pipeline asks for an accelerator."""

    accelerator_type: str = "nvidia.com/gpu"
    """Kubernetes resource name of the GPUs (pipeline accelerator type and job
    resource limit)."""

    gpu_fallback_to_cpu: bool = False
    """When GPUs are asked for but none is present: True trains on the CPU with a
    warning, False stops with an error."""

    mixed_precision: Literal["bf16", "fp16", "none"] = "bf16"
    """Autocast dtype on GPU (`fp16` adds a gradient scaler); ignored on the CPU."""

    checkpoint_every_epochs: int = Field(1, ge=1)
    """Write a resumable checkpoint every this many epochs; a restarted worker group
    resumes from the latest one."""

    max_restarts: int = Field(3, ge=0)
    """How often `torchrun` (and a cluster job) restarts the worker group after a
    worker dies before the run fails."""

    master_port: int | None = Field(None, ge=1024, le=65535)
    """Rendezvous port on 127.0.0.1 for local multi-worker runs. None picks a free
    one."""

    log_every_seconds: float = Field(30.0, gt=0.0)
    """Besides one line per epoch, log progress within an epoch this often."""

    threads_per_worker: int = Field(1, ge=1)
    """CPU threads each training process uses. Tabular networks are small: one thread
    per process avoids thread hand-off on every tiny operation (measured about 7x faster
    than two threads on a busy 2-core machine) and leaves cores for other workers."""

    seed: int = 42
    """Seed of weights, shuffling and dropout."""

    cluster: ClusterConfig = ClusterConfig()
    """The training job, for the cluster backends."""

    def batch_size_for(self, rows: int) -> int:
        """The batch size to use for `rows` training rows."""
        if self.batch_size is not None:
            return self.batch_size
        return min(max(rows // 100, 32), 1024)

    @model_validator(mode="after")
    def _hidden_units_positive(self) -> TrainingConfig:
        if any(width < 1 for width in self.hidden_units):
            raise ValueError(
                f"hidden_units must all be >= 1, got {self.hidden_units}; "
                "use e.g. [64, 32]"
            )
        return self

    @model_validator(mode="after")
    def _backend_fits_framework(self) -> TrainingConfig:
        allowed = {
            "pytorch": ("local", "trainjob", "pytorchjob"),
            "tensorflow": ("local", "tfjob"),
        }[self.framework]
        if self.backend not in allowed:
            raise ValueError(
                f"backend {self.backend!r} does not run framework {self.framework!r}; "
                f"use one of {list(allowed)}"
            )
        return self


class CompressionConfig(_Section):
    """How the trained model is made smaller and faster."""

    enabled: bool = True
    """Produce compressed candidates; False ships the float model."""

    quantization: Literal["dynamic", "none"] = "dynamic"
    """int8 quantization of the exported ONNX model: `dynamic` (weights int8,
    activations quantized at run time) or `none`."""

    max_metric_drop: float = Field(0.01, ge=0.0)
    """Largest drop of the validation metric (ROC AUC or R2) a compressed candidate may
    show against the float model and still be selected."""


class GateConfig(_Section):
    """The evaluation gate that decides whether a model may ship."""

    thresholds: dict[str, float] = Field(default_factory=lambda: {"roc_auc": 0.6})
    """Minimum value per metric on the test split (for error metrics such as `mse`,
    `rmse`, `mae`, `log_loss`: maximum value)."""


class EvaluationConfig(_Section):
    """How the model is judged on the held-out test split."""

    gate: GateConfig = GateConfig()
    """The pass/fail gate."""

    decision_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    """For `binary`: probability at or above which a row is labelled positive."""


class DeploymentConfig(_Section):
    """The KServe InferenceService the model ships in."""

    name: str = Field("plumb-model", pattern=r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
    """InferenceService name (a DNS-1035 label)."""

    namespace: str = "plumb"
    """Kubernetes namespace of the InferenceService."""

    storage_uri: str | None = None
    """Where the cluster finds the model directory (`s3://`, `gs://`, `pvc://`). None
    writes the local artifact path, which only a local run can use."""

    runtime: str = "plumb-onnx"
    """ServingRuntime that serves the model format."""

    deployment_mode: Literal["Standard", "Knative"] = "Standard"
    """`serving.kserve.io/deploymentMode` annotation: `Standard` (a Deployment) or
    `Knative` (serverless)."""

    min_replicas: int = Field(1, ge=0)
    """Fewest predictor pods."""

    max_replicas: int = Field(3, ge=1)
    """Most predictor pods."""

    logger_url: str | None = "http://plumb-monitor.plumb.svc.cluster.local/events"
    """Where KServe's request logger posts every request and response (the drift
    monitor). None disables the logger."""


class MonitoringConfig(_Section):
    """The data drift check of production traffic against the training data."""

    drift_share: float = Field(0.5, gt=0.0, le=1.0)
    """Share of drifted columns at or above which the dataset counts as drifted."""

    stattest_threshold: float | None = Field(None, gt=0.0, lt=1.0)
    """Per-column drift threshold passed to Evidently; None keeps Evidently's defaults
    (p-value 0.05 below 1,000 reference rows, distance 0.1 above)."""

    max_reference_rows: int = Field(50_000, ge=100)
    """Sample the reference (training) rows down to this many before the comparison."""


class PlumbConfig(_Section):
    """Everything one plumb pipeline run needs."""

    data: DataConfig = DataConfig()
    training: TrainingConfig = TrainingConfig()
    compression: CompressionConfig = CompressionConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    deployment: DeploymentConfig = DeploymentConfig()
    monitoring: MonitoringConfig = MonitoringConfig()

    def to_json(self) -> str:
        """Serialise the config for a pipeline parameter."""
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> PlumbConfig:
        """Parse a config serialised by `to_json`."""
        return _validate(json.loads(text), source="pipeline parameter")


def load_config(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> PlumbConfig:
    """Load, override and validate plumb's configuration.

    Args:
        path: YAML file. None reads `plumb.yaml` when it exists, else the defaults.
        environ: Environment to read `PLUMB_<SECTION>__<FIELD>` overrides from;
            defaults to `os.environ`.
        overrides: Dotted keys (`data.dataset`) applied last, e.g. from CLI flags.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: The file is missing or unreadable, or a value is invalid.
    """
    raw, source = _read_yaml(path)
    for key, value in _env_overrides(os.environ if environ is None else environ):
        _set_dotted(raw, key, value)
    for key, value in (overrides or {}).items():
        _set_dotted(raw, key, value)
    return _validate(raw, source=source)


def _read_yaml(path: str | Path | None) -> tuple[dict[str, Any], str]:
    if path is None:
        if not Path(DEFAULT_CONFIG_FILE).exists():
            return {}, "defaults"
        path = DEFAULT_CONFIG_FILE
    file = Path(path)
    if not file.is_file():
        raise ConfigError(
            f"config file not found: {str(path)!r}; pass an existing YAML file to "
            "--config (see examples/)"
        )
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(
            f"config file {str(path)!r} is not valid YAML: {err}"
        ) from err
    if raw is None:
        return {}, str(path)
    if not isinstance(raw, dict):
        raise ConfigError(
            f"config file {str(path)!r} must hold a mapping of sections, "
            f"got {type(raw).__name__}"
        )
    return raw, str(path)


def _env_overrides(environ: Mapping[str, str]) -> list[tuple[str, Any]]:
    # Only PLUMB_<SECTION>__<FIELD> names are config; PLUMB_LOG_LEVEL and friends are not.
    pairs = []
    for name, text in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        key = name[len(ENV_PREFIX) :].lower().replace("__", ".")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        pairs.append((key, value))
    return pairs


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = raw
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {key!r}: {part!r} is not a section")
        node = child
    node[leaf] = value


def _validate(raw: dict[str, Any], *, source: str) -> PlumbConfig:
    try:
        return PlumbConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_describe(err, source=source)) from err


def _describe(err: ValidationError, *, source: str) -> str:
    problems = []
    for item in err.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            problems.append(
                f"unknown key {where!r}; check its spelling (see examples/)"
            )
        else:
            problems.append(f"{where}: {item['msg']} (got {item.get('input')!r})")
    return f"invalid config in {source}: " + "; ".join(problems)
