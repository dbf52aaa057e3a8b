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

    epochs: int = Field(20, ge=1)
    """Maximum passes over the training split."""

    batch_size: int | None = Field(None, ge=1)
    """Rows per optimisation step (per worker when training is distributed). None picks
    about 1% of the training rows, between 32 and 1,024."""

    learning_rate: float = Field(3e-3, gt=0.0)
    """Adam learning rate."""

    early_stopping_patience: int = Field(3, ge=0)
    """Stop after this many epochs without a better validation loss; 0 disables."""

    workers: int = Field(1, ge=1)
    """Training processes (1 trains in the component's own process)."""

    threads_per_worker: int = Field(1, ge=1)
    """CPU threads each training process uses. Tabular networks are small: one thread
    per process avoids thread hand-off on every tiny operation (measured about 7x faster
    than two threads on a busy 2-core machine) and leaves cores for other workers."""

    seed: int = 42
    """Seed of weights, shuffling and dropout."""

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
