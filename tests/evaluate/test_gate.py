"""The gate passes and fails on crafted metrics; a broken evaluation never passes."""

from __future__ import annotations

import json
import math

import pytest

from components.common.config import GateConfig, load_config
from components.common.errors import ConfigError, PlumbError
from components.evaluate.gate import apply_gate

CANDIDATE = {"roc_auc": 0.80, "f1": 0.70, "log_loss": 0.45, "accuracy": 0.75}


def _gate(**fields: object) -> GateConfig:
    return GateConfig.model_validate(fields)


def test_thresholds_pass_and_fail_in_the_metric_direction() -> None:
    """A higher-is-better metric needs >= its threshold; an error metric needs <=."""
    passing = apply_gate(
        CANDIDATE, _gate(thresholds={"roc_auc": 0.75, "log_loss": 0.5}), task="binary"
    )
    assert passing.passed is True
    assert "pass: roc_auc 0.8000 >= 0.7500" in passing.reasons
    assert "pass: log_loss 0.4500 <= 0.5000" in passing.reasons

    failing = apply_gate(
        CANDIDATE, _gate(thresholds={"roc_auc": 0.85, "log_loss": 0.4}), task="binary"
    )
    assert failing.passed is False
    assert "FAIL: roc_auc 0.8000 < 0.8500" in failing.reasons
    assert "FAIL: log_loss 0.4500 > 0.4000" in failing.reasons


def test_default_thresholds_follow_the_task() -> None:
    """Without thresholds, binary needs roc_auc >= 0.6 and regression r2 >= 0."""
    assert apply_gate({"roc_auc": 0.59}, GateConfig(), task="binary").passed is False
    assert apply_gate({"r2": 0.1}, GateConfig(), task="regression").passed is True
    assert apply_gate({"r2": -0.1}, GateConfig(), task="regression").passed is False


def test_nan_metric_fails_the_gate() -> None:
    """A NaN metric fails its threshold, whichever direction the metric has."""
    for name in ("roc_auc", "log_loss"):
        verdict = apply_gate(
            {**CANDIDATE, name: math.nan}, _gate(thresholds={name: 0.5}), task="binary"
        )
        assert verdict.passed is False
        assert "NaN" in verdict.reasons[0]
    nan_incumbent = apply_gate(
        CANDIDATE,
        _gate(thresholds={}, incumbent={"max_regression": {"roc_auc": 0.1}}),
        task="binary",
        incumbent_metrics={**CANDIDATE, "roc_auc": math.nan},
    )
    assert nan_incumbent.passed is False


def test_unknown_metric_is_an_error_not_a_pass() -> None:
    """A misspelt metric fails at config load; a metric of the other task at the gate."""
    with pytest.raises(ConfigError, match="unknown metric 'roc-auc'"):
        load_config(environ={"PLUMB_EVALUATION__GATE__THRESHOLDS": "{roc-auc: 0.7}"})
    with pytest.raises(ConfigError, match="unknown metric 'auc'"):
        load_config(
            environ={},
            overrides={"evaluation.gate.incumbent.max_regression": {"auc": 0.1}},
        )
    with pytest.raises(PlumbError, match="'r2', which a binary model does not have"):
        apply_gate(CANDIDATE, _gate(thresholds={"r2": 0.5}), task="binary")
    with pytest.raises(PlumbError, match="incumbent.max_relative_regression"):
        apply_gate(
            CANDIDATE,
            _gate(incumbent={"max_relative_regression": {"rmse": 0.1}}),
            task="binary",
            incumbent_metrics=CANDIDATE,
        )


def test_negative_allowed_regression_is_refused() -> None:
    """An allowed regression below zero is a config error."""
    with pytest.raises(ValueError, match="a number >= 0"):
        _gate(incumbent={"max_regression": {"roc_auc": -0.01}})


def test_absolute_regression_against_incumbent() -> None:
    """A drop of 0.03 roc_auc passes a 0.05 allowance and fails a 0.02 one."""
    incumbent = {**CANDIDATE, "roc_auc": 0.83}
    loose = _gate(thresholds={}, incumbent={"max_regression": {"roc_auc": 0.05}})
    strict = _gate(thresholds={}, incumbent={"max_regression": {"roc_auc": 0.02}})
    assert apply_gate(
        CANDIDATE, loose, task="binary", incumbent_metrics=incumbent
    ).passed
    verdict = apply_gate(CANDIDATE, strict, task="binary", incumbent_metrics=incumbent)
    assert verdict.passed is False
    assert verdict.reasons[0] == (
        "FAIL: roc_auc 0.8000 vs incumbent 0.8300: regression 0.0300 > allowed 0.0200"
    )
    # Better than the incumbent always passes, even with a zero allowance.
    zero = _gate(thresholds={}, incumbent={"max_regression": {"roc_auc": 0.0}})
    better = {**CANDIDATE, "roc_auc": 0.7}
    assert apply_gate(CANDIDATE, zero, task="binary", incumbent_metrics=better).passed


def test_relative_regression_of_an_error_metric() -> None:
    """RMSE 10 % above the incumbent's fails a 5 % allowance and passes a 15 % one."""
    candidate = {"mse": 1.21, "rmse": 1.1, "mae": 0.9, "r2": 0.5}
    incumbent = {"mse": 1.0, "rmse": 1.0, "mae": 0.9, "r2": 0.55}
    for allowed, expected in ((0.05, False), (0.15, True)):
        gate = _gate(
            thresholds={}, incumbent={"max_relative_regression": {"rmse": allowed}}
        )
        verdict = apply_gate(
            candidate, gate, task="regression", incumbent_metrics=incumbent
        )
        assert verdict.passed is expected
        assert "regression (relative) 10.00%" in verdict.reasons[0]


def test_missing_incumbent_passes_unless_required() -> None:
    """The first run (no incumbent) passes with a note; `require_incumbent` fails it."""
    limits = {"max_regression": {"roc_auc": 0.01}}
    first_run = apply_gate(CANDIDATE, _gate(incumbent=limits), task="binary")
    assert first_run.passed is True
    assert any("no incumbent" in reason for reason in first_run.reasons)

    required = apply_gate(
        CANDIDATE, _gate(incumbent=limits, require_incumbent=True), task="binary"
    )
    assert required.passed is False
    assert "FAIL: no incumbent model" in required.reasons[-1]


def test_baseline_limits_without_a_baseline_fail() -> None:
    """Limits against a baseline that the run did not produce fail rather than pass."""
    gate = _gate(baseline={"max_regression": {"roc_auc": 0.02}})
    assert apply_gate(CANDIDATE, gate, task="binary").passed is False
    baseline = {**CANDIDATE, "roc_auc": 0.81}
    assert apply_gate(CANDIDATE, gate, task="binary", baseline_metrics=baseline).passed


def test_verdict_json_keeps_its_contract() -> None:
    """The verdict serialises with a strict boolean `passed`, reasons and checks."""
    verdict = apply_gate(
        {**CANDIDATE, "roc_auc": math.nan},
        _gate(thresholds={"roc_auc": 0.5}),
        task="binary",
    )
    data = json.loads(json.dumps(verdict.to_dict(), allow_nan=False))
    assert data["passed"] is False
    assert data["reasons"] and data["checks"][0]["value"] is None
