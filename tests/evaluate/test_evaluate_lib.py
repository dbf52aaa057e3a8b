"""evaluate_model on real model directories: comparisons, thresholds and bad input."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pandas as pd
import pytest
from sklearn import metrics as skm

from components.common.config import EvaluationConfig, PlumbConfig
from components.common.errors import DataError, PlumbError, SchemaError
from components.common.model_runtime import SklearnModel, load_model
from components.evaluate.explain import explain_rows
from components.evaluate.lib import (
    evaluate_model,
    fetch_model_dir,
    resolve_slice_column,
    scalar_metrics,
)
from components.evaluate.metrics import choose_threshold

# Few shuffles keep these tests fast; the importance values are not asserted here.
FAST = {"importance_repeats": 1, "explained_rows": 3}


def _config(**fields: object) -> EvaluationConfig:
    return EvaluationConfig.model_validate({**FAST, **fields})


def test_candidate_metrics_match_sklearn_on_the_test_split(
    trained_model_dir: Path, prepared_breast_cancer
) -> None:
    """The reported metrics are scikit-learn's on the model's own test predictions."""
    test = prepared_breast_cancer.splits["test"]
    evaluation = evaluate_model(trained_model_dir, test, _config())
    model = load_model(trained_model_dir)
    y_true, y_score = model.schema.labels(test), model.predict(test)
    assert evaluation.metrics["roc_auc"] == pytest.approx(
        skm.roc_auc_score(y_true, y_score), abs=1e-12
    )
    assert evaluation.metrics["decision_threshold"] == 0.5
    assert evaluation.verdict.passed is True
    assert evaluation.class_names == ("benign", "malignant")
    assert sum(map(sum, evaluation.confusion_matrix or [])) == len(test)
    assert "gate_passed" in scalar_metrics(evaluation)


def test_baseline_and_incumbent_are_compared_on_the_same_rows(
    trained_model_dir: Path, baseline_model_dir: Path, prepared_breast_cancer
) -> None:
    """Baseline (sklearn) and incumbent metrics appear; an identical incumbent passes."""
    test = prepared_breast_cancer.splits["test"]
    config = _config(
        incumbent_model_dir=str(trained_model_dir),
        gate={
            "incumbent": {"max_regression": {"roc_auc": 0.0}},
            "baseline": {"max_regression": {"roc_auc": 0.2}},
        },
    )
    evaluation = evaluate_model(
        trained_model_dir, test, config, baseline_model_dir=baseline_model_dir
    )
    assert isinstance(load_model(baseline_model_dir), SklearnModel)
    assert evaluation.comparisons["incumbent"] == evaluation.metrics
    baseline = load_model(baseline_model_dir)
    assert evaluation.comparisons["baseline"]["roc_auc"] == pytest.approx(
        skm.roc_auc_score(baseline.schema.labels(test), baseline.predict(test))
    )
    assert evaluation.verdict.passed is True
    assert {c.kind for c in evaluation.verdict.checks} == {
        "threshold",
        "incumbent",
        "baseline",
    }
    assert set(evaluation.curves["roc"]) == {"candidate", "baseline", "incumbent"}


def test_worse_candidate_fails_against_the_incumbent(
    trained_model_dir: Path, noise_model_dir: Path, prepared_breast_cancer
) -> None:
    """A model that ranks at random fails the gate against the trained incumbent."""
    config = _config(
        incumbent_model_dir=str(trained_model_dir),
        gate={"thresholds": {}, "incumbent": {"max_regression": {"roc_auc": 0.05}}},
    )
    evaluation = evaluate_model(
        noise_model_dir, prepared_breast_cancer.splits["test"], config
    )
    assert evaluation.verdict.passed is False
    assert evaluation.verdict.reasons[0].startswith("FAIL: roc_auc")
    assert "vs incumbent" in evaluation.verdict.reasons[0]


def test_incumbent_with_another_schema_is_refused(
    tmp_path: Path, trained_model_dir: Path, prepared_breast_cancer, fit_model_dir
) -> None:
    """An incumbent trained on other columns raises a SchemaError naming them."""
    train = prepared_breast_cancer.splits["train"]
    features = prepared_breast_cancer.schema.feature_names[:5]
    other = fit_model_dir(
        train,
        features=features,
        target="diagnosis",
        task="binary",
        positive_class="malignant",
        model_dir=tmp_path / "other",
    )
    config = _config(incumbent_model_dir=str(other))
    with pytest.raises(SchemaError, match="incumbent model's schema differs.*lacks"):
        evaluate_model(trained_model_dir, prepared_breast_cancer.splits["test"], config)


def test_incumbent_location_errors_and_uris(
    tmp_path: Path, trained_model_dir: Path
) -> None:
    """A missing path is an error; `file://` and fsspec URIs resolve to a model dir."""
    with pytest.raises(PlumbError, match="is not a directory.*unset it"):
        fetch_model_dir(str(tmp_path / "nowhere"), tmp_path)
    assert fetch_model_dir(f"file://{trained_model_dir}", tmp_path) == trained_model_dir

    memory = fsspec.filesystem("memory")
    for file in trained_model_dir.iterdir():
        memory.pipe(f"/incumbent-model/{file.name}", file.read_bytes())
    local = fetch_model_dir("memory://incumbent-model", tmp_path / "download")
    assert load_model(local).schema == load_model(trained_model_dir).schema
    with pytest.raises(PlumbError, match="holds no model directory"):
        fetch_model_dir("memory://no-such-model", tmp_path / "download")
    with pytest.raises(PlumbError, match="install the fsspec driver"):
        fetch_model_dir("nosuchscheme://bucket/model", tmp_path)


def test_f1_threshold_is_chosen_on_validation_rows(
    trained_model_dir: Path, prepared_breast_cancer
) -> None:
    """`threshold_strategy: f1` uses the validation split, never the test split."""
    splits = prepared_breast_cancer.splits
    evaluation = evaluate_model(
        trained_model_dir,
        splits["test"],
        _config(threshold_strategy="f1"),
        validation=splits["validation"],
    )
    model = load_model(trained_model_dir)
    expected = choose_threshold(
        model.schema.labels(splits["validation"]),
        model.predict(splits["validation"]),
        strategy="f1",
    )
    assert evaluation.metrics["decision_threshold"] == pytest.approx(expected)
    with pytest.raises(PlumbError, match="needs the validation split"):
        evaluate_model(
            trained_model_dir, splits["test"], _config(threshold_strategy="f1")
        )


def test_bad_test_sets_are_refused(
    trained_model_dir: Path, prepared_breast_cancer
) -> None:
    """One class, a missing target column and a missing slice column are clear errors."""
    test = prepared_breast_cancer.splits["test"]
    benign = test[test["diagnosis"] == "benign"]
    with pytest.raises(DataError, match="single class"):
        evaluate_model(trained_model_dir, benign, _config())
    with pytest.raises(DataError, match="no target column 'diagnosis'"):
        evaluate_model(trained_model_dir, test.drop(columns=["diagnosis"]), _config())
    with pytest.raises(DataError, match="slice_column 'carrier'"):
        evaluate_model(trained_model_dir, test, _config(), slice_column="carrier")


def test_attributions_match_the_shared_explain_function(
    trained_model_dir: Path, prepared_breast_cancer
) -> None:
    """The report's per-row attributions equal what `explain_rows` (the server) gives."""
    evaluation = evaluate_model(
        trained_model_dir, prepared_breast_cancer.splits["test"], _config()
    )
    model = load_model(trained_model_dir)
    rows = pd.DataFrame([item.features for item in evaluation.explained])
    served = explain_rows(model, rows)
    assert len(served) == 3
    for item, expected in zip(evaluation.explained, served, strict=True):
        assert item.attributions == pytest.approx(expected, abs=1e-9)
    assert list(evaluation.mean_abs_attribution) == model.transform.input_columns
    assert {i.column for i in evaluation.importance} == set(
        model.transform.input_columns
    )


def test_slices_expose_a_group_the_model_serves_badly(
    tmp_path: Path, fit_model_dir, grouped_frame
) -> None:
    """Per-carrier metrics show the carrier whose labels the model cannot predict."""
    frame = grouped_frame(3000, seed=2)
    features = ["signal", "noise_a", "noise_b", "carrier"]
    model_dir = fit_model_dir(
        frame.iloc[:2000],
        features=features,
        target="delayed",
        task="binary",
        positive_class="yes",
        model_dir=tmp_path / "model",
    )
    evaluation = evaluate_model(
        model_dir, frame.iloc[2000:], _config(), slice_column="carrier"
    )
    by_carrier = {s.value: s.metrics["roc_auc"] for s in evaluation.slices}
    assert set(by_carrier) == {"AA", "BB", "CC", "ZZ"}
    assert by_carrier["ZZ"] < 0.65
    assert min(by_carrier[c] for c in ("AA", "BB", "CC")) > 0.85
    assert evaluation.importance[0].column == "signal"


def test_flights_slices_by_carrier_by_default() -> None:
    """Flights slices by carrier unless configured; breast-cancer has no default."""
    assert resolve_slice_column(PlumbConfig()) == "carrier"
    configured = PlumbConfig.model_validate({"evaluation": {"slice_column": "origin"}})
    assert resolve_slice_column(configured) == "origin"
    cancer = PlumbConfig.model_validate({"data": {"dataset": "breast-cancer"}})
    assert resolve_slice_column(cancer) is None
    no_carrier = PlumbConfig.model_validate(
        {"data": {"features": ["month", "distance"]}}
    )
    assert resolve_slice_column(no_carrier) is None


def test_nan_predictions_from_a_model_are_refused(
    nan_model_dir: Path, prepared_breast_cancer
) -> None:
    """A model that predicts NaN fails with the model's name in the message."""
    with pytest.raises(PlumbError, match="candidate model: predictions hold"):
        evaluate_model(nan_model_dir, prepared_breast_cancer.splits["test"], _config())
