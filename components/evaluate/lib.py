"""The evaluate step: score the candidate, compare it, explain it and decide the gate.

`evaluate_model` scores the candidate model directory on the held-out test split, and
on the same rows the tree baseline from training and the incumbent (the model serving
now, `evaluation.incumbent_model_dir`) when they exist. The gate (gate.py) turns those
numbers into a verdict; importance.py and explain.py say which columns drive the
model; report.py renders it all for a person. The KFP adapter is component.py.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from components.common.config import EvaluationConfig, PlumbConfig
from components.common.errors import DataError, PlumbError, SchemaError
from components.common.model_runtime import OnnxModel, SklearnModel, load_model
from components.evaluate import metrics as m
from components.evaluate.explain import explain_matrix
from components.evaluate.gate import GateVerdict, apply_gate
from components.evaluate.importance import (
    FeatureImportance,
    permutation_importance,
    sample_rows,
)
from components.preprocess.schema import Schema

logger = logging.getLogger(__name__)

Model = OnnxModel | SklearnModel
MEAN_ATTRIBUTION_ROWS = 200
SCATTER_POINTS = 400


@dataclass
class ModelScore:
    """One model's predictions and metrics on the test rows."""

    name: str
    model_dir: str
    metrics: dict[str, float]
    decision_threshold: float | None
    y_score: np.ndarray = field(repr=False)


@dataclass
class Attribution:
    """One explained test row: its raw values, prediction and per-column attribution."""

    features: dict[str, Any]
    prediction: float
    attributions: dict[str, float]


@dataclass
class Evaluation:
    """Everything the evaluate step found, for the verdict, KFP and the report."""

    task: str
    rows: int
    metrics: dict[str, float]
    """The candidate's test metrics (plus `decision_threshold` for `binary`)."""
    verdict: GateVerdict
    threshold_strategy: str
    class_names: tuple[str, str] = ("0", "1")
    comparisons: dict[str, dict[str, float]] = field(default_factory=dict)
    """`baseline` and/or `incumbent` -> their metrics on the same rows."""
    comparison_dirs: dict[str, str] = field(default_factory=dict)
    confusion_matrix: list[list[int]] | None = None
    curves: dict[str, dict[str, m.Curve]] = field(default_factory=dict)
    """`roc`, `pr`, `calibration` -> model name -> curve (`binary` only)."""
    scatter: tuple[list[float], list[float]] | None = None
    """(actual, predicted) for a sample of rows (`regression` only)."""
    importance: list[FeatureImportance] = field(default_factory=list)
    mean_abs_attribution: dict[str, float] = field(default_factory=dict)
    explained: list[Attribution] = field(default_factory=list)
    slice_column: str | None = None
    slices: list[m.SliceResult] = field(default_factory=list)

    @property
    def decision_threshold(self) -> float | None:
        return self.metrics.get("decision_threshold")

    def verdict_dict(self) -> dict[str, Any]:
        """The verdict artifact: `passed`, `reasons`, `metrics` and the evidence."""
        return {
            **self.verdict.to_dict(),
            "metrics": self.metrics,
            "task": self.task,
            "rows": self.rows,
            "threshold_strategy": self.threshold_strategy,
            "comparisons": self.comparisons,
            "feature_importance": {
                item.column: item.importance for item in self.importance
            },
            "slice_column": self.slice_column,
            "slices": [_finite(asdict(item)) for item in self.slices],
        }


def evaluate_model(
    model_dir: str | Path,
    test: pd.DataFrame,
    config: EvaluationConfig,
    *,
    validation: pd.DataFrame | None = None,
    baseline_model_dir: str | Path | None = None,
    slice_column: str | None = None,
) -> Evaluation:
    """Score a model directory on raw test rows, compare it and apply the gate.

    Args:
        model_dir: The candidate model directory.
        test: Raw test rows with the target column.
        config: The evaluation section of the config.
        validation: Raw validation rows; needed to choose the decision threshold when
            `config.threshold_strategy` is not `fixed`.
        baseline_model_dir: The tree baseline trained with the candidate, if any.
        slice_column: Column to break metrics down by; None skips slices.

    Raises:
        PlumbError: Bad input: a single-class test split, NaN predictions, an
            incumbent or baseline with another schema, an unknown gate metric, a
            missing slice column or incumbent.
    """
    started = time.perf_counter()
    candidate = load_model(model_dir)
    schema = candidate.schema
    y_true = _labels(schema, test, split="test")
    y_valid = None if validation is None else _labels(schema, validation, "validation")
    if slice_column is not None and slice_column not in test.columns:
        raise DataError(
            f"evaluation.slice_column {slice_column!r} is not a column of the test "
            f"split; its columns are {list(test.columns)}"
        )

    # Score the candidate, then the reference models on the same rows.
    splits = _Splits(test, y_true, validation, y_valid)
    score = _score("candidate", candidate, splits, config=config, location=model_dir)
    references = _score_references(
        schema, splits, config=config, baseline_model_dir=baseline_model_dir
    )

    # Decide.
    verdict = apply_gate(
        score.metrics,
        config.gate,
        task=schema.task,
        incumbent_metrics=_metrics_of(references.get("incumbent")),
        baseline_metrics=_metrics_of(references.get("baseline")),
    )
    evaluation = Evaluation(
        task=schema.task,
        rows=len(test),
        metrics=score.metrics,
        verdict=verdict,
        threshold_strategy=config.threshold_strategy,
        class_names=_class_names(schema),
        comparisons={name: ref.metrics for name, ref in references.items()},
        comparison_dirs={name: ref.model_dir for name, ref in references.items()},
    )

    # Describe: curves, slices, importance and attributions.
    _add_curves(evaluation, y_true, [score, *references.values()])
    if slice_column is not None:
        evaluation.slice_column = slice_column
        evaluation.slices = m.slice_metrics(
            m.slice_groups(test[slice_column], max_slices=config.max_slices),
            y_true,
            score.y_score,
            task=schema.task,
            decision_threshold=score.decision_threshold or 0.5,
        )
    _add_explanations(evaluation, candidate, test, y_true, config=config)
    logger.info(
        "Evaluated on %d test rows in %.1f s: %s; gate %s",
        len(test),
        time.perf_counter() - started,
        ", ".join(f"{k} {v:.4f}" for k, v in score.metrics.items()),
        "passed" if verdict.passed else "FAILED",
    )
    return evaluation


def resolve_slice_column(config: PlumbConfig) -> str | None:
    """The configured slice column, else the built-in dataset's (if it is a feature)."""
    from components.preprocess.datasets import BUILTIN_DATASETS

    if config.evaluation.slice_column is not None:
        return config.evaluation.slice_column
    spec = BUILTIN_DATASETS.get(config.data.dataset)
    if spec is None or spec.slice_column is None:
        return None
    features = config.data.features
    if features is not None and spec.slice_column not in features:
        return None
    return spec.slice_column


def fetch_model_dir(location: str, download_dir: str | Path) -> Path:
    """Return a local model directory for a path or a URI, downloading if needed.

    Local paths and `file://` URIs are used in place; other schemes go through
    fsspec (`s3://` needs s3fs, `gs://` gcsfs in the image).

    Raises:
        PlumbError: Nothing is at the location, or its scheme cannot be read.
    """
    parsed = urlparse(location)
    if parsed.scheme in ("", "file"):
        path = Path(parsed.path if parsed.scheme == "file" else location)
        if not path.is_dir():
            raise PlumbError(
                f"evaluation.incumbent_model_dir {location!r} is not a directory; "
                "point it at the model serving now, or unset it on the first run"
            )
        return path
    import fsspec

    try:
        filesystem, remote = fsspec.core.url_to_fs(location)
    except (ImportError, ValueError) as err:
        raise PlumbError(
            f"cannot read evaluation.incumbent_model_dir {location!r}: {err}; install "
            "the fsspec driver for its scheme (s3fs, gcsfs) or mount it as a path"
        ) from err
    if not filesystem.isdir(remote):
        raise PlumbError(
            f"evaluation.incumbent_model_dir {location!r} holds no model directory; "
            "point it at the model serving now, or unset it on the first run"
        )
    target = Path(download_dir) / "incumbent"
    target.mkdir(parents=True, exist_ok=True)
    for remote_file in filesystem.find(remote):
        relative = remote_file[len(remote.rstrip("/")) + 1 :]
        local = target / relative
        local.parent.mkdir(parents=True, exist_ok=True)
        filesystem.get_file(remote_file, str(local))
    logger.info("Downloaded incumbent %s to %s", location, target)
    return target


def check_same_schema(candidate: Schema, other: Schema, *, name: str) -> None:
    """Refuse to compare models that predict different things or read other columns.

    Category lists may differ (a retrain sees new airports); the target, task,
    positive class and the feature columns with their kinds must match.

    Raises:
        SchemaError: The schemas differ; the message lists how.
    """
    problems = []
    for attribute in ("task", "target", "positive_class"):
        mine, theirs = getattr(candidate, attribute), getattr(other, attribute)
        if mine != theirs:
            problems.append(f"{attribute} {theirs!r} (candidate: {mine!r})")
    mine_kinds = {c.name: c.kind for c in candidate.columns}
    their_kinds = {c.name: c.kind for c in other.columns}
    missing = sorted(set(mine_kinds) - set(their_kinds))
    extra = sorted(set(their_kinds) - set(mine_kinds))
    if missing:
        problems.append(f"lacks columns {missing}")
    if extra:
        problems.append(f"reads extra columns {extra}")
    changed = sorted(
        name
        for name in set(mine_kinds) & set(their_kinds)
        if mine_kinds[name] != their_kinds[name]
    )
    if changed:
        problems.append(
            "treats "
            + ", ".join(
                f"{c!r} as {their_kinds[c]} (candidate: {mine_kinds[c]})"
                for c in changed
            )
        )
    if problems:
        raise SchemaError(
            f"the {name} model's schema differs from the candidate's: it has "
            + "; ".join(problems)
            + f". Comparing them on one test split is meaningless; point at a {name} "
            "trained on the same features and target"
            + (
                ", or unset evaluation.incumbent_model_dir"
                if name == "incumbent"
                else ""
            )
        )


def _labels(schema: Schema, frame: pd.DataFrame, split: str) -> np.ndarray:
    if schema.target not in frame.columns:
        raise DataError(
            f"the {split} split has no target column {schema.target!r}; its columns "
            f"are {list(frame.columns)}"
        )
    if frame[schema.target].isna().any():
        raise DataError(
            f"the {split} split has {int(frame[schema.target].isna().sum())} rows "
            f"without a target {schema.target!r}; drop them before evaluating"
        )
    return schema.labels(frame).astype(np.float64)


@dataclass
class _Splits:
    test: pd.DataFrame
    y_true: np.ndarray
    validation: pd.DataFrame | None
    y_valid: np.ndarray | None


def _score_references(
    schema: Schema,
    splits: _Splits,
    *,
    config: EvaluationConfig,
    baseline_model_dir: str | Path | None,
) -> dict[str, ModelScore]:
    references: dict[str, ModelScore] = {}
    with tempfile.TemporaryDirectory() as download_dir:
        sources: dict[str, tuple[str | Path, Path]] = {}
        if baseline_model_dir is not None:
            sources["baseline"] = (baseline_model_dir, Path(baseline_model_dir))
        incumbent = config.incumbent_model_dir
        if incumbent is not None:
            sources["incumbent"] = (incumbent, fetch_model_dir(incumbent, download_dir))
        for name, (location, local_dir) in sources.items():
            reference = load_model(local_dir)
            check_same_schema(schema, reference.schema, name=name)
            references[name] = _score(
                name, reference, splits, config=config, location=location
            )
    return references


def _score(
    name: str,
    model: Model,
    splits: _Splits,
    *,
    config: EvaluationConfig,
    location: str | Path,
) -> ModelScore:
    y_score = model.predict(splits.test)
    threshold = None
    if model.schema.task == "binary":
        use_validation = (
            config.threshold_strategy != "fixed" and splits.validation is not None
        )
        threshold = m.choose_threshold(
            splits.y_valid,
            model.predict(splits.validation) if use_validation else None,
            strategy=config.threshold_strategy,
            fixed=config.decision_threshold,
        )
    try:
        metrics = m.compute_metrics(
            splits.y_true,
            y_score,
            task=model.schema.task,
            decision_threshold=threshold or 0.5,
        )
    except PlumbError as err:
        raise type(err)(f"{name} model: {err}") from err
    if threshold is not None:
        metrics["decision_threshold"] = threshold
    return ModelScore(name, str(location), metrics, threshold, y_score)


def _metrics_of(score: ModelScore | None) -> dict[str, float] | None:
    return None if score is None else score.metrics


def _class_names(schema: Schema) -> tuple[str, str]:
    if schema.task != "binary" or schema.positive_class is None:
        return ("0", "1")
    others = [c for c in schema.classes if c != schema.positive_class]
    negative = others[0] if len(others) == 1 else f"not {schema.positive_class}"
    return (negative, schema.positive_class)


def _add_curves(
    evaluation: Evaluation, y_true: np.ndarray, scores: list[ModelScore]
) -> None:
    candidate = scores[0]
    if evaluation.task == "regression":
        rng = np.random.default_rng(0)
        count = min(SCATTER_POINTS, len(y_true))
        index = np.sort(rng.choice(len(y_true), size=count, replace=False))
        evaluation.scatter = (
            y_true[index].tolist(),
            candidate.y_score[index].tolist(),
        )
        return
    evaluation.confusion_matrix = m.confusion_matrix(
        y_true,
        candidate.y_score,
        decision_threshold=candidate.decision_threshold or 0.5,
    )
    evaluation.curves = {
        "roc": {s.name: m.roc_curve(y_true, s.y_score) for s in scores},
        "pr": {s.name: m.pr_curve(y_true, s.y_score) for s in scores},
        "calibration": {s.name: m.reliability_curve(y_true, s.y_score) for s in scores},
    }


def _add_explanations(
    evaluation: Evaluation,
    model: Model,
    test: pd.DataFrame,
    y_true: np.ndarray,
    *,
    config: EvaluationConfig,
) -> None:
    columns = model.transform.input_columns
    sample, y_sample = sample_rows(
        test,
        y_true,
        task=evaluation.task,
        max_rows=config.importance_max_rows,
        seed=config.seed,
    )
    evaluation.importance = permutation_importance(
        model.predict,
        sample,
        y_sample,
        task=evaluation.task,
        columns=columns,
        repeats=config.importance_repeats,
        seed=config.seed,
    )

    # Per-row attributions: the computation the model server's `:explain` runs.
    rows = sample.sample(
        n=min(MEAN_ATTRIBUTION_ROWS, len(sample)), random_state=config.seed
    ).reset_index(drop=True)
    attributions = explain_matrix(model, rows)
    evaluation.mean_abs_attribution = dict(
        zip(columns, np.abs(attributions).mean(axis=0).tolist(), strict=True)
    )
    predictions = model.predict(rows)
    evaluation.explained = [
        Attribution(
            features={c: _plain(rows.at[i, c]) for c in columns},
            prediction=float(predictions[i]),
            attributions=dict(zip(columns, map(float, attributions[i]), strict=True)),
        )
        for i in range(min(config.explained_rows, len(rows)))
    ]


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return None if pd.isna(value) else value


def _finite(data: dict[str, Any]) -> dict[str, Any]:
    # JSON has no NaN; a slice metric that cannot be computed is written as null.
    metrics = {
        key: (None if isinstance(v, float) and not np.isfinite(v) else v)
        for key, v in data["metrics"].items()
    }
    return {**data, "metrics": metrics}


def scalar_metrics(evaluation: Evaluation) -> dict[str, float]:
    """Metrics for KFP's Metrics artifact: the candidate's, then `<reference>_<name>`.

    NaN values are left out: KFP's metadata store cannot hold them, and the verdict
    artifact records them.
    """
    values = dict(evaluation.metrics)
    for name, metrics in evaluation.comparisons.items():
        values.update({f"{name}_{key}": value for key, value in metrics.items()})
    values["gate_passed"] = float(evaluation.verdict.passed)
    return {key: value for key, value in values.items() if np.isfinite(value)}


def write_outputs(
    evaluation: Evaluation,
    *,
    verdict_path: str | Path,
    report_path: str | Path,
    title: str,
) -> None:
    """Write the verdict JSON and the HTML report."""
    from components.common.artifacts import write_json
    from components.evaluate.report import render_report

    write_json(verdict_path, evaluation.verdict_dict())
    Path(report_path).write_text(
        render_report(evaluation, title=title), encoding="utf-8"
    )
