"""The promotion gate: may this model ship?

`apply_gate` checks the candidate's test metrics against absolute thresholds and
against the incumbent (the model serving now) and the tree baseline, as configured in
`evaluation.gate`. Every check becomes one `Check` with a readable reason; the verdict
passes only when every check passes. A metric that is NaN fails its check, and a gate
that names a metric the task does not compute is an error, so a broken evaluation can
never read as a passing one. Deploy and `plumb promote` obey the verdict's `passed`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from components.common.config import ComparisonLimits, GateConfig
from components.common.errors import PlumbError
from components.evaluate.metrics import higher_is_better, metric_names

DEFAULT_THRESHOLDS = {"binary": {"roc_auc": 0.6}, "regression": {"r2": 0.0}}
"""Thresholds applied when `evaluation.gate.thresholds` is None."""


@dataclass
class Check:
    """One comparison the gate made."""

    kind: str
    """`threshold`, `incumbent`, `incumbent_relative`, `baseline`,
    `baseline_relative` or `incumbent_required`."""
    metric: str | None
    value: float | None
    limit: float | None
    passed: bool
    reason: str
    reference: float | None = None
    """The incumbent's or baseline's value of the metric, for comparisons."""


@dataclass
class GateVerdict:
    """Whether the model may ship, every check made and a reason for each."""

    passed: bool
    reasons: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Return `passed`, `reasons` and `checks` as JSON-ready values."""
        data = asdict(self)
        data["passed"] = bool(self.passed)
        for check in data["checks"]:
            for key in ("value", "limit", "reference"):
                if isinstance(check[key], float) and not math.isfinite(check[key]):
                    check[key] = None if math.isnan(check[key]) else str(check[key])
        return data


def apply_gate(
    metrics: dict[str, float],
    gate: GateConfig,
    *,
    task: str,
    incumbent_metrics: dict[str, float] | None = None,
    baseline_metrics: dict[str, float] | None = None,
) -> GateVerdict:
    """Check the candidate's metrics against the configured gate.

    Args:
        metrics: The candidate's test metrics.
        gate: Thresholds and allowed regressions.
        task: `binary` or `regression`; decides which metric names are valid.
        incumbent_metrics: The incumbent's metrics on the same rows; None when there
            is no incumbent (first run).
        baseline_metrics: The tree baseline's metrics on the same rows; None when the
            run produced no baseline.

    Raises:
        PlumbError: The gate names a metric this task does not compute.
    """
    thresholds = (
        DEFAULT_THRESHOLDS[task] if gate.thresholds is None else gate.thresholds
    )
    _check_names(thresholds, task=task, where="evaluation.gate.thresholds")
    _check_limit_names(gate.incumbent, task=task, where="evaluation.gate.incumbent")
    _check_limit_names(gate.baseline, task=task, where="evaluation.gate.baseline")

    checks = [
        _threshold_check(name, metrics[name], limit)
        for name, limit in sorted(thresholds.items())
    ]
    checks += _comparison_checks(
        metrics,
        incumbent_metrics,
        gate.incumbent,
        kind="incumbent",
        required=gate.require_incumbent,
    )
    checks += _comparison_checks(
        metrics, baseline_metrics, gate.baseline, kind="baseline", required=False
    )
    passed = all(check.passed for check in checks)
    reasons = [check.reason for check in checks]
    if incumbent_metrics is None and not gate.require_incumbent:
        reasons.append("note: no incumbent configured (first run); not compared")
    if not checks:
        reasons.append("note: no checks configured (evaluation.gate is empty)")
    return GateVerdict(passed=passed, reasons=reasons, checks=checks)


def regression_of(name: str, value: float, reference: float) -> float:
    """How much worse `value` is than `reference`, in the metric's units (< 0: better)."""
    return reference - value if higher_is_better(name) else value - reference


def _check_names(names: dict[str, float], *, task: str, where: str) -> None:
    allowed = metric_names(task)
    unknown = sorted(name for name in names if name not in allowed)
    if unknown:
        raise PlumbError(
            f"{where} names metric {unknown[0]!r}, which a {task} model does not "
            f"have; use one of {list(allowed)}"
        )


def _check_limit_names(limits: ComparisonLimits, *, task: str, where: str) -> None:
    _check_names(limits.max_regression, task=task, where=f"{where}.max_regression")
    _check_names(
        limits.max_relative_regression,
        task=task,
        where=f"{where}.max_relative_regression",
    )


def _threshold_check(name: str, value: float, limit: float) -> Check:
    if math.isnan(value):
        return Check(
            kind="threshold",
            metric=name,
            value=value,
            limit=limit,
            passed=False,
            reason=f"FAIL: {name} is NaN; a metric that cannot be computed never passes",
        )
    if higher_is_better(name):
        passed = value >= limit
        relation = ">=" if passed else "<"
    else:
        passed = value <= limit
        relation = "<=" if passed else ">"
    status = "pass" if passed else "FAIL"
    return Check(
        kind="threshold",
        metric=name,
        value=value,
        limit=limit,
        passed=passed,
        reason=f"{status}: {name} {value:.4f} {relation} {limit:.4f}",
    )


def _comparison_checks(
    metrics: dict[str, float],
    reference_metrics: dict[str, float] | None,
    limits: ComparisonLimits,
    *,
    kind: str,
    required: bool,
) -> list[Check]:
    configured = bool(limits.max_regression or limits.max_relative_regression)
    if reference_metrics is None:
        if required:
            return [
                _missing(kind, passed=False, why="evaluation.gate.require_incumbent")
            ]
        if configured and kind == "baseline":
            # A configured check that cannot run must not read as passed.
            return [_missing(kind, passed=False, why="evaluation.gate.baseline limits")]
        return []
    return [
        _regression_check(
            name,
            value=metrics[name],
            reference=reference_metrics[name],
            limit=limit,
            kind=kind,
            relative=relative,
        )
        for per_metric, relative in (
            (limits.max_regression, False),
            (limits.max_relative_regression, True),
        )
        for name, limit in sorted(per_metric.items())
    ]


def _missing(kind: str, *, passed: bool, why: str) -> Check:
    return Check(
        kind=f"{kind}_required",
        metric=None,
        value=None,
        limit=None,
        passed=passed,
        reason=f"FAIL: no {kind} model to compare with, but {why} asks for it",
    )


def _regression_check(
    name: str,
    *,
    value: float,
    reference: float,
    limit: float,
    kind: str,
    relative: bool,
) -> Check:
    label = f"{kind}_relative" if relative else kind
    if math.isnan(value) or math.isnan(reference):
        return Check(
            kind=label,
            metric=name,
            value=value,
            limit=limit,
            reference=reference,
            passed=False,
            reason=f"FAIL: {name} vs {kind} cannot be compared (NaN)",
        )
    worse_by = regression_of(name, value, reference)
    if relative:
        if reference == 0:
            worse_by = math.inf if worse_by > 0 else 0.0
        else:
            worse_by /= abs(reference)
    passed = worse_by <= limit
    status = "pass" if passed else "FAIL"
    unit = " (relative)" if relative else ""
    shown = f"{worse_by:.2%}" if relative else f"{worse_by:.4f}"
    allowed = f"{limit:.2%}" if relative else f"{limit:.4f}"
    return Check(
        kind=label,
        metric=name,
        value=value,
        limit=limit,
        reference=reference,
        passed=passed,
        reason=(
            f"{status}: {name} {value:.4f} vs {kind} {reference:.4f}: regression"
            f"{unit} {shown} {'<=' if passed else '>'} allowed {allowed}"
        ),
    )
