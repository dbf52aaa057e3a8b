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
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

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
    about 1% of the training rows (about 100 steps per epoch), between 32 and 4,096:
    each step of a distributed run waits for one gradient all-reduce, so on large
    datasets bigger steps keep that wait small next to the compute."""

    average_every_steps: int = Field(1, ge=1)
    """How the workers of a distributed PyTorch run stay in step. 1: DistributedDataParallel
    all-reduces the gradients on every step, so every worker takes the same step. N > 1:
    local SGD: each worker steps on its own shard's gradients and the workers average
    their weights every N steps and after an epoch's last step (torch's model
    averaging). On CPUs a small tabular network's per-step all-reduce costs about as
    much as the step itself: on flights with 2 workers on 2 cores, N = 16 trained 1.6-1.8x
    as many rows/s as one worker in three benchmark runs, N = 1 0.98-1.12x, to the same
    best validation loss (see docs/training.md). Ignored with one worker and by TensorFlow."""

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
        return min(max(rows // 100, 32), 4096)

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


CompressionMethod = Literal[
    "pruning", "structured_pruning", "quantization", "distillation"
]
QuantizationMode = Literal["dynamic", "static", "qat"]
COMPRESSION_METHODS: tuple[str, ...] = get_args(CompressionMethod)
QUANTIZATION_MODES: tuple[str, ...] = get_args(QuantizationMode)
MIN_CALIBRATION_ROWS = 16


def _default_quantization() -> list[QuantizationMode]:
    return ["dynamic", "static"]


class DistillationConfig(_Section):
    """The smaller student network trained on the teacher's outputs."""

    hidden_units: list[int] = Field(default_factory=lambda: [16])
    """Width of each hidden layer of the student MLP, input side first."""

    temperature: float = Field(2.0, gt=0.0)
    """Softens the teacher's logits (binary only): the student matches
    `sigmoid(teacher_logit / temperature)`. 1 matches the probabilities as they are."""

    alpha: float = Field(0.7, ge=0.0, le=1.0)
    """Weight of the teacher's soft targets in the student's loss; the labels get
    `1 - alpha`. 0 trains on the labels alone, 1 on the teacher alone."""

    epochs: int = Field(10, ge=1)
    """Passes over the training split for the student."""

    learning_rate: float = Field(3e-3, gt=0.0)
    """Adam learning rate of the student."""

    @model_validator(mode="after")
    def _hidden_units_positive(self) -> DistillationConfig:
        if any(width < 1 for width in self.hidden_units):
            raise ValueError(
                f"distillation.hidden_units must all be >= 1, got {self.hidden_units}; "
                "use e.g. [16]"
            )
        return self


class CompressionConfig(_Section):
    """How the trained model is made smaller and faster."""

    enabled: bool = True
    """Produce compressed candidates; False ships the float model."""

    methods: (
        list[Literal["pruning", "structured_pruning", "quantization", "distillation"]]
        | None
    ) = None
    """Methods to try: `pruning` (global magnitude, unstructured), `structured_pruning`
    (removes whole hidden neurons), `quantization` (int8, modes below), `distillation`
    (a smaller student MLP). None tries every method the model supports (a `logistic`
    model: `pruning` and `quantization`); a method listed here that the model does not
    support is an error."""

    sparsity: float = Field(0.5, ge=0.0, lt=1.0)
    """Share of the weights (biases excluded) that unstructured pruning sets to zero,
    ranked by magnitude across all layers together."""

    structured_ratio: float = Field(0.5, ge=0.0, lt=1.0)
    """Share of the neurons of every hidden layer that structured pruning removes
    (at least one neuron per layer stays)."""

    structured_norm: Literal["l1", "l2"] = "l2"
    """Norm of a neuron's incoming weights that ranks it for structured pruning; the
    weakest neurons go."""

    fine_tune_epochs: int = Field(3, ge=0)
    """Passes over the training split after pruning, with the pruned weights held at
    zero. 0 skips fine-tuning."""

    fine_tune_learning_rate: float = Field(1e-3, gt=0.0)
    """Adam learning rate of the fine-tuning after pruning."""

    quantization: list[QuantizationMode] = Field(default_factory=_default_quantization)
    """int8 quantization modes: `dynamic` (weights int8, activations quantized at run
    time), `static` (weights and activations int8, activation ranges calibrated on
    training rows), `qat` (quantization-aware training; TensorFlow models only). A
    single string or `none` is accepted too (`none` is an empty list)."""

    calibration_rows: int = Field(512, ge=MIN_CALIBRATION_ROWS)
    """Training rows (a seeded sample) that calibrate static quantization. The training
    split must hold at least 16 rows; fewer than asked uses them all, with a warning."""

    quantize_candidates: bool = True
    """Also quantize the pruned and distilled candidates (e.g. structured pruning +
    int8), not only the float model."""

    distillation: DistillationConfig = DistillationConfig()
    """The student network of `distillation`."""

    objective: Literal["size", "latency"] = "size"
    """What the selection minimises among candidates within the metric budget: `size`
    (bytes of the served model file) or `latency` (median single-row latency)."""

    max_metric_drop: float = Field(0.01, ge=0.0)
    """Largest drop of the validation metric (ROC AUC or R2) a compressed candidate may
    show against the float model and still be selected."""

    batch_rows: int = Field(1000, ge=1)
    """Rows per batch in the batch-latency measurement."""

    latency_repeats: int = Field(30, ge=1)
    """Timed runs per latency measurement; the median is reported."""

    seed: int = 0
    """Seed of calibration sampling, fine-tuning and the student's initial weights."""

    @field_validator("quantization", mode="before")
    @classmethod
    def _quantization_as_list(cls, value: Any) -> Any:
        # Older configs wrote a single mode (`dynamic` or `none`).
        if isinstance(value, str):
            return [] if value == "none" else [value]
        return value

    @model_validator(mode="after")
    def _no_duplicates(self) -> CompressionConfig:
        for name, values in (
            ("methods", self.methods or []),
            ("quantization", self.quantization),
        ):
            if len(set(values)) != len(values):
                raise ValueError(
                    f"compression.{name} lists a value twice: {values}; list each once"
                )
        return self


BINARY_METRICS = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
)
"""Metrics evaluation computes for `binary` models (and a gate may name)."""

REGRESSION_METRICS = ("mse", "rmse", "mae", "r2")
"""Metrics evaluation computes for `regression` models (and a gate may name)."""


def _check_metric_names(limits: dict[str, float], *, field_name: str) -> None:
    known = BINARY_METRICS + REGRESSION_METRICS
    unknown = sorted(name for name in limits if name not in known)
    if unknown:
        raise ValueError(
            f"{field_name} names unknown metric {unknown[0]!r}; "
            f"choose from {list(known)}"
        )
    negative = sorted(name for name, value in limits.items() if not value >= 0)
    if negative and field_name != "thresholds":
        raise ValueError(
            f"{field_name} for {negative[0]!r} is {limits[negative[0]]!r}; "
            "an allowed regression is a number >= 0"
        )


class ComparisonLimits(_Section):
    """How much worse than a reference model (incumbent or baseline) the candidate
    may be. A regression is measured in the direction that is worse for the metric
    (a drop of `roc_auc`, a rise of `rmse`)."""

    max_regression: dict[str, float] = Field(default_factory=dict)
    """Largest allowed absolute regression per metric, in the metric's units, e.g.
    `{roc_auc: 0.01}`. Empty checks nothing."""

    max_relative_regression: dict[str, float] = Field(default_factory=dict)
    """Largest allowed regression per metric as a fraction of the reference model's
    value, e.g. `{rmse: 0.05}` allows 5 % more error. Empty checks nothing."""

    @model_validator(mode="after")
    def _known_metrics(self) -> ComparisonLimits:
        _check_metric_names(self.max_regression, field_name="max_regression")
        _check_metric_names(
            self.max_relative_regression, field_name="max_relative_regression"
        )
        return self


class GateConfig(_Section):
    """The evaluation gate that decides whether a model may ship."""

    thresholds: dict[str, float] | None = None
    """Minimum value per metric on the test split (for error metrics such as `mse`,
    `rmse`, `mae`, `log_loss`, `brier`: maximum value). None applies `roc_auc >= 0.6`
    to `binary` models and `r2 >= 0.0` to `regression` models; `{}` checks nothing."""

    incumbent: ComparisonLimits = ComparisonLimits()
    """Allowed regression against the incumbent (`evaluation.incumbent_model_dir`);
    checked only when an incumbent is configured."""

    baseline: ComparisonLimits = ComparisonLimits()
    """Allowed regression against the tree baseline trained next to the candidate;
    checked only when the run produced a baseline. Empty by default: the baseline is
    shown for reference."""

    require_incumbent: bool = False
    """Fail the gate when no incumbent is configured, so a model can never replace
    production unchecked. False lets the first run ship."""

    @model_validator(mode="after")
    def _known_metrics(self) -> GateConfig:
        if self.thresholds is not None:
            _check_metric_names(self.thresholds, field_name="thresholds")
        return self


class EvaluationConfig(_Section):
    """How the model is judged on the held-out test split."""

    gate: GateConfig = GateConfig()
    """The pass/fail gate."""

    threshold_strategy: Literal["fixed", "f1", "youden"] = "fixed"
    """For `binary`: how the decision threshold is chosen. `fixed` uses
    `decision_threshold`; `f1` picks the threshold with the best F1 on the validation
    split; `youden` the one with the largest TPR - FPR (Youden's J) on the validation
    split. The test split is never used to choose it."""

    decision_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    """For `binary` with `threshold_strategy: fixed`: probability at or above which a
    row is labelled positive."""

    incumbent_model_dir: str | None = None
    """The model serving in the target environment, compared with the candidate on
    the same test rows: a local path or an fsspec URI (`file://`, or `s3://`/`gs://`
    where s3fs/gcsfs is installed). None (the first run) skips the comparison. A path
    that does not exist is an error, not a skipped check."""

    slice_column: str | None = None
    """Column whose categories get their own metrics in the report, so a group the
    model serves badly is visible. None takes the built-in dataset's choice (`carrier`
    for flights) or skips slices. Numeric columns are cut into quantile bins."""

    max_slices: int = Field(20, ge=2)
    """Most slices shown; the rarest categories beyond this are pooled as `other`."""

    importance_repeats: int = Field(5, ge=1)
    """Shuffles per column for permutation importance."""

    importance_max_rows: int = Field(5_000, ge=50)
    """Test rows (a seeded sample) used for permutation importance."""

    explained_rows: int = Field(10, ge=0)
    """Test rows whose per-prediction attributions the report lists (0: none)."""

    seed: int = 0
    """Seed of the importance shuffles and row samples."""


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

    model_format: Literal["auto", "onnx", "tflite"] = "auto"
    """`modelFormat.name` of the InferenceService; KServe picks the ServingRuntime that
    declares it (`plumb-onnx` declares both). `auto` takes the format the model
    directory's `metadata.json` records (onnx for PyTorch, tflite for TensorFlow); a
    fixed value must match that format."""

    scale_target: int | None = Field(None, ge=1)
    """Autoscaling target per replica, in the unit of `scale_metric` (e.g. 10 concurrent
    requests). None leaves KServe's default."""

    scale_metric: Literal["concurrency", "rps", "cpu", "memory"] | None = None
    """Metric `scale_target` is measured in. `concurrency`/`rps` need Knative or KEDA;
    `cpu`/`memory` work with the HPA in Standard mode. None leaves KServe's default."""

    cpu_request: str = "500m"
    """CPU the predictor container requests (a Kubernetes quantity)."""

    memory_request: str = "512Mi"
    """Memory the predictor container requests."""

    cpu_limit: str | None = "2"
    """CPU limit of the predictor container; None sets no limit."""

    memory_limit: str | None = "2Gi"
    """Memory limit of the predictor container; None sets no limit."""

    gpu_count: int = Field(0, ge=0)
    """NVIDIA GPUs per predictor pod (`nvidia.com/gpu` request and limit); 0 runs on
    the CPU."""

    canary_traffic_percent: int | None = Field(None, ge=0, le=100)
    """Share of traffic the new model gets while the previous one keeps the rest. None
    sends all traffic to the new model. Knative: `canaryTrafficPercent` on the
    predictor (KServe keeps the last ready revision). Standard: a `spec.canary` entry
    for the new model next to the stable predictor at `stable_storage_uri`."""

    canary_name: str = Field("canary", pattern=r"^[a-z]([-a-z0-9]{0,30}[a-z0-9])?$")
    """Standard mode only: name of the canary predictor; its Deployment is called
    `<name>-<canary_name>-predictor`."""

    stable_storage_uri: str | None = None
    """Standard mode with a canary: the model directory that keeps
    `100 - canary_traffic_percent` of the traffic. Required there, unused otherwise."""

    cluster: Literal["none", "kubeconfig", "in-cluster"] = "none"
    """Where the deploy step applies the InferenceService. `none` only writes the YAML;
    `kubeconfig` uses `kubeconfig`/`kube_context` (or `~/.kube/config`); `in-cluster`
    uses the pod's service account."""

    kubeconfig: str | None = None
    """Path of the kubeconfig file when `cluster` is `kubeconfig`; None reads
    `$KUBECONFIG` or `~/.kube/config`."""

    kube_context: str | None = None
    """kubeconfig context to use; None uses the current context."""

    ready_timeout_seconds: float = Field(600.0, gt=0.0)
    """How long the deploy step waits for the InferenceService to become Ready before
    it fails with the controller's last condition message."""

    @model_validator(mode="after")
    def _canary_fits_mode(self) -> DeploymentConfig:
        if (
            self.canary_traffic_percent is not None
            and self.deployment_mode == "Standard"
            and not self.stable_storage_uri
        ):
            raise ValueError(
                f"canary_traffic_percent={self.canary_traffic_percent} in Standard mode "
                "needs stable_storage_uri (the model that keeps the rest of the "
                "traffic); set it, or use deployment_mode: Knative"
            )
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) is below min_replicas "
                f"({self.min_replicas}); raise max_replicas"
            )
        return self


class MonitoringConfig(_Section):
    """The data drift check of production traffic against the training data.

    The pipeline's monitor step, `plumb drift` and the drift monitor service
    (`plumb monitor`) all read this section.
    """

    drift_share: float = Field(0.5, gt=0.0, le=1.0)
    """Share of drifted columns at or above which the dataset counts as drifted."""

    stattest_threshold: float | None = Field(None, gt=0.0, lt=1.0)
    """Per-column drift threshold passed to Evidently; None keeps Evidently's defaults
    (p-value 0.05 at 1,000 reference rows or fewer, distance 0.1 above)."""

    numerical_stattest: str | None = None
    """Evidently stattest for numeric columns (e.g. `wasserstein`, `ks`, `psi`,
    `jensenshannon`). None keeps Evidently's choice: at 1,000 reference rows or fewer
    K-S (chi-square or z-test for 5 distinct values or fewer), above that the normed
    Wasserstein distance (Jensen-Shannon for 5 distinct values or fewer)."""

    categorical_stattest: str | None = None
    """Evidently stattest for categorical columns (e.g. `jensenshannon`, `chisquare`,
    `psi`). None keeps Evidently's choice: chi-square (z-test for two values) at 1,000
    reference rows or fewer, Jensen-Shannon distance above."""

    max_reference_rows: int = Field(50_000, ge=100)
    """Sample the reference (training) rows down to this many before the comparison."""

    window_rows: int = Field(1000, ge=10)
    """The monitor closes a window and reports on it once it holds this many rows."""

    window_seconds: float = Field(3600.0, gt=0.0)
    """The monitor also closes a window this many seconds after its first row, if it
    holds at least `min_window_rows` rows by then."""

    min_window_rows: int = Field(100, ge=1)
    """Fewest rows a window closed by time may hold; a quieter window stays open until
    it has them, so no report is drawn from a handful of rows."""

    pairing_timeout_seconds: float = Field(30.0, gt=0.0)
    """How long a request event waits for its response (and a response for its request)
    before it counts as unpaired. An unpaired request still adds its rows, without a
    prediction; an unpaired response is dropped."""

    max_pending_events: int = Field(10_000, ge=1)
    """Most events waiting for their partner; past this the oldest count as unpaired."""

    max_event_bytes: int = Field(10_000_000, ge=1024)
    """Largest accepted event body; bigger bodies are rejected with HTTP 413."""

    reports_kept: int = Field(20, ge=1)
    """Newest window reports (HTML and JSON) kept on disk per InferenceService and
    endpoint; older ones are deleted."""

    html_reports: bool = True
    """Render Evidently's HTML report for each window. False writes the JSON report only
    and computes drift with the same Evidently stattests without the Report's plots,
    several times faster on large windows."""

    evidently_workspace: str | None = None
    """Evidently UI workspace each window's snapshot is added to: a local folder or an
    `http(s)://` URL of an Evidently UI service. None pushes nothing."""

    evidently_project_id: str | None = None
    """Project of `evidently_workspace` that receives the snapshots. None creates (once)
    a project named `plumb-monitor`."""

    max_feedback_labels: int = Field(100_000, ge=1)
    """Most labels (sent to `/feedback`) held for requests not yet in a closed window;
    past this the oldest are forgotten."""

    retrain_after_windows: int = Field(3, ge=1)
    """Consecutive drifted windows of one InferenceService endpoint that trigger
    retraining."""

    retrain_cooldown_seconds: float = Field(86_400.0, ge=0.0)
    """Seconds after a trigger during which the same endpoint does not trigger again."""

    retrain_action: Literal["none", "webhook", "kfp"] = "none"
    """What a trigger does: `webhook` POSTs a JSON summary to `retrain_webhook_url`,
    `kfp` submits the training pipeline through `kfp.Client`, `none` only logs and counts
    it."""

    retrain_dry_run: bool = False
    """Log what the trigger would do instead of doing it."""

    retrain_webhook_url: str | None = None
    """URL the `webhook` action POSTs to."""

    kfp_host: str | None = None
    """Kubeflow Pipelines API endpoint for the `kfp` action, e.g.
    `http://ml-pipeline.kubeflow.svc.cluster.local:8888`."""

    kfp_pipeline_name: str = "plumb-training"
    """Name of the uploaded pipeline the `kfp` action runs (its latest version)."""

    kfp_experiment: str = "plumb-retraining"
    """KFP experiment that holds the retraining runs."""

    @model_validator(mode="after")
    def _retrain_action_has_target(self) -> MonitoringConfig:
        if self.retrain_action == "webhook" and not self.retrain_webhook_url:
            raise ValueError(
                "retrain_action is 'webhook' but retrain_webhook_url is not set; "
                "set it to the URL to POST to"
            )
        if self.retrain_action == "kfp" and not self.kfp_host:
            raise ValueError(
                "retrain_action is 'kfp' but kfp_host is not set; set it to the "
                "Kubeflow Pipelines endpoint"
            )
        if self.min_window_rows > self.window_rows:
            raise ValueError(
                f"min_window_rows ({self.min_window_rows}) exceeds window_rows "
                f"({self.window_rows}); keep it at or below"
            )
        return self


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
    env_pairs = _env_overrides(os.environ if environ is None else environ)
    for key, value in env_pairs:
        _set_dotted(raw, key, value)
    for key, value in (overrides or {}).items():
        _set_dotted(raw, key, value)
    if env_pairs or overrides:
        changed = [f"PLUMB_{k.upper().replace('.', '__')}" for k, _ in env_pairs]
        changed += [f"--set {k}" for k in overrides or {}]
        source = f"{source} with overrides ({', '.join(changed)})"
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
            f"config file {str(path)!r} is not valid YAML: {_yaml_problem(err)}"
        ) from err
    except RecursionError as err:
        # PyYAML's composer recurses once per nesting level.
        raise ConfigError(
            f"config file {str(path)!r} nests too deeply to be a plumb config; "
            "a config has sections of fields, a few levels deep"
        ) from err
    if raw is None:
        return {}, str(path)
    if not isinstance(raw, dict):
        raise ConfigError(
            f"config file {str(path)!r} must hold a mapping of sections, "
            f"got {type(raw).__name__}"
        )
    return raw, str(path)


def _yaml_problem(err: Exception) -> str:
    """One line for a YAML error: where it is and what is wrong."""
    if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
        mark = err.problem_mark
        return f"line {mark.line + 1}, column {mark.column + 1}: {err.problem}"
    return " ".join(str(err).split())


def _env_overrides(environ: Mapping[str, str]) -> list[tuple[str, Any]]:
    # Only PLUMB_<SECTION>__<FIELD> names are config; PLUMB_LOG_LEVEL and friends are not.
    pairs = []
    for name, text in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        key = name[len(ENV_PREFIX) :].lower().replace("__", ".")
        pairs.append((key, parse_override_value(text, where=name)))
    return pairs


def parse_override_value(text: str, *, where: str) -> Any:
    """Read the value of a `--set KEY=VALUE` or `PLUMB_*` override as YAML.

    Text that is not valid YAML stays text, so the field's own check names it.

    Raises:
        ConfigError: The value nests too deeply for the YAML parser.
    """
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    except RecursionError as err:
        raise ConfigError(
            f"{where} nests too deeply ({len(text)} characters); pass a plain value"
        ) from err


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
