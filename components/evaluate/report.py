"""The evaluation report: one self-contained HTML page a person reads.

Sections, top to bottom: the verdict with every gate reason; the metric table with
deltas against the baseline and the incumbent; ROC and precision-recall curves (or
predicted against actual for regression); the confusion matrix; calibration; feature
importance; per-prediction attributions; slices. Charts are inline SVG (svg.py), so the
file needs no network and renders inside the Kubeflow UI.
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING

from components.evaluate.gate import regression_of
from components.evaluate.metrics import PRIMARY_METRIC, metric_names
from components.evaluate.svg import Series, bar_chart, line_chart, scatter_chart

if TYPE_CHECKING:
    from components.evaluate.lib import Evaluation

SECTION_IDS = (
    "verdict",
    "metrics",
    "curves",
    "confusion-matrix",
    "calibration",
    "feature-importance",
    "attributions",
    "slices",
)
"""Element ids of the report's sections (binary; regression skips two)."""
SLICE_GAP = 0.05
"""A slice whose primary metric trails the whole test split by more is flagged."""
TOP_ATTRIBUTIONS = 3
STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#1f2328}"
    "table{border-collapse:collapse;margin:0.5em 0}td,th{padding:4px 10px;"
    "border-bottom:1px solid #ddd;text-align:right}td:first-child,th:first-child"
    "{text-align:left}.better{color:#1a7f37}.worse{color:#cf222e}.banner{font-size:1.5em;"
    "font-weight:bold;padding:0.4em 0.8em;border-radius:6px;display:inline-block;"
    "color:white}.charts{display:flex;flex-wrap:wrap;gap:1.5em}.note{color:#59636e}"
    ".flag{background:#ffebe9}"
)


def render_report(evaluation: Evaluation, *, title: str) -> str:
    """Render the whole report as a self-contained HTML page."""
    sections = [
        _verdict(evaluation),
        _metric_table(evaluation),
        _curves(evaluation),
        _confusion(evaluation),
        _calibration(evaluation),
        _importance(evaluation),
        _attributions(evaluation),
        _slices(evaluation),
    ]
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        + "".join(section for section in sections if section)
        + "</body></html>"
    )


def _section(section_id: str, heading: str, body: str) -> str:
    return f"<section id='{section_id}'><h2>{html.escape(heading)}</h2>{body}</section>"


def _verdict(evaluation: Evaluation) -> str:
    passed = evaluation.verdict.passed
    colour = "#1a7f37" if passed else "#cf222e"
    word = "PASSED" if passed else "FAILED"
    reasons = "".join(
        f"<li class='{'worse' if r.startswith('FAIL') else ''}'>{html.escape(r)}</li>"
        for r in evaluation.verdict.reasons
    )
    compared = "".join(
        f"<li>{html.escape(name)}: <code>{html.escape(path)}</code></li>"
        for name, path in evaluation.comparison_dirs.items()
    )
    body = (
        f"<p><span class='banner' style='background:{colour}'>Gate {word}</span></p>"
        f"<ul>{reasons}</ul>"
        + (f"<p>Compared with:</p><ul>{compared}</ul>" if compared else "")
    )
    return _section("verdict", "Verdict", body)


def _format(value: float | None) -> str:
    if value is None:
        return ""
    if math.isnan(value):
        return "NaN"
    return f"{value:.4f}"


def _delta(name: str, value: float, reference: float | None) -> str:
    if reference is None or math.isnan(value) or math.isnan(reference):
        return "<td></td>"
    worse_by = regression_of(name, value, reference)
    css = "worse" if worse_by > 0 else "better" if worse_by < 0 else ""
    return f"<td class='{css}'>{value - reference:+.4f}</td>"


def _metric_table(evaluation: Evaluation) -> str:
    references = [n for n in ("baseline", "incumbent") if n in evaluation.comparisons]
    header = "<tr><th>metric</th><th>candidate</th>" + "".join(
        f"<th>{n}</th><th>candidate - {n}</th>" for n in references
    )
    rows = []
    names = list(metric_names(evaluation.task))
    for name in names:
        value = evaluation.metrics[name]
        cells = "".join(
            f"<td>{_format(evaluation.comparisons[n].get(name))}</td>"
            + _delta(name, value, evaluation.comparisons[n].get(name))
            for n in references
        )
        rows.append(f"<tr><td>{name}</td><td>{_format(value)}</td>{cells}</tr>")
    if evaluation.decision_threshold is not None:
        cells = "".join(
            f"<td>{_format(evaluation.comparisons[n].get('decision_threshold'))}</td>"
            "<td></td>"
            for n in references
        )
        rows.append(
            f"<tr><td>decision_threshold ({evaluation.threshold_strategy})</td>"
            f"<td>{_format(evaluation.decision_threshold)}</td>{cells}</tr>"
        )
    note = (
        "<p class='note'>Green: the candidate is better; red: worse. Error metrics "
        "(log_loss, brier, mse, rmse, mae) are better when lower.</p>"
    )
    body = (
        f"<p>{evaluation.rows} held-out test rows.</p>"
        f"<table>{header}</tr>{''.join(rows)}</table>{note}"
    )
    return _section("metrics", "Metrics", body)


def _legend_label(name: str, evaluation: Evaluation, metric: str) -> str:
    source = evaluation.metrics if name == "candidate" else evaluation.comparisons[name]
    return f"{name} ({metric} {source[metric]:.3f})"


def _curves(evaluation: Evaluation) -> str:
    if evaluation.scatter is not None:
        actual, predicted = evaluation.scatter
        chart = scatter_chart(
            Series("test rows", actual, predicted),
            title="Predicted against actual",
            x_label="actual",
            y_label="predicted",
        )
        return _section("curves", "Predicted against actual", chart)
    if not evaluation.curves:
        return ""
    roc = line_chart(
        [
            Series(_legend_label(name, evaluation, "roc_auc"), curve.x, curve.y)
            for name, curve in evaluation.curves["roc"].items()
        ],
        title="ROC curve",
        x_label="false positive rate",
        y_label="true positive rate",
        diagonal=True,
        legend_at="bottom-right",
    )
    pr = line_chart(
        [
            Series(_legend_label(name, evaluation, "pr_auc"), curve.x, curve.y)
            for name, curve in evaluation.curves["pr"].items()
        ],
        title="Precision-recall curve",
        x_label="recall",
        y_label="precision",
        legend_at="bottom-left",
    )
    body = f"<div class='charts'><figure>{roc}</figure><figure>{pr}</figure></div>"
    return _section("curves", "ROC and precision-recall curves", body)


def _confusion(evaluation: Evaluation) -> str:
    if evaluation.confusion_matrix is None:
        return ""
    (tn, fp), (fn, tp) = evaluation.confusion_matrix
    negative, positive = (html.escape(n) for n in evaluation.class_names)
    total = max(tn + fp + fn + tp, 1)

    def cell(count: int, correct: bool) -> str:
        shade = 0.15 + 0.6 * count / total
        rgb = "26,127,55" if correct else "207,34,46"
        return f"<td style='background:rgba({rgb},{shade:.2f})'>{count}</td>"

    body = (
        f"<p>At decision threshold {evaluation.decision_threshold:.4f} "
        f"({html.escape(evaluation.threshold_strategy)}).</p>"
        f"<table><tr><th></th><th>predicted {negative}</th><th>predicted {positive}"
        f"</th></tr><tr><th>actual {negative}</th>{cell(tn, True)}{cell(fp, False)}"
        f"</tr><tr><th>actual {positive}</th>{cell(fn, False)}{cell(tp, True)}</tr>"
        "</table>"
    )
    return _section("confusion-matrix", "Confusion matrix", body)


def _calibration(evaluation: Evaluation) -> str:
    curves = evaluation.curves.get("calibration")
    if not curves:
        return ""
    chart = line_chart(
        [
            Series(_legend_label(name, evaluation, "brier"), curve.x, curve.y)
            for name, curve in curves.items()
        ],
        title="Calibration",
        x_label="mean predicted probability",
        y_label="observed positive rate",
        diagonal=True,
        markers=True,
        legend_at="bottom-right",
    )
    note = (
        "<p class='note'>Each point is a bin of test rows by predicted probability. "
        "A calibrated model lies on the dashed diagonal; below it, the model "
        "over-predicts the positive class.</p>"
    )
    return _section("calibration", "Calibration", f"<figure>{chart}</figure>{note}")


def _importance(evaluation: Evaluation) -> str:
    if not evaluation.importance:
        return ""
    metric = PRIMARY_METRIC[evaluation.task]
    permutation = bar_chart(
        [(item.column, item.importance) for item in evaluation.importance],
        title="Permutation importance",
        value_label=f"drop of {metric} when the column is shuffled",
    )
    mean_abs = sorted(
        evaluation.mean_abs_attribution.items(), key=lambda kv: kv[1], reverse=True
    )
    attribution = bar_chart(
        mean_abs,
        title="Mean absolute attribution",
        value_label="mean |attribution| (prediction units)",
    )
    body = (
        f"<p>Permutation importance: how much {metric} drops on the test rows when "
        "one raw column is shuffled (mean over repeats).</p>"
        f"<figure>{permutation}</figure>"
        "<p>Mean absolute attribution: the average size of each column's "
        "per-prediction attribution (see below) over a sample of test rows.</p>"
        f"<figure>{attribution}</figure>"
    )
    return _section("feature-importance", "Feature importance", body)


def _attributions(evaluation: Evaluation) -> str:
    if not evaluation.explained:
        return ""
    rows = []
    for item in evaluation.explained:
        top = sorted(item.attributions.items(), key=lambda kv: abs(kv[1]), reverse=True)
        described = ", ".join(
            f"{html.escape(column)}={html.escape(_value(item.features[column]))} "
            f"<b>{value:+.3f}</b>"
            for column, value in top[:TOP_ATTRIBUTIONS]
        )
        rows.append(
            f"<tr><td>{item.prediction:.4f}</td><td style='text-align:left'>"
            f"{described}</td></tr>"
        )
    body = (
        "<p>Per-prediction attributions, computed exactly as the model server's "
        "<code>:explain</code> endpoint computes them: the change of the prediction "
        "when one column is replaced by its training median (numbers) or the unknown "
        "bucket (categories). Positive values raise the prediction. Largest three "
        "per row.</p>"
        "<table><tr><th>prediction</th><th style='text-align:left'>largest "
        f"attributions</th></tr>{''.join(rows)}</table>"
    )
    return _section("attributions", "Per-prediction attributions", body)


def _value(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _slices(evaluation: Evaluation) -> str:
    if evaluation.slice_column is None or not evaluation.slices:
        return _section(
            "slices",
            "Slices",
            "<p class='note'>No slice column (set evaluation.slice_column).</p>",
        )
    metric = PRIMARY_METRIC[evaluation.task]
    overall = evaluation.metrics[metric]
    names = list(evaluation.slices[0].metrics)
    flagged = {
        item.value
        for item in evaluation.slices
        if regression_of(metric, item.metrics.get(metric, math.nan), overall)
        > SLICE_GAP
    }
    header = "<tr><th>value</th><th>rows</th>" + "".join(
        f"<th>{name}</th>" for name in names
    )
    rows = "".join(
        f"<tr class='{'flag' if item.value in flagged else ''}'>"
        f"<td>{html.escape(item.value)}</td><td>{item.rows}</td>"
        + "".join(f"<td>{_format(item.metrics[name])}</td>" for name in names)
        + "</tr>"
        for item in evaluation.slices
    )
    chart = bar_chart(
        [
            (item.value, item.metrics[metric])
            for item in evaluation.slices
            if not math.isnan(item.metrics[metric])
        ],
        title=f"{metric} per {evaluation.slice_column}",
        value_label=f"{metric} (whole test split: {overall:.3f})",
        highlight=flagged,
    )
    column = html.escape(evaluation.slice_column)
    body = (
        f"<p>Metrics per value of <code>{column}</code>. Rows in red trail the whole "
        f"test split's {metric} ({overall:.4f}) by more than {SLICE_GAP}; NaN means "
        "the slice holds a single class.</p>"
        f"<figure>{chart}</figure><table>{header}</tr>{rows}</table>"
    )
    return _section("slices", f"Slices by {evaluation.slice_column}", body)
